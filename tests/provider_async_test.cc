// The provider's ASYNC path (PauseUntil in client/openssl/provider.cc) inside this
// process, so that --config=tsan and --config=asan see every side of it: application
// threads running signing jobs with ASYNC_start_job, the provider's dispatcher thread,
// liboffkey's and gRPC's threads, and offkeyd. provider_test covers the same path in
// unmodified s_server and haproxy, where no sanitizer can look.
#include <openssl/async.h>
#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <poll.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "gtest/gtest.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"
#include "tests/provider_files.h"

namespace offkey::tests {
namespace {

constexpr int kThreads = 4;
constexpr int kSignaturesPerThread = 20;

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

struct SignJob {
  EVP_PKEY* key;
  OSSL_LIB_CTX* libctx;
  const std::string* message;
  std::string* signature;
};

// Runs inside an ASYNC job: the provider pauses it while offkeyd answers.
int SignInJob(void* arg) {
  const SignJob* job = static_cast<const SignJob*>(arg);
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  size_t size = 0;
  int ok = md != nullptr &&
           EVP_DigestSignInit_ex(md, nullptr, "SHA256", job->libctx, nullptr, job->key,
                                 nullptr) == 1 &&
           EVP_DigestSign(md, nullptr, &size,
                          reinterpret_cast<const unsigned char*>(job->message->data()),
                          job->message->size()) == 1;
  if (ok) {
    job->signature->resize(size);
    ok = EVP_DigestSign(md, reinterpret_cast<unsigned char*>(job->signature->data()),
                        &size,
                        reinterpret_cast<const unsigned char*>(job->message->data()),
                        job->message->size()) == 1;
    job->signature->resize(size);
  }
  EVP_MD_CTX_free(md);
  return ok;
}

bool Verifies(const std::string& spki, const std::string& message,
              const std::string& signature) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(spki.data());
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size()));
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  const bool ok =
      key != nullptr && md != nullptr &&
      EVP_DigestVerifyInit(md, nullptr, EVP_sha256(), nullptr, key) == 1 &&
      EVP_DigestVerify(
          md, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
          reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(key);
  return ok;
}

class ProviderAsyncTest : public OffkeydTest {
 protected:
  // A library context with the provider loaded from offkey.so, as openssl.cnf loads it.
  // Kept for the process: unloading the module would pull code from under the
  // provider's dispatcher thread, which lives as long as the process.
  OSSL_LIB_CTX* LoadProvider() {
    const client::ClientOptions files = ClientFiles(kTerminator);
    const std::string cnf = dir_ + "/openssl.cnf";
    Write(cnf, ProviderConfig(EndpointLines(server_->port(), files)));
    static OSSL_LIB_CTX* const libctx = OSSL_LIB_CTX_new();
    EXPECT_EQ(OSSL_LIB_CTX_load_config(libctx, cnf.c_str()), 1);
    return libctx;
  }

  // The key behind a reference file, through the provider's decoder.
  EVP_PKEY* LoadReference(OSSL_LIB_CTX* libctx, const hsm::KeyInfo& key,
                          const std::string& name) {
    WriteKeylessServerFiles(dir_, name, key, ca_);
    const std::string path = absl::StrCat(dir_, "/", name, ".ref");
    OSSL_STORE_CTX* store = OSSL_STORE_open_ex(path.c_str(), libctx, nullptr, nullptr,
                                               nullptr, nullptr, nullptr, nullptr);
    EVP_PKEY* pkey = nullptr;
    while (store != nullptr && pkey == nullptr && OSSL_STORE_eof(store) == 0) {
      OSSL_STORE_INFO* info = OSSL_STORE_load(store);
      if (info != nullptr && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY) {
        pkey = OSSL_STORE_INFO_get1_PKEY(info);
      }
      OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(store);
    return pkey;
  }
};

// Several threads sign concurrently, each in ASYNC jobs that pause while offkeyd works
// (the async path, not the blocking one); every signature must verify against the key's
// public half.
TEST_F(ProviderAsyncTest, ConcurrentJobsPauseAndResumeWithValidSignatures) {
  const hsm::KeyInfo p256 = AddKey("p256", hsm::KeyAlgorithm::kEcP256);
  const hsm::KeyInfo rsa = AddKey("rsa", hsm::KeyAlgorithm::kRsa2048);
  OSSL_LIB_CTX* libctx = LoadProvider();
  EVP_PKEY* keys[] = {LoadReference(libctx, p256, "p256"),
                      LoadReference(libctx, rsa, "rsa")};
  const std::string* spkis[] = {&p256.public_key_spki, &rsa.public_key_spki};
  ASSERT_NE(keys[0], nullptr);
  ASSERT_NE(keys[1], nullptr);
  const int signs_before = OperationCount("sign");

  std::atomic<int> verified{0}, paused{0}, failed{0};
  offkey::Mutex first_failure_mu;
  std::string first_failure;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ASYNC_WAIT_CTX* wait = ASYNC_WAIT_CTX_new();
      for (int i = 0; i < kSignaturesPerThread; ++i) {
        const int which = (t + i) % 2;
        // offkeyd signs only handshake-shaped input (a TLS 1.2 ServerKeyExchange here).
        const std::string message = Tls12EcdheInput();
        std::string signature;
        SignJob job{keys[which], libctx, &message, &signature};
        ASYNC_JOB* running = nullptr;
        int result = 0;
        int pauses = 0;
        for (;;) {
          const int r =
              ASYNC_start_job(&running, wait, &result, SignInJob, &job, sizeof(job));
          if (r != ASYNC_PAUSE) {
            if (r != ASYNC_FINISH) result = 0;
            break;
          }
          ++pauses;
          OSSL_ASYNC_FD fd = -1;
          size_t fds = 1;
          if (ASYNC_WAIT_CTX_get_all_fds(wait, &fd, &fds) != 1 || fds != 1) {
            result = 0;
            break;
          }
          pollfd p{fd, POLLIN, 0};
          poll(&p, 1, 30000);
        }
        if (pauses > 0) ++paused;
        if (result == 1 && Verifies(*spkis[which], message, signature)) {
          ++verified;
        } else {
          ++failed;
          offkey::MutexLock lock(&first_failure_mu);
          if (first_failure.empty()) {
            first_failure =
                absl::StrCat("key ", which, ": result ", result, ", ", signature.size(),
                             "-byte signature, error ",
                             ERR_error_string(ERR_peek_last_error(), nullptr));
          }
        }
      }
      ASYNC_WAIT_CTX_free(wait);
    });
  }
  for (std::thread& thread : threads) thread.join();
  EVP_PKEY_free(keys[0]);
  EVP_PKEY_free(keys[1]);

  EXPECT_EQ(failed.load(), 0) << first_failure;
  // A thread's first job registers a fresh wait fd and always pauses (PauseUntil); later
  // ones pause unless offkeyd's answer is already in.
  EXPECT_GE(paused.load(), kThreads);
  EXPECT_EQ(verified.load(), kThreads * kSignaturesPerThread);
  EXPECT_EQ(OperationCount("sign") - signs_before, kThreads * kSignaturesPerThread);
}

}  // namespace
}  // namespace offkey::tests
