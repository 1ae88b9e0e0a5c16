// offkey_demo: talks to a running offkeyd over mutual TLS the way a TLS terminator does,
// and checks every answer locally with OpenSSL:
//   ListKeys and GetCertificate; Sign of a TLS 1.3 server CertificateVerify input with
//   each key, verified against the key's certificate; DecryptPremaster of a premaster
//   encrypted to the RSA key's certificate, and of a corrupted one (still 48 bytes, OK);
//   DeriveMasterSecret compared with a locally computed TLS 1.2 PRF.
//
//   offkey_demo --target=127.0.0.1:8443 --ca=ca.pem --cert=terminator.pem
//               --key=terminator.key
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "offkey/v1/key_service.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:8443", "offkeyd address (loopback).");
ABSL_FLAG(std::string, ca, "", "CA certificate that issued offkeyd's certificate (PEM).");
ABSL_FLAG(std::string, cert, "", "Client certificate (PEM).");
ABSL_FLAG(std::string, key, "", "Client private key (PEM).");

namespace offkey::tools::demo {
namespace {

using offkey::v1::KeyService;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    fprintf(stderr, "offkey_demo: cannot read %s\n", path.c_str());
    exit(2);
  }
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

EVP_PKEY* LeafKey(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509* cert = d2i_X509(nullptr, &p, static_cast<long>(der.size()));  // NOLINT
  if (cert == nullptr) return nullptr;
  EVP_PKEY* key = X509_get_pubkey(cert);
  X509_free(cert);
  return key;
}

const EVP_MD* MdFor(offkey::v1::SignatureScheme scheme) {
  switch (scheme) {
    case offkey::v1::ED25519:
      return nullptr;
    case offkey::v1::ECDSA_SECP384R1_SHA384:
    case offkey::v1::RSA_PSS_RSAE_SHA384:
    case offkey::v1::RSA_PKCS1_SHA384:
      return EVP_sha384();
    case offkey::v1::ECDSA_SECP521R1_SHA512:
    case offkey::v1::RSA_PSS_RSAE_SHA512:
    case offkey::v1::RSA_PKCS1_SHA512:
      return EVP_sha512();
    default:
      return EVP_sha256();
  }
}

bool Verify(EVP_PKEY* key, offkey::v1::SignatureScheme scheme, const std::string& message,
            const std::string& signature) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok = EVP_DigestVerifyInit(ctx, &pctx, MdFor(scheme), nullptr, key) == 1;
  if (ok && scheme >= offkey::v1::RSA_PSS_RSAE_SHA256 &&
      scheme <= offkey::v1::RSA_PSS_RSAE_SHA512) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
  }
  ok = ok && EVP_DigestVerify(
                 ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                 signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                 message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

std::string Random(size_t n) {
  std::string out(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n));
  return out;
}

std::string Tls12Prf(const std::string& secret, const std::string& label,
                     const std::string& seed) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "TLS1-PRF", nullptr);
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  std::string full_seed = label + seed;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>("SHA256"),
                                       0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET,
                                        const_cast<char*>(secret.data()), secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, full_seed.data(),
                                        full_seed.size()),
      OSSL_PARAM_construct_end()};
  std::string out(48, '\0');
  EVP_KDF_derive(ctx, reinterpret_cast<unsigned char*>(out.data()), out.size(), params);
  EVP_KDF_CTX_free(ctx);
  EVP_KDF_free(kdf);
  return out;
}

int failures = 0;

void Report(bool ok, const std::string& what) {
  printf("  %-4s %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (!ok) ++failures;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "calls offkeyd as a TLS terminator would and checks the answers with OpenSSL.");
  absl::ParseCommandLine(argc, argv);
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadFile(absl::GetFlag(FLAGS_ca));
  tls.pem_cert_chain = ReadFile(absl::GetFlag(FLAGS_cert));
  tls.pem_private_key = ReadFile(absl::GetFlag(FLAGS_key));
  auto channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_target), grpc::SslCredentials(tls));
  std::unique_ptr<KeyService::Stub> stub = KeyService::NewStub(channel);
  auto context = [] {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ctx;
  };

  offkey::v1::ListKeysResponse keys;
  grpc::Status status = stub->ListKeys(context().get(), {}, &keys);
  if (!status.ok()) {
    fprintf(stderr, "offkey_demo: ListKeys on %s failed: %s\n",
            absl::GetFlag(FLAGS_target).c_str(), status.error_message().c_str());
    return 1;
  }
  printf("offkeyd at %s answers over mutual TLS; %d keys usable by this client\n",
         absl::GetFlag(FLAGS_target).c_str(), keys.keys_size());
  for (const offkey::v1::KeyInfo& key : keys.keys()) {
    printf("\nkey %s (%s, key id %s)\n", key.name().c_str(),
           offkey::v1::KeyAlgorithm_Name(key.algorithm()).c_str(),
           absl::BytesToHexString(key.key_id()).c_str());
    offkey::v1::GetCertificateRequest cert_request;
    cert_request.mutable_key()->set_name(key.name());
    offkey::v1::GetCertificateResponse cert;
    status = stub->GetCertificate(context().get(), cert_request, &cert);
    Report(status.ok() && cert.certificate_chain_size() > 0,
           absl::StrCat("GetCertificate: ", cert.certificate_chain_size(),
                        " certificates, ", cert.schemes_size(), " schemes"));
    if (!status.ok() || cert.certificate_chain_size() == 0) continue;
    EVP_PKEY* pub = LeafKey(cert.certificate_chain(0));

    // What a TLS 1.3 server signs in CertificateVerify (RFC 8446 4.4.3).
    const std::string message = std::string(64, ' ') +
                                "TLS 1.3, server CertificateVerify" +
                                std::string(1, '\0') + Random(32);
    offkey::v1::SignRequest sign;
    sign.mutable_key()->set_name(key.name());
    sign.mutable_context()->set_version(offkey::v1::TLS_1_3);
    sign.mutable_context()->set_sni("localhost");
    sign.set_scheme(cert.schemes(0));
    sign.set_message(message);
    offkey::v1::SignResponse signature;
    status = stub->Sign(context().get(), sign, &signature);
    Report(status.ok() && Verify(pub, cert.schemes(0), message, signature.signature()),
           absl::StrCat("Sign ", offkey::v1::SignatureScheme_Name(cert.schemes(0)),
                        status.ok() ? ", verified with the certificate's public key"
                                    : ": " + status.error_message()));

    if (key.algorithm() == offkey::v1::RSA_2048 ||
        key.algorithm() == offkey::v1::RSA_3072 ||
        key.algorithm() == offkey::v1::RSA_4096) {
      // A TLS 1.2 client's premaster: the offered version, then 46 random bytes.
      std::string premaster = std::string("\x03\x03", 2) + Random(46);
      EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(pub, nullptr);
      size_t len = 0;
      EVP_PKEY_encrypt_init(ctx);
      EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
      EVP_PKEY_encrypt(ctx, nullptr, &len,
                       reinterpret_cast<const unsigned char*>(premaster.data()), 48);
      std::string ciphertext(len, '\0');
      EVP_PKEY_encrypt(ctx, reinterpret_cast<unsigned char*>(ciphertext.data()), &len,
                       reinterpret_cast<const unsigned char*>(premaster.data()), 48);
      EVP_PKEY_CTX_free(ctx);

      offkey::v1::DecryptPremasterRequest decrypt;
      decrypt.mutable_key()->set_name(key.name());
      decrypt.mutable_context()->set_version(offkey::v1::TLS_1_2);
      decrypt.set_ciphertext(ciphertext);
      decrypt.set_client_version(0x0303);
      offkey::v1::DecryptPremasterResponse decrypted;
      status = stub->DecryptPremaster(context().get(), decrypt, &decrypted);
      Report(status.ok() && decrypted.premaster() == premaster,
             "DecryptPremaster returns the client's premaster");

      std::string bad = ciphertext;
      bad[bad.size() / 2] ^= 0x40;  // Garbles the padding: the contract still answers.
      decrypt.set_ciphertext(bad);
      offkey::v1::DecryptPremasterResponse substitute;
      status = stub->DecryptPremaster(context().get(), decrypt, &substitute);
      Report(status.ok() && substitute.premaster().size() == 48 &&
                 substitute.premaster() != premaster,
             "DecryptPremaster of a corrupted ciphertext: OK, 48-byte substitute");

      offkey::v1::DeriveMasterSecretRequest derive;
      derive.mutable_key()->set_name(key.name());
      derive.mutable_context()->set_version(offkey::v1::TLS_1_2);
      derive.set_ciphertext(ciphertext);
      derive.set_client_version(0x0303);
      derive.set_prf_hash(offkey::v1::PRF_SHA256);
      std::string session_hash = Random(32);
      derive.set_session_hash(session_hash);
      offkey::v1::DeriveMasterSecretResponse master;
      status = stub->DeriveMasterSecret(context().get(), derive, &master);
      Report(
          status.ok() && master.master_secret() ==
                             Tls12Prf(premaster, "extended master secret", session_hash),
          "DeriveMasterSecret (extended master secret) matches the local TLS 1.2 PRF");
    }
    EVP_PKEY_free(pub);
  }
  printf("\n%s\n", failures == 0 ? "demo passed" : "DEMO FAILED");
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace offkey::tools::demo

int main(int argc, char** argv) { return offkey::tools::demo::Main(argc, argv); }
