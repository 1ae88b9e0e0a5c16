// key_store_bench: what Pkcs11KeyStore costs over bare PKCS#11 calls.
//
// For RSA-2048 PKCS#1 signing, RSA-2048 raw decryption, P-256 ECDSA signing and the
// HMAC-SHA256 under the store secret that every DecryptPremaster also pays, at 1 and
// 2 threads, it measures the same operation two ways on one SoftHSM2 token in one run:
//   bare      each thread owns a session and a key handle and calls C_SignInit/C_Sign
//             (or C_DecryptInit/C_Decrypt) directly, doing the same local work the store
//             does (hashing, DigestInfo, r||s to DER) so both produce identical output;
//   keystore  KeyStore::Sign / RsaDecryptRaw through the session pool.
// Each (operation, threads, path) runs for --seconds, alternating paths for --rounds
// rounds; the medians are reported with their ratio.
//
//   bazel run -c opt //hsm/pkcs11:key_store_bench -- --seconds=2 --rounds=5
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "hsm/pkcs11/key_encoding.h"
#include "hsm/pkcs11/object_io.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "hsm/testing/verify.h"

namespace offkey::hsm::pkcs11 {
namespace {

struct Flags {
  double seconds = 2.0;
  int rounds = 3;
  std::string only;  // One operation's name, or empty for all.
  int threads = 0;   // 1 or 2, or 0 for both.
};

// One operation on one thread: returns false on failure.
using OpFn = std::function<bool(int thread)>;

double Measure(const OpFn& op, int threads, double seconds) {
  std::atomic<bool> stop{false};
  std::atomic<long> done{0}, failed{0};
  std::vector<std::thread> workers;
  absl::Time start = absl::Now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      // At least one operation per thread, so a thread the scheduler starts late (a
      // loaded machine, a sanitizer build) still counts and no rate comes out as zero.
      long n = 0;
      do {
        if (!op(t)) ++failed;
        ++n;
      } while (!stop.load(std::memory_order_relaxed));
      done += n;
    });
  }
  absl::SleepFor(absl::Seconds(seconds));
  stop = true;
  for (auto& w : workers) w.join();
  double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  if (failed > 0) {
    fprintf(stderr, "error: %ld operations failed\n", failed.load());
    exit(1);
  }
  return static_cast<double>(done) / elapsed;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Per-thread bare PKCS#11 state: an own session on the token the store logged in to.
struct BareThread {
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE rsa = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE ec = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE hmac = CK_INVALID_HANDLE;
};

CK_OBJECT_HANDLE FindOne(const CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s,
                         Template& find) {
  std::vector<CK_OBJECT_HANDLE> found;
  if (FindObjects(fn, s, find, &found, 1) != CKR_OK || found.empty()) abort();
  return found[0];
}

CK_OBJECT_HANDLE FindPrivate(const CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE s,
                             const std::string& id) {
  Template find;
  find.Ulong(CKA_CLASS, CKO_PRIVATE_KEY).Bytes(CKA_ID, id);
  return FindOne(fn, s, find);
}

int Main(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--seconds=") &&
        absl::SimpleAtod(arg, &flags.seconds)) {
      continue;
    }
    if (absl::ConsumePrefix(&arg, "--rounds=") && absl::SimpleAtoi(arg, &flags.rounds) &&
        flags.rounds > 0) {
      continue;
    }
    if (absl::ConsumePrefix(&arg, "--only=")) {
      flags.only = std::string(arg);
      continue;
    }
    if (absl::ConsumePrefix(&arg, "--threads=") &&
        absl::SimpleAtoi(arg, &flags.threads) &&
        (flags.threads == 1 || flags.threads == 2)) {
      continue;
    }
    fprintf(
        stderr,
        "usage: key_store_bench [--seconds=S] [--rounds=N] [--only=OP] [--threads=T]\n"
        "  --seconds  duration of each measurement (default 2)\n"
        "  --rounds   alternating bare/keystore rounds per row (default 3)\n"
        "  --only     one operation: rsa2048-sign-pkcs1-sha256, rsa2048-decrypt-raw,\n"
        "             p256-sign-ecdsa-sha256 or store-secret-hmac-sha256 (default: all)\n"
        "  --threads  1 or 2 (default: both)\n");
    return 2;
  }

  if (!flags.only.empty() && flags.only != "rsa2048-sign-pkcs1-sha256" &&
      flags.only != "rsa2048-decrypt-raw" && flags.only != "p256-sign-ecdsa-sha256" &&
      flags.only != "store-secret-hmac-sha256") {
    fprintf(stderr, "key_store_bench: no operation named '%s' (see --help)\n",
            flags.only.c_str());
    return 2;
  }
  auto token = testing::SoftHsmToken::Create("bench");
  if (!token.ok()) {
    fprintf(stderr, "cannot create a SoftHSM2 token: %s\n",
            token.status().ToString().c_str());
    return 1;
  }
  auto store_or = Pkcs11KeyStore::Create(token->Options(/*max_sessions=*/2));
  if (!store_or.ok()) {
    fprintf(stderr, "%s\n", store_or.status().ToString().c_str());
    return 1;
  }
  Pkcs11KeyStore& store = **store_or;
  auto rsa = store.GenerateKey("bench-rsa", KeyAlgorithm::kRsa2048);
  auto ec = store.GenerateKey("bench-ec", KeyAlgorithm::kEcP256);
  if (!rsa.ok() || !ec.ok()) {
    fprintf(stderr, "key generation failed: %s\n",
            (rsa.ok() ? ec.status() : rsa.status()).ToString().c_str());
    return 1;
  }
  const CK_FUNCTION_LIST* fn = store.TokenForTest().fn();
  const CK_SLOT_ID slot = store.TokenForTest().slot();
  BareThread bare[2];
  for (BareThread& b : bare) {
    if (fn->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                          &b.session) != CKR_OK) {
      abort();
    }
    b.rsa = FindPrivate(fn, b.session, rsa->key_id);
    b.ec = FindPrivate(fn, b.session, ec->key_id);
    Template secret;  // The store secret Pkcs11KeyStore::Create made.
    secret.Ulong(CKA_CLASS, CKO_SECRET_KEY)
        .Bytes(CKA_LABEL, std::string("offkey-premaster-substitute-v1"));
    b.hmac = FindOne(fn, b.session, secret);
  }

  const std::string message(128, 'm');  // About a TLS 1.3 CertificateVerify input.
  std::string plain(256, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(plain.data()) + 1, 255);
  const std::string ciphertext = hsm::testing::RsaEncryptRaw(rsa->public_key_spki, plain);

  const SignAlgorithm rsa_alg{SignatureKind::kRsaPkcs1, HashAlgorithm::kSha256};
  const SignAlgorithm ec_alg{SignatureKind::kEcdsa, HashAlgorithm::kSha256};

  auto bare_sign = [&](CK_OBJECT_HANDLE BareThread::*key, SignAlgorithm alg) {
    return [&, key, alg](int t) {
      std::string input = *Digest(alg.hash, message);
      CK_MECHANISM mech = {CKM_ECDSA, nullptr, 0};
      if (alg.kind == SignatureKind::kRsaPkcs1) {
        input = *DigestInfo(alg.hash, input);
        mech.mechanism = CKM_RSA_PKCS;
      }
      unsigned char sig[512];
      CK_ULONG len = sizeof(sig);
      if (fn->C_SignInit(bare[t].session, &mech, bare[t].*key) != CKR_OK) return false;
      if (fn->C_Sign(bare[t].session, reinterpret_cast<CK_BYTE*>(input.data()),
                     input.size(), sig, &len) != CKR_OK) {
        return false;
      }
      if (alg.kind == SignatureKind::kEcdsa) {
        return EcdsaRawToDer(std::string(reinterpret_cast<char*>(sig), len)).ok();
      }
      return true;
    };
  };
  auto bare_decrypt = [&](int t) {
    CK_MECHANISM mech = {CKM_RSA_X_509, nullptr, 0};
    SecretBytes out(256);
    CK_ULONG len = out.size();
    if (fn->C_DecryptInit(bare[t].session, &mech, bare[t].rsa) != CKR_OK) return false;
    return fn->C_Decrypt(bare[t].session,
                         reinterpret_cast<CK_BYTE*>(const_cast<char*>(ciphertext.data())),
                         ciphertext.size(), out.data(), &len) == CKR_OK;
  };

  // An HMAC input the size of DecryptPremaster's (key id and ciphertext).
  const std::string hmac_input = rsa->key_id + ciphertext;
  auto bare_hmac = [&](int t) {
    CK_MECHANISM mech = {CKM_SHA256_HMAC, nullptr, 0};
    unsigned char mac[32];
    CK_ULONG len = sizeof(mac);
    return fn->C_SignInit(bare[t].session, &mech, bare[t].hmac) == CKR_OK &&
           fn->C_Sign(bare[t].session,
                      reinterpret_cast<CK_BYTE*>(const_cast<char*>(hmac_input.data())),
                      hmac_input.size(), mac, &len) == CKR_OK;
  };

  struct Row {
    const char* name;
    OpFn bare;
    OpFn store;
  };
  std::vector<Row> rows = {
      {"rsa2048-sign-pkcs1-sha256", bare_sign(&BareThread::rsa, rsa_alg),
       [&](int) { return store.Sign(rsa->key_id, rsa_alg, message, {}).ok(); }},
      {"rsa2048-decrypt-raw", bare_decrypt,
       [&](int) { return store.RsaDecryptRaw(rsa->key_id, ciphertext, {}).ok(); }},
      {"p256-sign-ecdsa-sha256", bare_sign(&BareThread::ec, ec_alg),
       [&](int) { return store.Sign(ec->key_id, ec_alg, message, {}).ok(); }},
      {"store-secret-hmac-sha256", bare_hmac,
       [&](int) { return store.HmacWithStoreSecret(hmac_input, {}).ok(); }},
  };

  printf("key_store_bench: SoftHSM2 %s, %.1f s per measurement, %d rounds, medians\n",
         testing::SoftHsmModulePath().c_str(), flags.seconds, flags.rounds);
  printf("%-28s %7s %14s %14s %8s %9s\n", "operation", "threads", "bare ops/s",
         "keystore ops/s", "ratio", "overhead");
  for (const Row& row : rows) {
    if (!flags.only.empty() && flags.only != row.name) continue;
    for (int threads : {1, 2}) {
      if (flags.threads != 0 && threads != flags.threads) continue;
      std::vector<double> bare_runs, store_runs;
      for (int r = 0; r < flags.rounds; ++r) {
        bare_runs.push_back(Measure(row.bare, threads, flags.seconds));
        store_runs.push_back(Measure(row.store, threads, flags.seconds));
      }
      double b = Median(bare_runs), s = Median(store_runs);
      printf("%-28s %7d %14.0f %14.0f %8.3f %8.1f%%\n", row.name, threads, b, s, s / b,
             (1 - s / b) * 100);
      fflush(stdout);
    }
  }
  // The token directory is this run's alone (under $TEST_TMPDIR or a fresh /tmp dir).
  std::error_code ignored;
  std::filesystem::remove_all(token->directory, ignored);
  return 0;
}

}  // namespace
}  // namespace offkey::hsm::pkcs11

int main(int argc, char** argv) { return offkey::hsm::pkcs11::Main(argc, argv); }
