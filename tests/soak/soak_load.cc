// soak-load: a steady mixed data-plane load against a running offkeyd, for tools/soak.sh.
//
// --threads threads share --rate operations per second (paced, not closed-loop: a soak
// looks for leaks and drift over time, not for the ceiling, and the machine is shared).
// Even threads call unary RPCs, odd threads the Pipeline stream (liboffkey with
// ClientOptions.pipeline, streams reopened every --stream_max_age). Every thread drops
// its Client and makes a new one every --reconnect seconds, staggered, so offkeyd sees
// connections come and go and new TLS handshakes against whatever server certificate it
// serves at the time. Each thread cycles through five operations, every answer checked
// locally with OpenSSL:
//   sign-rsa    TLS 1.3 server CertificateVerify input, rsa_pss_rsae_sha256
//   sign-p256   the same, ecdsa_secp256r1_sha256
//   decrypt     DecryptPremaster of a premaster encrypted to the RSA key
//   derive      DeriveMasterSecret (extended master secret) against the local TLS PRF
//   verify      VerifyClient of a TLS 1.3 client CertificateVerify made with --key
// It prints a progress line every --progress seconds and, at the end, one line per
// operation and transport ("soak-load: RESULT ...": calls, errors, calls that took a
// second or more, the slowest) and a TOTAL line; it exits 1 if any call failed or gave
// a wrong answer, 2 if it could not start.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "base/openssl_util.h"
#include "base/secret_bytes.h"
#include "base/status_macros.h"
#include "client/offkey_client.h"
#include "offkey/v1/key_service.pb.h"
#include "service/crypto/tls_prf.h"

ABSL_FLAG(std::string, target, "", "offkeyd's data plane, host:port.");
ABSL_FLAG(std::string, ca, "", "PEM CA that signed offkeyd's certificate.");
ABSL_FLAG(std::string, cert, "", "PEM client certificate (a terminator identity).");
ABSL_FLAG(std::string, key, "",
          "PEM private key of --cert (P-256; also signs VerifyClient).");
ABSL_FLAG(std::string, rsa_key, "dev-rsa2048", "Name of an RSA key the client may use.");
ABSL_FLAG(std::string, ec_key, "dev-p256", "Name of a P-256 key the client may use.");
ABSL_FLAG(std::string, trust_bundle, "dev",
          "Trust bundle that holds --ca, for VerifyClient.");
ABSL_FLAG(double, seconds, 60, "How long to run.");
ABSL_FLAG(int, threads, 4, "Threads; even ones unary, odd ones on Pipeline streams.");
ABSL_FLAG(double, rate, 100, "Operations per second, all threads together.");
ABSL_FLAG(double, reconnect, 30, "Seconds between new Clients (connections) per thread.");
ABSL_FLAG(double, stream_max_age, 10,
          "Seconds a Pipeline stream is used before reopening.");
ABSL_FLAG(
    double, deadline, 30,
    "Deadline per call in seconds. Generous: a soak looks for leaks and wrong answers, "
    "not latency, and on a busy machine with SoftHSM2 (whose object changes, such as "
    "an RSA key generation on the admin plane, hold every call) a call can wait for "
    "seconds. The slowest call of each kind is reported.");
ABSL_FLAG(double, progress, 60, "Seconds between progress lines (0: none).");

namespace offkey::tests::soak {
namespace {

enum Kind { kSignRsa, kSignP256, kDecrypt, kDerive, kVerify, kKinds };
constexpr std::array<const char*, kKinds> kKindNames = {"sign-rsa", "sign-p256",
                                                        "decrypt", "derive", "verify"};
enum Transport { kUnary, kStream, kTransports };
constexpr std::array<const char*, kTransports> kTransportNames = {"unary", "stream"};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream data;
  data << in.rdbuf();
  return data.str();
}

std::string Random(size_t n) {
  std::string out(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n));
  return out;
}

// RFC 8446 4.4.3: what a TLS 1.3 server or client signs in CertificateVerify.
std::string Tls13Input(bool server) {
  return std::string(64, ' ') +
         (server ? "TLS 1.3, server CertificateVerify"
                 : "TLS 1.3, client CertificateVerify") +
         std::string(1, '\0') + Random(32);
}

EvpPkeyPtr LeafKey(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));  // NOLINT
  return EvpPkeyPtr(cert ? X509_get_pubkey(cert.get()) : nullptr);
}

bool VerifySignature(EVP_PKEY* key, bool pss, const std::string& message,
                     const std::string& signature) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok = EVP_DigestVerifyInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key) == 1;
  if (ok && pss) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
  }
  return ok && EVP_DigestVerify(ctx.get(),
                                reinterpret_cast<const unsigned char*>(signature.data()),
                                signature.size(),
                                reinterpret_cast<const unsigned char*>(message.data()),
                                message.size()) == 1;
}

// ECDSA with SHA-256 (DER), as a TLS client's CertificateVerify.
std::string SignLocally(EVP_PKEY* key, const std::string& message) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(message.data());
  if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, in, message.size()) != 1) {
    return "";
  }
  std::string signature(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                     in, message.size()) != 1) {
    return "";
  }
  signature.resize(len);
  return signature;
}

// PKCS#1 v1.5 encryption of `premaster` to `key`, as a TLS 1.2 client does.
std::string EncryptPremaster(EVP_PKEY* key, const std::string& premaster) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(key, nullptr));
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(premaster.data());
  if (EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
      EVP_PKEY_encrypt(ctx.get(), nullptr, &len, in, premaster.size()) != 1) {
    return "";
  }
  std::string out(len, '\0');
  if (EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, in,
                       premaster.size()) != 1) {
    return "";
  }
  out.resize(len);
  return out;
}

// The extended master secret (RFC 7627) the client would compute: service/crypto's PRF.
std::string LocalMasterSecret(const std::string& premaster,
                              const std::string& session_hash) {
  absl::StatusOr<SecretBytes> master = service::crypto::ExtendedMasterSecret(
      hsm::HashAlgorithm::kSha256, SecretBytes(premaster), session_hash);
  return master.ok() ? std::string(master->view()) : std::string();
}

// What every thread needs: the keys' public halves and the client credential.
struct Material {
  EvpPkeyPtr rsa_public, ec_public;
  EvpPkeyPtr client_key;
  std::string client_cert_der;
};

class Counters {
 public:
  void Count(Transport transport, Kind kind, const absl::Status& outcome,
             absl::Duration took) {
    ++calls_[transport][kind];
    const int64_t us = absl::ToInt64Microseconds(took);
    if (us >= 1000000) ++slow_[transport][kind];
    for (int64_t max = slowest_us_[transport][kind].load();
         us > max && !slowest_us_[transport][kind].compare_exchange_weak(max, us);) {
    }
    if (outcome.ok()) return;
    ++errors_[transport][kind];
    offkey::MutexLock lock(&mu_);
    std::string& first = first_error_[{transport, kind}];
    if (first.empty()) first = outcome.ToString();
  }
  void Reconnected() { ++reconnects_; }
  void StreamsOpened(int64_t n) { streams_ += n; }

  int64_t Calls() const { return Sum(calls_); }
  int64_t Errors() const { return Sum(errors_); }

  // One RESULT line per transport and operation, then TOTAL.
  void Print() {
    offkey::MutexLock lock(&mu_);
    for (int t = 0; t < kTransports; ++t) {
      for (int k = 0; k < kKinds; ++k) {
        printf(
            "soak-load: RESULT kind=%s transport=%s calls=%lld errors=%lld "
            "over_1s=%lld slowest_ms=%.1f%s\n",
            kKindNames[k], kTransportNames[t],
            static_cast<long long>(calls_[t][k].load()),   // NOLINT(runtime/int)
            static_cast<long long>(errors_[t][k].load()),  // NOLINT(runtime/int)
            static_cast<long long>(slow_[t][k].load()),    // NOLINT(runtime/int)
            slowest_us_[t][k].load() / 1000.0,
            first_error_.count({t, k})
                ? (" first_error=\"" + first_error_[{t, k}] + "\"").c_str()
                : "");
      }
    }
    printf("soak-load: TOTAL calls=%lld errors=%lld reconnects=%lld streams=%lld\n",
           static_cast<long long>(Calls()), static_cast<long long>(Errors()),  // NOLINT
           static_cast<long long>(reconnects_.load()),                         // NOLINT
           static_cast<long long>(streams_.load()));                           // NOLINT
    fflush(stdout);
  }

 private:
  using Table = std::array<std::array<std::atomic<int64_t>, kKinds>, kTransports>;
  static int64_t Sum(const Table& table) {
    int64_t sum = 0;
    for (const auto& row : table) {
      for (const auto& cell : row) sum += cell.load();
    }
    return sum;
  }
  Table calls_{};
  Table errors_{};
  Table slow_{};        // Calls that took a second or more.
  Table slowest_us_{};  // The slowest call, in microseconds.
  std::atomic<int64_t> reconnects_{0};
  std::atomic<int64_t> streams_{0};
  offkey::Mutex mu_;
  std::map<std::pair<int, int>, std::string> first_error_ ABSL_GUARDED_BY(mu_);
};

template <typename Response>
absl::Status Check(const absl::StatusOr<Response>& response, bool right,
                   const char* what) {
  if (!response.ok()) return response.status();
  if (!right) return absl::DataLossError(absl::StrCat("wrong answer: ", what));
  return absl::OkStatus();
}

// One operation of `kind` through `client`, its answer checked.
absl::Status RunOne(client::Client& client, const Material& m, Kind kind) {
  const std::string rsa = absl::GetFlag(FLAGS_rsa_key);
  switch (kind) {
    case kSignRsa:
    case kSignP256: {
      const bool is_rsa = kind == kSignRsa;
      v1::SignRequest request;
      request.mutable_key()->set_name(is_rsa ? rsa : absl::GetFlag(FLAGS_ec_key));
      request.mutable_context()->set_version(v1::TLS_1_3);
      request.mutable_context()->set_sni("localhost");
      request.set_scheme(is_rsa ? v1::RSA_PSS_RSAE_SHA256 : v1::ECDSA_SECP256R1_SHA256);
      request.set_message(Tls13Input(/*server=*/true));
      auto response = client.Sign(request);
      return Check(response,
                   response.ok() &&
                       VerifySignature(is_rsa ? m.rsa_public.get() : m.ec_public.get(),
                                       is_rsa, request.message(), response->signature()),
                   "signature does not verify");
    }
    case kDecrypt: {
      const std::string premaster = std::string("\x03\x03", 2) + Random(46);
      v1::DecryptPremasterRequest request;
      request.mutable_key()->set_name(rsa);
      request.mutable_context()->set_version(v1::TLS_1_2);
      request.set_ciphertext(EncryptPremaster(m.rsa_public.get(), premaster));
      request.set_client_version(0x0303);
      auto response = client.DecryptPremaster(request);
      return Check(response, response.ok() && response->premaster() == premaster,
                   "not the premaster");
    }
    case kDerive: {
      const std::string premaster = std::string("\x03\x03", 2) + Random(46);
      const std::string session_hash = Random(32);
      v1::DeriveMasterSecretRequest request;
      request.mutable_key()->set_name(rsa);
      request.mutable_context()->set_version(v1::TLS_1_2);
      request.set_ciphertext(EncryptPremaster(m.rsa_public.get(), premaster));
      request.set_client_version(0x0303);
      request.set_prf_hash(v1::PRF_SHA256);
      request.set_session_hash(session_hash);
      auto response = client.DeriveMasterSecret(request);
      return Check(response,
                   response.ok() && response->master_secret() ==
                                        LocalMasterSecret(premaster, session_hash),
                   "master secret differs from the local PRF");
    }
    case kVerify: {
      v1::VerifyClientRequest request;
      request.mutable_context()->set_version(v1::TLS_1_3);
      request.add_certificate_chain(m.client_cert_der);
      request.set_trust_bundle(absl::GetFlag(FLAGS_trust_bundle));
      request.set_scheme(v1::ECDSA_SECP256R1_SHA256);
      request.set_signed_content(Tls13Input(/*server=*/false));
      request.set_signature(SignLocally(m.client_key.get(), request.signed_content()));
      auto response = client.VerifyClient(request);
      return Check(response, response.ok() && response->result() == v1::VERIFIED,
                   response.ok() ? response->detail().c_str() : "");
    }
    case kKinds:
      break;
  }
  return absl::InternalError("no such operation");
}

client::ClientOptions Options(Transport transport) {
  client::ClientOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.ca_file = absl::GetFlag(FLAGS_ca);
  options.cert_file = absl::GetFlag(FLAGS_cert);
  options.key_file = absl::GetFlag(FLAGS_key);
  options.deadline = absl::Seconds(absl::GetFlag(FLAGS_deadline));
  options.pipeline = transport == kStream;
  options.stream_max_age = absl::Seconds(absl::GetFlag(FLAGS_stream_max_age));
  return options;
}

// The keys' public halves from GetCertificate, and the local client credential.
absl::StatusOr<Material> Prepare() {
  Material m;
  OFFKEY_ASSIGN_OR_RETURN(std::unique_ptr<client::Client> client,
                          client::Client::Create(Options(kUnary)));
  for (auto [name, out] : {std::pair{absl::GetFlag(FLAGS_rsa_key), &m.rsa_public},
                           std::pair{absl::GetFlag(FLAGS_ec_key), &m.ec_public}}) {
    v1::GetCertificateRequest request;
    request.mutable_key()->set_name(name);
    OFFKEY_ASSIGN_OR_RETURN(v1::GetCertificateResponse cert,
                            client->GetCertificate(request));
    if (cert.certificate_chain_size() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("key ", name, " has no certificate"));
    }
    *out = LeafKey(cert.certificate_chain(0));
    if (*out == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("key ", name, ": bad certificate"));
    }
  }
  const std::string key_pem = ReadFile(absl::GetFlag(FLAGS_key));
  BioPtr key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  m.client_key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  const std::string cert_pem = ReadFile(absl::GetFlag(FLAGS_cert));
  BioPtr cert_bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (m.client_key == nullptr || cert == nullptr) {
    return absl::FailedPreconditionError("cannot read --cert or --key");
  }
  m.client_cert_der = CertificateDer(cert.get());
  return m;
}

void Worker(int index, const Material& m, absl::Time end, Counters& counters) {
  const Transport transport = index % 2 == 0 ? kUnary : kStream;
  const int threads = absl::GetFlag(FLAGS_threads);
  const absl::Duration interval =
      absl::Seconds(threads / std::max(absl::GetFlag(FLAGS_rate), 0.001));
  const absl::Duration reconnect = absl::Seconds(absl::GetFlag(FLAGS_reconnect));
  // Staggered so that threads do not all reconnect at once.
  absl::Duration period = reconnect * (index + 1) / threads;
  absl::Time next = absl::Now() + interval * index / threads;
  int kind = index % kKinds;
  while (absl::Now() < end) {
    absl::StatusOr<std::unique_ptr<client::Client>> client =
        client::Client::Create(Options(transport));
    if (!client.ok()) {  // A bad credential file: every call of this round fails.
      counters.Count(transport, static_cast<Kind>(kind), client.status(),
                     absl::ZeroDuration());
      absl::SleepFor(interval);
      continue;
    }
    const absl::Time drop = std::min(end, absl::Now() + period);
    period = reconnect;
    while (absl::Now() < drop) {
      absl::SleepFor(next - absl::Now());
      next += interval;
      const absl::Time begin = absl::Now();
      absl::Status outcome = RunOne(**client, m, static_cast<Kind>(kind));
      counters.Count(transport, static_cast<Kind>(kind), outcome, absl::Now() - begin);
      kind = (kind + 1) % kKinds;
      // Behind schedule (a slow call): skip ahead rather than burst to catch up.
      if (next < absl::Now() - interval * 4) next = absl::Now();
    }
    counters.StreamsOpened((*client)->stats().streams);
    client->reset();
    counters.Reconnected();
  }
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "a paced mixed data-plane load against a running offkeyd (tools/soak.sh).");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_target).empty() || absl::GetFlag(FLAGS_threads) < 1 ||
      absl::GetFlag(FLAGS_rate) <= 0) {
    fprintf(stderr, "soak-load: give --target, --threads >= 1 and --rate > 0\n");
    return 2;
  }
  absl::StatusOr<Material> material = Prepare();
  if (!material.ok()) {
    fprintf(stderr, "soak-load: %s\n", material.status().ToString().c_str());
    return 2;
  }
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  Counters counters;
  std::vector<std::thread> workers;
  for (int i = 0; i < absl::GetFlag(FLAGS_threads); ++i) {
    workers.emplace_back([&, i] { Worker(i, *material, end, counters); });
  }
  const double progress = absl::GetFlag(FLAGS_progress);
  if (progress > 0) {
    for (absl::Time at = start + absl::Seconds(progress); at < end;
         at += absl::Seconds(progress)) {
      absl::SleepFor(at - absl::Now());
      printf("soak-load: %.0f s calls=%lld errors=%lld\n",
             absl::ToDoubleSeconds(absl::Now() - start),
             static_cast<long long>(counters.Calls()),    // NOLINT(runtime/int)
             static_cast<long long>(counters.Errors()));  // NOLINT(runtime/int)
      fflush(stdout);
    }
  }
  for (auto& w : workers) w.join();
  counters.Print();
  return counters.Errors() == 0 && counters.Calls() > 0 ? 0 : 1;
}

}  // namespace
}  // namespace offkey::tests::soak

int main(int argc, char** argv) { return offkey::tests::soak::Main(argc, argv); }
