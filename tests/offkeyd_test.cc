// offkeyd end to end: a real server on 127.0.0.1 over a real SoftHSM2 token, called over
// mutual TLS; every answer checked with OpenSSL or known answers.

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "base/mutex.h"
#include "base/testing/secret_ledger.h"
#include "hsm/testing/forwarding_store.h"
#include "hsm/testing/verify.h"
#include "hsm/testing/wycheproof.h"
#include "service/crypto/tls_prf.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {

using ::offkey::testing::RecordPrivateKeyDer;
using ::offkey::testing::RecordSecret;
namespace {

using hsm::testing::ForwardingStore;
using hsm::testing::RsaEncryptPkcs1;
using hsm::testing::RsaEncryptRaw;
using hsm::testing::Unhex;
using hsm::testing::VerifyWithOpenSsl;
using offkey::v1::SignatureScheme;

hsm::SignAlgorithm AlgorithmOf(SignatureScheme scheme) {
  using hsm::HashAlgorithm;
  using hsm::SignatureKind;
  switch (scheme) {
    case offkey::v1::RSA_PKCS1_SHA256:
      return {SignatureKind::kRsaPkcs1, HashAlgorithm::kSha256};
    case offkey::v1::RSA_PKCS1_SHA384:
      return {SignatureKind::kRsaPkcs1, HashAlgorithm::kSha384};
    case offkey::v1::RSA_PKCS1_SHA512:
      return {SignatureKind::kRsaPkcs1, HashAlgorithm::kSha512};
    case offkey::v1::RSA_PSS_RSAE_SHA256:
      return {SignatureKind::kRsaPss, HashAlgorithm::kSha256};
    case offkey::v1::RSA_PSS_RSAE_SHA384:
      return {SignatureKind::kRsaPss, HashAlgorithm::kSha384};
    case offkey::v1::RSA_PSS_RSAE_SHA512:
      return {SignatureKind::kRsaPss, HashAlgorithm::kSha512};
    case offkey::v1::ECDSA_SECP256R1_SHA256:
      return {SignatureKind::kEcdsa, HashAlgorithm::kSha256};
    case offkey::v1::ECDSA_SECP384R1_SHA384:
      return {SignatureKind::kEcdsa, HashAlgorithm::kSha384};
    case offkey::v1::ECDSA_SECP521R1_SHA512:
      return {SignatureKind::kEcdsa, HashAlgorithm::kSha512};
    default:
      return {SignatureKind::kEdDsa, HashAlgorithm::kNone};
  }
}

class DataPlaneTest : public OffkeydTest {
 protected:
  void SetUp() override {
    OffkeydTest::SetUp();
    rsa_ = AddKey("web-rsa", hsm::KeyAlgorithm::kRsa2048);
    terminator_ = Stub(kTerminator);
  }

  grpc::Status Sign(const std::string& key, SignatureScheme scheme,
                    offkey::v1::TlsVersion version, const std::string& message,
                    offkey::v1::SignResponse* response,
                    offkey::v1::KeyService::Stub* stub = nullptr) {
    offkey::v1::SignRequest request;
    request.mutable_key()->set_name(key);
    request.mutable_context()->set_version(version);
    request.set_scheme(scheme);
    request.set_message(message);
    return (stub ? stub : terminator_.get())->Sign(Context().get(), request, response);
  }

  grpc::Status Decrypt(const std::string& ciphertext, uint32_t client_version,
                       offkey::v1::DecryptPremasterResponse* response,
                       const std::string& key = "web-rsa") {
    offkey::v1::DecryptPremasterRequest request;
    request.mutable_key()->set_name(key);
    request.mutable_context()->set_version(offkey::v1::TLS_1_2);
    request.set_ciphertext(ciphertext);
    request.set_client_version(client_version);
    grpc::Status status =
        terminator_->DecryptPremaster(Context().get(), request, response);
    RecordSecret("premaster answer", response->premaster());
    return status;
  }

  hsm::KeyInfo rsa_;
  std::unique_ptr<offkey::v1::KeyService::Stub> terminator_;
};

// The same answers whether workers run the calls or, when idle, the gRPC threads that
// took them (workers.run_on_rpc_threads_when_idle).
using DataPlaneDispatchTest = EveryDispatch<DataPlaneTest>;
INSTANTIATE_TEST_SUITE_P(Dispatch, DataPlaneDispatchTest, ::testing::Bool(),
                         DispatchName);

TEST_P(DataPlaneDispatchTest, SignsEverySchemeForEveryKeyTypeVerifiableWithOpenSsl) {
  struct Case {
    const char* name;
    hsm::KeyAlgorithm algorithm;
    std::vector<SignatureScheme> tls13;
    std::vector<SignatureScheme> tls12_only;
  };
  const Case cases[] = {
      {"web-rsa3072",
       hsm::KeyAlgorithm::kRsa3072,
       {offkey::v1::RSA_PSS_RSAE_SHA256, offkey::v1::RSA_PSS_RSAE_SHA384,
        offkey::v1::RSA_PSS_RSAE_SHA512},
       {offkey::v1::RSA_PKCS1_SHA256, offkey::v1::RSA_PKCS1_SHA384,
        offkey::v1::RSA_PKCS1_SHA512}},
      {"web-p256", hsm::KeyAlgorithm::kEcP256, {offkey::v1::ECDSA_SECP256R1_SHA256}, {}},
      {"web-p384", hsm::KeyAlgorithm::kEcP384, {offkey::v1::ECDSA_SECP384R1_SHA384}, {}},
      {"web-p521", hsm::KeyAlgorithm::kEcP521, {offkey::v1::ECDSA_SECP521R1_SHA512}, {}},
      {"web-ed25519", hsm::KeyAlgorithm::kEd25519, {offkey::v1::ED25519}, {}},
  };
  int verified = 0;
  for (const Case& c : cases) {
    hsm::KeyInfo key = AddKey(c.name, c.algorithm);
    auto check = [&](SignatureScheme scheme, offkey::v1::TlsVersion version,
                     const std::string& message) {
      SCOPED_TRACE(absl::StrCat(c.name, " ", SignatureScheme_Name(scheme), " ", version));
      offkey::v1::SignResponse response;
      grpc::Status status = Sign(c.name, scheme, version, message, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      EXPECT_EQ(response.key_id(), key.key_id);
      EXPECT_TRUE(VerifyWithOpenSsl(key.public_key_spki, AlgorithmOf(scheme), message,
                                    response.signature())
                      .ok());
      ++verified;
    };
    for (SignatureScheme scheme : c.tls13) {
      check(scheme, offkey::v1::TLS_1_3, Tls13Input(32));
      check(scheme, offkey::v1::TLS_1_3, Tls13Input(48));
      if (scheme == offkey::v1::ED25519) {
        // Ed25519 tls-server keys sign TLS 1.3 inputs only (service/tls/README.md).
        offkey::v1::SignResponse response;
        grpc::Status refused =
            Sign(c.name, scheme, offkey::v1::TLS_1_2, Tls12EcdheInput(), &response);
        EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << refused.error_message();
        continue;
      }
      check(scheme, offkey::v1::TLS_1_2, Tls12EcdheInput());
    }
    for (SignatureScheme scheme : c.tls12_only) {
      check(scheme, offkey::v1::TLS_1_2, Tls12EcdheInput());
      offkey::v1::SignResponse response;
      grpc::Status refused =
          Sign(c.name, scheme, offkey::v1::TLS_1_3, Tls13Input(), &response);
      EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << SignatureScheme_Name(scheme) << " must be refused in TLS 1.3";
    }
  }
  // RSA: 3 schemes in 3 shapes, 3 in TLS 1.2; ECDSA: 3 keys in 3 shapes; Ed25519: the
  // 2 TLS 1.3 shapes.
  EXPECT_EQ(verified, 3 * 3 + 3 + 3 * 3 + 2);
}

TEST_F(DataPlaneTest, TlsServerKeysSignOnlyHandshakeShapedInput) {
  AddKey("gen", hsm::KeyAlgorithm::kEcP256, offkey::v1::GENERAL_SIGNING);
  offkey::v1::SignResponse response;
  grpc::Status status = Sign("web-rsa", offkey::v1::RSA_PSS_RSAE_SHA256,
                             offkey::v1::TLS_1_3, "transfer $1M to mallory", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(status.error_message().find("CertificateVerify"), std::string::npos)
      << status.error_message();
  // A client CertificateVerify input is not a server's to sign.
  std::string client_cv = std::string(64, ' ') + "TLS 1.3, client CertificateVerify" +
                          std::string(1, '\0') + Random(32);
  EXPECT_EQ(Sign("web-rsa", offkey::v1::RSA_PSS_RSAE_SHA256, offkey::v1::TLS_1_3,
                 client_cv, &response)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // A general-signing key signs anything.
  EXPECT_TRUE(Sign("gen", offkey::v1::ECDSA_SECP256R1_SHA256,
                   offkey::v1::TLS_VERSION_UNSPECIFIED, "any message", &response)
                  .ok());
}

TEST_P(DataPlaneDispatchTest, DecryptPremasterReturnsTheClientsPremaster) {
  std::string premaster = std::string("\x03\x03", 2) + Random(46);
  RecordSecret("premaster", premaster);
  offkey::v1::DecryptPremasterResponse response;
  grpc::Status status =
      Decrypt(RsaEncryptPkcs1(rsa_.public_key_spki, premaster), 0x0303, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.premaster(), premaster);
}

// Every malformed class answers exactly like a good ciphertext: OK, 48 bytes, the same
// bytes again for the same ciphertext (so every replica agrees), nothing in the status.
TEST_F(DataPlaneTest, MalformedPremastersAllGetOkAnd48RepeatableBytes) {
  const size_t k = 256;
  auto block = [&](absl::string_view prefix, size_t message_len, bool separator,
                   uint16_t version) {
    std::string b(k, '\0');
    b[0] = prefix[0];
    b[1] = prefix[1];
    for (size_t i = 2; i < k; ++i) b[i] = static_cast<char>(1 + (Random(1)[0] & 0x7f));
    if (separator) b[k - message_len - 1] = 0;
    b[k - message_len] = static_cast<char>(version >> 8);
    b[k - message_len + 1] = static_cast<char>(version & 0xff);
    RecordSecret("premaster block", b);
    return b;
  };
  std::string good_block = block(std::string("\x00\x02", 2), 48, true, 0x0303);
  const std::pair<const char*, std::string> classes[] = {
      {"bad block type 01", block(std::string("\x00\x01", 2), 48, true, 0x0303)},
      {"bad block type 00", block(std::string("\x00\x00", 2), 48, true, 0x0303)},
      {"first byte not zero", block(std::string("\x01\x02", 2), 48, true, 0x0303)},
      {"no zero separator", block(std::string("\x00\x02", 2), 48, false, 0x0303)},
      {"short plaintext (47)", block(std::string("\x00\x02", 2), 47, true, 0x0303)},
      {"long plaintext (49)", block(std::string("\x00\x02", 2), 49, true, 0x0303)},
      {"wrong version", block(std::string("\x00\x02", 2), 48, true, 0x0302)},
  };
  offkey::v1::DecryptPremasterResponse good;
  ASSERT_TRUE(
      Decrypt(RsaEncryptRaw(rsa_.public_key_spki, good_block), 0x0303, &good).ok());
  EXPECT_EQ(good.premaster(), good_block.substr(k - 48));
  std::set<std::string> seen = {good.premaster()};
  for (const auto& [name, plain] : classes) {
    SCOPED_TRACE(name);
    std::string ct = RsaEncryptRaw(rsa_.public_key_spki, plain);
    offkey::v1::DecryptPremasterResponse first, second;
    grpc::Status s1 = Decrypt(ct, 0x0303, &first);
    grpc::Status s2 = Decrypt(ct, 0x0303, &second);
    ASSERT_TRUE(s1.ok()) << s1.error_message();
    ASSERT_TRUE(s2.ok());
    EXPECT_EQ(first.premaster().size(), 48u);
    EXPECT_EQ(first.premaster(), second.premaster());
    EXPECT_TRUE(seen.insert(first.premaster()).second) << "substitute collided";
  }
}

TEST_F(DataPlaneTest, WycheproofPkcs1VectorsThroughDecryptPremaster) {
  auto json = hsm::testing::LoadJson("wycheproof/rsa_pkcs1_2048_test.json");
  ASSERT_TRUE(json.ok()) << json.status();
  int ok = 0, refused = 0, shorter = 0, index = 0;
  for (const auto& group : json->fields().at("testGroups").list_value().values()) {
    const auto& g = group.struct_value().fields();
    SecretBytes pkcs8(Unhex(g.at("privateKeyPkcs8").string_value()));
    RecordPrivateKeyDer("wycheproof key", pkcs8.view());
    std::string name = absl::StrCat("wp-", index++);
    auto key = store_->ImportKey(name, pkcs8);
    ASSERT_TRUE(key.ok()) << key.status();
    PutMetadata(*key, offkey::v1::TLS_SERVER);
    for (const auto& test : g.at("tests").list_value().values()) {
      const auto& t = test.struct_value().fields();
      std::string ct = Unhex(t.at("ct").string_value());
      offkey::v1::DecryptPremasterResponse first, second;
      grpc::Status status = Decrypt(ct, 0x0303, &first, name);
      if (ct.size() > 256) {
        // Visible without decrypting: the only error the contract allows.
        EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
        EXPECT_EQ(t.at("result").string_value(), "invalid");
        ++refused;
        continue;
      }
      if (ct.size() < 256) {
        // A shorter ciphertext is the same integer zero-padded (as OpenSSL reads it):
        // the padded form's answer.
        offkey::v1::DecryptPremasterResponse padded;
        ASSERT_TRUE(status.ok()) << status.error_message();
        ASSERT_TRUE(
            Decrypt(std::string(256 - ct.size(), '\0') + ct, 0x0303, &padded, name).ok());
        EXPECT_EQ(first.premaster(), padded.premaster());
        ++shorter;
        continue;
      }
      if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
          status.error_message().find("modulus") != std::string::npos) {
        ++refused;  // c >= n, also visible without decrypting.
        continue;
      }
      ASSERT_TRUE(status.ok()) << t.at("tcId").number_value() << status.error_message();
      ASSERT_TRUE(Decrypt(ct, 0x0303, &second, name).ok());
      EXPECT_EQ(first.premaster().size(), 48u);
      EXPECT_EQ(first.premaster(), second.premaster());
      // No Wycheproof message is a 48-byte premaster starting 03 03, so each must come
      // back as the substitute, never as the message.
      EXPECT_NE(first.premaster(), Unhex(t.at("msg").string_value()));
      ++ok;
    }
  }
  EXPECT_GT(ok, 50);
  EXPECT_GT(refused, 0);
  EXPECT_GT(shorter, 0);
}

TEST_P(DataPlaneDispatchTest, DeriveMasterSecretMatchesPrfKnownAnswers) {
  // Known answers whose secret is a 48-byte premaster: encrypt that premaster to the key
  // and let offkeyd derive; the premaster's first two bytes are the offered version.
  std::ifstream in(hsm::testing::TestDataPath("tls12-prf/tls12_prf_kats_flat.tsv"));
  ASSERT_TRUE(in.good());
  std::string line;
  std::getline(in, line);
  std::vector<std::string> header = absl::StrSplit(line, '\t');
  auto column = [&](const std::string& name) {
    for (size_t i = 0; i < header.size(); ++i) {
      if (header[i] == name) return i;
    }
    ADD_FAILURE() << "no column " << name;
    return size_t{0};
  };
  const size_t hash_col = column("hash"), secret_col = column("secret_hex"),
               label_col = column("label_ascii"), seed_col = column("seed_hex"),
               expected_col = column("expected_hex");
  int checked = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> row = absl::StrSplit(line, '\t');
    if (row.size() < header.size()) continue;
    std::string secret = Unhex(row[secret_col]);
    RecordSecret("prf known-answer premaster", secret);
    std::string label = row[label_col];
    std::string expected = Unhex(row[expected_col]);
    std::string seed = Unhex(row[seed_col]);
    bool ems = label == "extended master secret";
    if (secret.size() != 48 || expected.size() != 48 ||
        (label != "master secret" && !ems)) {
      continue;
    }
    offkey::v1::PrfHash prf;
    if (row[hash_col] == "SHA-256" || row[hash_col] == "sha256") {
      prf = offkey::v1::PRF_SHA256;
    } else if (row[hash_col] == "SHA-384" || row[hash_col] == "sha384") {
      prf = offkey::v1::PRF_SHA384;
    } else {
      continue;
    }
    offkey::v1::DeriveMasterSecretRequest request;
    request.mutable_key()->set_name("web-rsa");
    request.mutable_context()->set_version(offkey::v1::TLS_1_2);
    request.set_ciphertext(RsaEncryptPkcs1(rsa_.public_key_spki, secret));
    request.set_client_version((static_cast<uint8_t>(secret[0]) << 8) |
                               static_cast<uint8_t>(secret[1]));
    request.set_prf_hash(prf);
    if (ems) {
      request.set_session_hash(seed);
    } else {
      ASSERT_EQ(seed.size(), 64u);
      request.mutable_randoms()->set_client_random(seed.substr(0, 32));
      request.mutable_randoms()->set_server_random(seed.substr(32));
    }
    offkey::v1::DeriveMasterSecretResponse response;
    grpc::Status status =
        terminator_->DeriveMasterSecret(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    RecordSecret("master secret", response.master_secret());
    // Compared without printing: a failure must not put the secret in the log.
    EXPECT_TRUE(response.master_secret() == expected)
        << row[hash_col] << " " << label << ", seed " << row[seed_col];
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

TEST_F(DataPlaneTest, PolicyDeniesByDefaultAndHidesWhichKeysExist) {
  AddKey("public-ec", hsm::KeyAlgorithm::kEcP256, offkey::v1::TLS_SERVER,
         offkey::v1::ENABLED, {{"team", "public"}});
  auto reader = Stub(kReader);
  auto stranger = Stub(kStranger);
  offkey::v1::SignResponse sign;
  // Unknown identity: nothing, and the same answer for a real and a missing key.
  grpc::Status real = Sign("web-rsa", offkey::v1::RSA_PSS_RSAE_SHA256,
                           offkey::v1::TLS_1_3, Tls13Input(), &sign, stranger.get());
  grpc::Status missing = Sign("no-such-key", offkey::v1::RSA_PSS_RSAE_SHA256,
                              offkey::v1::TLS_1_3, Tls13Input(), &sign, stranger.get());
  EXPECT_EQ(real.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto strip_name = [](std::string message, const std::string& name) {
    return message.replace(message.find(name), name.size(), "KEY");
  };
  EXPECT_EQ(strip_name(real.error_message(), "web-rsa"),
            strip_name(missing.error_message(), "no-such-key"));
  // Wrong operation: the reader may read certificates but not sign.
  EXPECT_EQ(Sign("public-ec", offkey::v1::ECDSA_SECP256R1_SHA256, offkey::v1::TLS_1_3,
                 Tls13Input(), &sign, reader.get())
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  offkey::v1::GetCertificateRequest cert_request;
  offkey::v1::GetCertificateResponse cert;
  cert_request.mutable_key()->set_name("public-ec");
  EXPECT_TRUE(reader->GetCertificate(Context().get(), cert_request, &cert).ok());
  EXPECT_EQ(cert.certificate_chain_size(), 2);
  // Wrong key: not labelled team=public.
  cert_request.mutable_key()->set_name("web-rsa");
  EXPECT_EQ(reader->GetCertificate(Context().get(), cert_request, &cert).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // ListKeys shows only what the caller may use.
  offkey::v1::ListKeysResponse listed;
  ASSERT_TRUE(reader->ListKeys(Context().get(), {}, &listed).ok());
  ASSERT_EQ(listed.keys_size(), 1);
  EXPECT_EQ(listed.keys(0).name(), "public-ec");
  ASSERT_TRUE(stranger->ListKeys(Context().get(), {}, &listed).ok());
  EXPECT_EQ(listed.keys_size(), 0);
  ASSERT_TRUE(terminator_->ListKeys(Context().get(), {}, &listed).ok());
  EXPECT_EQ(listed.keys_size(), 2);
}

TEST_F(DataPlaneTest, NoClientCertificateNoService) {
  auto anonymous = StubWithoutCertificate();
  offkey::v1::ListKeysResponse listed;
  grpc::Status status = anonymous->ListKeys(Context(absl::Seconds(5)).get(), {}, &listed);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(DataPlaneTest, DisabledKeysAreRefused) {
  AddKey("off", hsm::KeyAlgorithm::kEcP256, offkey::v1::TLS_SERVER, offkey::v1::DISABLED);
  offkey::v1::SignResponse sign;
  grpc::Status status = Sign("off", offkey::v1::ECDSA_SECP256R1_SHA256,
                             offkey::v1::TLS_1_3, Tls13Input(), &sign);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("disabled"), std::string::npos);
}

TEST_F(DataPlaneTest, BadInputIsInvalidArgumentNamingTheField) {
  offkey::v1::SignResponse sign;
  struct Case {
    grpc::Status status;
    const char* field;
  };
  offkey::v1::SignRequest no_key;
  no_key.set_scheme(offkey::v1::RSA_PSS_RSAE_SHA256);
  no_key.set_message("m");
  offkey::v1::DecryptPremasterResponse premaster;
  offkey::v1::DeriveMasterSecretRequest derive;
  derive.mutable_key()->set_name("web-rsa");
  derive.set_ciphertext(std::string(256, '\1'));
  derive.set_prf_hash(offkey::v1::PRF_SHA256);
  derive.mutable_randoms()->set_client_random("short");
  derive.mutable_randoms()->set_server_random(std::string(32, 's'));
  offkey::v1::DeriveMasterSecretResponse master;
  const Case cases[] = {
      {Sign("web-rsa", offkey::v1::RSA_PSS_RSAE_SHA256, offkey::v1::TLS_1_3, "", &sign),
       "message"},
      {Sign("web-rsa", offkey::v1::RSA_PSS_RSAE_SHA256, offkey::v1::TLS_1_3,
            std::string(64 * 1024 + 1, 'x'), &sign),
       "message"},
      {Sign("web-rsa", static_cast<SignatureScheme>(0x1234), offkey::v1::TLS_1_3,
            Tls13Input(), &sign),
       "scheme"},
      {Sign("web-rsa", offkey::v1::ECDSA_SECP256R1_SHA256, offkey::v1::TLS_1_3,
            Tls13Input(), &sign),
       "ecdsa_secp256r1_sha256"},
      {terminator_->Sign(Context().get(), no_key, &sign), "key"},
      {Decrypt(std::string(257, '\1'), 0x0303, &premaster), "ciphertext"},
      {Decrypt(std::string(256, '\xff'), 0x0303, &premaster), "modulus"},
      {Decrypt(std::string(256, '\1'), 0x10000, &premaster), "client_version"},
      {terminator_->DeriveMasterSecret(Context().get(), derive, &master), "randoms"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.field << ": " << c.status.error_message();
    EXPECT_NE(c.status.error_message().find(c.field), std::string::npos)
        << c.status.error_message();
  }
  // Shorter than the modulus is not bad input: it is the same integer zero-padded, as
  // OpenSSL reads it; the answer is the padded form's.
  offkey::v1::DecryptPremasterResponse padded;
  ASSERT_TRUE(Decrypt(std::string(256, '\0'), 0x0303, &padded).ok());
  for (const std::string& ciphertext : {std::string(), std::string(255, '\0')}) {
    offkey::v1::DecryptPremasterResponse short_answer;
    grpc::Status status = Decrypt(ciphertext, 0x0303, &short_answer);
    EXPECT_TRUE(status.ok()) << ciphertext.size() << ": " << status.error_message();
    EXPECT_EQ(short_answer.premaster(), padded.premaster()) << ciphertext.size();
  }
}

class SaturatedTest : public DataPlaneTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    config->mutable_workers()->set_threads(1);
    config->mutable_workers()->set_queue_depth(1);
  }
};

TEST_F(SaturatedTest, FullQueueFailsAtOnceWithResourceExhausted) {
  AddKey("big", hsm::KeyAlgorithm::kRsa4096);
  constexpr int kCalls = 24;
  std::vector<std::thread> threads;
  std::atomic<int> exhausted{0}, ok{0};
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&] {
      offkey::v1::SignResponse response;
      grpc::Status status = Sign("big", offkey::v1::RSA_PSS_RSAE_SHA256,
                                 offkey::v1::TLS_1_3, Tls13Input(), &response);
      if (status.ok()) ++ok;
      if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++exhausted;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GT(exhausted.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(ok.load() + exhausted.load(), kCalls);
}

class AuditedTest : public DataPlaneTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    config->mutable_audit()->set_path(AuditPath());
  }
  std::vector<std::string> AuditLines() {
    std::ifstream in(AuditPath());
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
};

// Drops the fields that differ from call to call.
std::string WithoutTimeAndLatency(const std::string& line) {
  std::string out = line;
  size_t t = out.find("\"time\":\"");
  size_t t_end = out.find('"', t + 8);
  out.erase(t, t_end + 1 - t);
  return out.substr(0, out.find(",\"latency_us\""));
}

TEST_F(AuditedTest, OneLinePerOperationIdenticalForGoodAndBadPaddingAndNoSecrets) {
  std::string premaster = std::string("\x03\x03", 2) + Random(46);
  RecordSecret("premaster", premaster);
  std::string good = RsaEncryptPkcs1(rsa_.public_key_spki, premaster);
  std::string bad = good;
  bad[100] ^= 0x01;
  offkey::v1::DecryptPremasterResponse good_answer, bad_answer;
  ASSERT_TRUE(Decrypt(good, 0x0303, &good_answer).ok());
  ASSERT_TRUE(Decrypt(bad, 0x0303, &bad_answer).ok());
  const std::string message = Tls13Input();
  offkey::v1::SignResponse signature;
  ASSERT_TRUE(Sign("web-rsa", offkey::v1::RSA_PSS_RSAE_SHA256, offkey::v1::TLS_1_3,
                   message, &signature)
                  .ok());
  auto stranger = Stub(kStranger);
  offkey::v1::SignResponse denied;
  EXPECT_FALSE(Sign("web-rsa", offkey::v1::RSA_PSS_RSAE_SHA256, offkey::v1::TLS_1_3,
                    message, &denied, stranger.get())
                   .ok());

  std::vector<std::string> lines = AuditLines();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(WithoutTimeAndLatency(lines[0]), WithoutTimeAndLatency(lines[1]))
      << "good and bad padding must audit alike";
  EXPECT_NE(lines[0].find("\"operation\":\"decrypt-premaster\""), std::string::npos);
  EXPECT_NE(lines[0].find(absl::StrCat("\"identity\":\"", kTerminator, "\"")),
            std::string::npos);
  EXPECT_NE(lines[0].find("\"outcome\":\"OK\""), std::string::npos);
  EXPECT_NE(lines[2].find("\"scheme\":\"rsa_pss_rsae_sha256\""), std::string::npos);
  EXPECT_NE(lines[2].find("\"key\":\"web-rsa\""), std::string::npos);
  EXPECT_NE(lines[3].find("\"outcome\":\"PERMISSION_DENIED\""), std::string::npos);
  EXPECT_NE(lines[3].find(kStranger), std::string::npos);
  // No secret, message or ciphertext, in raw or hex form.
  std::string all;
  for (const std::string& line : lines) all += line + "\n";
  for (const std::string& secret :
       {premaster, good_answer.premaster(), bad_answer.premaster(), good,
        message.substr(98), signature.signature()}) {
    for (const std::string& form :
         {secret.substr(0, 12), absl::BytesToHexString(secret).substr(0, 24)}) {
      EXPECT_EQ(all.find(form), std::string::npos) << "audit log leaks " << form;
    }
  }
}

// Forwards to the real store and counts signatures per key: shows which calls reached
// the HSM. Hold() makes signatures wait inside the "HSM" until Release().
class CountingStore : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  int signs(const std::string& key_id) {
    offkey::MutexLock lock(&mu_);
    return signs_[key_id];
  }
  void Hold() {
    offkey::MutexLock lock(&mu_);
    held_ = true;
  }
  void Release() {
    offkey::MutexLock lock(&mu_);
    held_ = false;
  }
  // Blocks until a signature with `key_id` has entered the store.
  void AwaitSign(const std::string& key_id) {
    offkey::MutexLock lock(&mu_);
    std::pair<std::map<std::string, int>*, const std::string*> waiting{&signs_, &key_id};
    mu_.Await(absl::Condition(
        +[](std::pair<std::map<std::string, int>*, const std::string*>* arg) {
          return (*arg->first)[*arg->second] != 0;
        },
        &waiting));
  }
  absl::StatusOr<std::string> Sign(absl::string_view id, hsm::SignAlgorithm a,
                                   absl::string_view m,
                                   const hsm::CallOptions& o) override {
    {
      offkey::MutexLock lock(&mu_);
      ++signs_[std::string(id)];
      mu_.Await(absl::Condition(
          +[](bool* held) { return !*held; }, &held_));
    }
    return ForwardingStore::Sign(id, a, m, o);
  }

 private:
  offkey::Mutex mu_;
  std::map<std::string, int> signs_ ABSL_GUARDED_BY(mu_);
  bool held_ ABSL_GUARDED_BY(mu_) = false;
};

class QueuedDeadlineTest : public DataPlaneTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    config->mutable_workers()->set_threads(1);
    config->mutable_workers()->set_queue_depth(64);
  }
  hsm::KeyStore* ServedStore(hsm::KeyStore* real) override {
    counting_ = std::make_unique<CountingStore>(real);
    return counting_.get();
  }
  std::unique_ptr<CountingStore> counting_;
};

// A call that waited in the queue past its deadline never reaches the HSM.
TEST_F(QueuedDeadlineTest, ExpiredCallsAreDroppedBeforeTheHsm) {
  hsm::KeyInfo big = AddKey("big", hsm::KeyAlgorithm::kRsa4096);
  hsm::KeyInfo quick = AddKey("quick", hsm::KeyAlgorithm::kEcP256);
  // The single worker is held inside the HSM with a signature, so the next call can
  // only wait in the queue.
  counting_->Hold();
  std::thread busy([&] {
    offkey::v1::SignResponse response;
    Sign("big", offkey::v1::RSA_PSS_RSAE_SHA256, offkey::v1::TLS_1_3, Tls13Input(),
         &response);
  });
  counting_->AwaitSign(big.key_id);
  offkey::v1::SignRequest request;
  request.mutable_key()->set_name("quick");
  request.mutable_context()->set_version(offkey::v1::TLS_1_3);
  request.set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
  request.set_message(Tls13Input());
  offkey::v1::SignResponse response;
  grpc::Status status =
      terminator_->Sign(Context(absl::Milliseconds(30)).get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  counting_->Release();
  busy.join();
  EXPECT_EQ(counting_->signs(big.key_id), 1);
  EXPECT_EQ(counting_->signs(quick.key_id), 0) << "an expired call reached the HSM";
}

}  // namespace
}  // namespace offkey::tests
