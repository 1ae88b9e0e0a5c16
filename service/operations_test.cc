// Unit tests of the data-plane operations over a FakeKeyStore, without gRPC or mTLS:
// signatures checked with OpenSSL, the DecryptPremaster contract, the TLS 1.2 master
// secret, authorization (one denial for unknown and forbidden keys), key states and
// store errors.
#include "service/operations.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "base/openssl_util.h"
#include "base/secret_bytes.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "hsm/testing/caller_thread_store.h"
#include "hsm/testing/fake_key_store.h"
#include "hsm/testing/verify.h"
#include "service/crypto/substitute.h"
#include "service/crypto/tls_prf.h"
#include "service/tls/handshake_shape.h"
#include "service/tls/schemes.h"

namespace offkey::service {
namespace {

using ::offkey::hsm::KeyAlgorithm;
using ::offkey::hsm::KeyInfo;
using ::offkey::hsm::testing::FakeKeyStore;
using ::offkey::hsm::testing::VerifyWithOpenSsl;
using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using M = FakeKeyStore::Method;

constexpr char kEdge[] = "spiffe://example.org/edge";
constexpr char kStranger[] = "spiffe://example.org/stranger";
constexpr char kVerifier[] = "spiffe://example.org/verifier";

// The edge may use keys labelled tier=edge for everything; the stranger may only read
// certificates of the "public" key.
constexpr char kPolicy[] = R"pb(
  grants {
    identities: "spiffe://example.org/edge"
    operations: [
      SIGN,
      DECRYPT_PREMASTER,
      DERIVE_MASTER_SECRET,
      GET_CERTIFICATE,
      LIST_KEYS
    ]
    keys { labels { key: "tier" value: "edge" } }
  }
  grants {
    identities: "spiffe://example.org/stranger"
    operations: [ GET_CERTIFICATE ]
    keys { names: "public" }
  }
  grants {
    identities: "spiffe://example.org/verifier"
    operations: [ VERIFY_CLIENT ]
    keys { all_keys: true }
  }
)pb";

std::shared_ptr<const config::Policy> MakePolicy() {
  offkey::v1::PolicyConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(kPolicy, &config));
  absl::StatusOr<config::Policy> policy =
      config::Policy::Create(config, google::protobuf::RepeatedPtrField<std::string>());
  EXPECT_THAT(policy, IsOk());
  return std::make_shared<const config::Policy>(*std::move(policy));
}

offkey::v1::KeyRef ByName(absl::string_view name) {
  offkey::v1::KeyRef ref;
  ref.set_name(std::string(name));
  return ref;
}

// A TLS 1.3 server CertificateVerify input with a transcript hash of `hash_len` bytes.
std::string Tls13ServerInput(size_t hash_len = 32) {
  return std::string(64, ' ') + "TLS 1.3, server CertificateVerify" +
         std::string(1, '\0') + std::string(hash_len, '\x42');
}

// A TLS 1.2 ServerKeyExchange signature input: randoms, then secp256r1 ECDHE params
// with a fresh key share (the shape check decodes the point).
std::string Tls12EcdheInput() {
  EvpPkeyPtr share(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  std::string point(65, '\0');
  size_t length = 0;
  EXPECT_EQ(EVP_PKEY_get_octet_string_param(
                share.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                reinterpret_cast<unsigned char*>(point.data()), point.size(), &length),
            1);
  EXPECT_EQ(length, point.size());
  return std::string(64, '\x11') + std::string("\x03\x00\x17\x41", 4) + point;
}

// A TLS 1.2 ServerKeyExchange signature input with ffdhe2048 DHE params (RFC 7919), the
// prime as OpenSSL knows it.
std::string Tls12DheInput() {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "DH", nullptr));
  EVP_PKEY* raw = nullptr;
  EXPECT_EQ(EVP_PKEY_paramgen_init(ctx.get()), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_group_name(ctx.get(), "ffdhe2048"), 1);
  EXPECT_EQ(EVP_PKEY_paramgen(ctx.get(), &raw), 1);
  EvpPkeyPtr params(raw);
  BIGNUM* p = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(params.get(), OSSL_PKEY_PARAM_FFC_P, &p), 1);
  BignumPtr owned(p);
  std::string prime(256, '\0');
  EXPECT_EQ(BN_bn2binpad(p, reinterpret_cast<unsigned char*>(prime.data()), 256), 256);
  const std::string ys = "\x5a" + std::string(255, '\x33');
  return std::string(64, '\x11') + std::string("\x01\x00", 2) + prime +
         std::string("\x00\x01\x02\x01\x00", 5) + ys;
}

// A TLS 1.2 premaster: client version, then 46 bytes.
std::string Premaster(uint16_t version = 0x0303) {
  std::string premaster(48, '\x5c');
  premaster[0] = static_cast<char>(version >> 8);
  premaster[1] = static_cast<char>(version & 0xff);
  for (size_t i = 2; i < premaster.size(); ++i) premaster[i] = static_cast<char>(i * 7);
  return premaster;
}

// A PKCS#1 type-2 block of `k` bytes around `message`, with `type` as byte 1 and
// `separator` where the 0x00 before the message belongs.
std::string Block(size_t k, const std::string& message, char type = 2,
                  char separator = 0) {
  std::string block(k, '\x7f');
  block[0] = 0;
  block[1] = type;
  block[k - message.size() - 1] = separator;
  block.replace(k - message.size(), message.size(), message);
  return block;
}

class OperationsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Key generation is the slow part; every test imports the same keys.
    for (KeyAlgorithm algorithm : {KeyAlgorithm::kRsa2048, KeyAlgorithm::kEcP256,
                                   KeyAlgorithm::kEcP384, KeyAlgorithm::kEd25519}) {
      (*pkcs8_)[algorithm] = hsm::testing::GeneratePkcs8(algorithm);
    }
  }

  void SetUp() override {
    rsa_ = Import("rsa", KeyAlgorithm::kRsa2048, {{"tier", "edge"}});
    p256_ = Import("p256", KeyAlgorithm::kEcP256, {{"tier", "edge"}});
    p384_ = Import("p384", KeyAlgorithm::kEcP384, {{"tier", "edge"}});
    ed_ = Import("ed", KeyAlgorithm::kEd25519, {{"tier", "edge"}});
    secret_ = Import("secret", KeyAlgorithm::kEcP256, {},
                     hsm::testing::GeneratePkcs8(KeyAlgorithm::kEcP256));
    ASSERT_THAT(catalog_.Refresh(), IsOk());
  }

  // Imports the shared key of `algorithm`, or `pkcs8` when given.
  KeyInfo Import(absl::string_view name, KeyAlgorithm algorithm,
                 const std::map<std::string, std::string>& labels,
                 const std::string& pkcs8 = "") {
    absl::StatusOr<KeyInfo> info = store_->ImportKey(
        name, SecretBytes(pkcs8.empty() ? pkcs8_->at(algorithm) : pkcs8));
    EXPECT_THAT(info, IsOk());
    if (!info.ok()) return KeyInfo();
    SetMetadata(*info, offkey::v1::TLS_SERVER, offkey::v1::ENABLED, labels);
    return *info;
  }

  void SetMetadata(const KeyInfo& key, offkey::v1::KeyUsage usage,
                   offkey::v1::KeyState state,
                   const std::map<std::string, std::string>& labels = {
                       {"tier", "edge"}}) {
    offkey::v1::KeyMetadata metadata;
    metadata.set_format_version(1);
    metadata.set_usage(usage);
    metadata.set_state(state);
    for (const auto& [k, v] : labels) (*metadata.mutable_labels())[k] = v;
    ASSERT_THAT(store_->PutMetadata(key.key_id, metadata.SerializeAsString()), IsOk());
    ASSERT_THAT(catalog_.Refresh(), IsOk());
  }

  offkey::v1::SignRequest SignRequest(
      absl::string_view key, offkey::v1::SignatureScheme scheme,
      const std::string& message, offkey::v1::TlsVersion version = offkey::v1::TLS_1_3) {
    offkey::v1::SignRequest request;
    *request.mutable_key() = ByName(key);
    request.mutable_context()->set_version(version);
    request.mutable_context()->set_sni("www.example.com");
    request.set_scheme(scheme);
    request.set_message(message);
    return request;
  }

  offkey::v1::DecryptPremasterRequest DecryptRequest(const std::string& ciphertext,
                                                     uint32_t client_version = 0x0303,
                                                     absl::string_view key = "rsa") {
    offkey::v1::DecryptPremasterRequest request;
    *request.mutable_key() = ByName(key);
    request.mutable_context()->set_version(offkey::v1::TLS_1_2);
    request.set_ciphertext(ciphertext);
    request.set_client_version(client_version);
    return request;
  }

  // The premaster DecryptPremaster returns for `ciphertext`, which must be OK.
  std::string Decrypt(const std::string& ciphertext, uint32_t client_version = 0x0303) {
    absl::StatusOr<offkey::v1::DecryptPremasterResponse> response = ops_.DecryptPremaster(
        edge_, DecryptRequest(ciphertext, client_version), deadline_);
    EXPECT_THAT(response, IsOk());
    return response.ok() ? response->premaster() : "";
  }

  // What the substitute premaster for `ciphertext` sent with `client_version` under
  // `rsa_` is, computed from the store directly.
  std::string Substitute(const std::string& ciphertext, uint16_t client_version) {
    absl::StatusOr<SecretBytes> substitute =
        crypto::ComputeSubstitute(*store_, rsa_.key_id, client_version, ciphertext, {});
    EXPECT_THAT(substitute, IsOk());
    return substitute.ok() ? std::string(substitute->view()) : "";
  }

  static std::map<KeyAlgorithm, std::string>* pkcs8_;
  std::unique_ptr<FakeKeyStore> store_ = FakeKeyStore::Create();
  KeyCatalog catalog_{store_.get(), absl::Hours(1), absl::Hours(1)};
  Operations ops_{store_.get(), &catalog_, MakePolicy()};
  const Caller edge_{kEdge};
  const Caller stranger_{kStranger};
  const absl::Time deadline_ = absl::InfiniteFuture();
  KeyInfo rsa_, p256_, p384_, ed_, secret_;
};

std::map<KeyAlgorithm, std::string>* OperationsTest::pkcs8_ =
    new std::map<KeyAlgorithm, std::string>();

// ---------------------------------------------------------------------------- Sign

TEST_F(OperationsTest, SignEveryKeyFamilyVerifiesWithOpenSsl) {
  struct Case {
    const char* key;
    offkey::v1::SignatureScheme scheme;
    offkey::v1::TlsVersion version;
    std::string message;
  };
  const Case cases[] = {
      {"rsa", offkey::v1::RSA_PSS_RSAE_SHA256, offkey::v1::TLS_1_3, Tls13ServerInput()},
      {"rsa", offkey::v1::RSA_PSS_RSAE_SHA384, offkey::v1::TLS_1_3, Tls13ServerInput(48)},
      {"rsa", offkey::v1::RSA_PSS_RSAE_SHA512, offkey::v1::TLS_1_3, Tls13ServerInput()},
      {"rsa", offkey::v1::RSA_PKCS1_SHA256, offkey::v1::TLS_1_2, Tls12EcdheInput()},
      {"rsa", offkey::v1::RSA_PKCS1_SHA384, offkey::v1::TLS_1_2, Tls12EcdheInput()},
      {"rsa", offkey::v1::RSA_PKCS1_SHA512, offkey::v1::TLS_1_2, Tls12EcdheInput()},
      {"p256", offkey::v1::ECDSA_SECP256R1_SHA256, offkey::v1::TLS_1_3,
       Tls13ServerInput(48)},
      {"p256", offkey::v1::ECDSA_SECP384R1_SHA384, offkey::v1::TLS_1_2,
       Tls12EcdheInput()},
      {"p384", offkey::v1::ECDSA_SECP384R1_SHA384, offkey::v1::TLS_1_3,
       Tls13ServerInput()},
      {"ed", offkey::v1::ED25519, offkey::v1::TLS_1_3, Tls13ServerInput()},
  };
  const std::map<std::string, const KeyInfo*> keys = {
      {"rsa", &rsa_}, {"p256", &p256_}, {"p384", &p384_}, {"ed", &ed_}};
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.key, " ", tls::SchemeName(c.scheme)));
    OFFKEY_ASSERT_OK_AND_ASSIGN(
        offkey::v1::SignResponse response,
        ops_.Sign(edge_, SignRequest(c.key, c.scheme, c.message, c.version), deadline_));
    const KeyInfo& key = *keys.at(c.key);
    EXPECT_EQ(response.key_id(), key.key_id);
    const hsm::SignAlgorithm algorithm = tls::FindScheme(c.scheme)->algorithm;
    EXPECT_THAT(VerifyWithOpenSsl(key.public_key_spki, algorithm, c.message,
                                  response.signature()),
                IsOk());
    // ... and not over another message.
    EXPECT_THAT(VerifyWithOpenSsl(key.public_key_spki, algorithm, c.message + "x",
                                  response.signature()),
                Not(IsOk()));
  }
}

// An Ed25519 SubjectPublicKeyInfo fits in the 64 free bytes of a ServerKeyExchange input
// (service/tls/README.md): Ed25519 tls-server keys sign TLS 1.3 inputs only.
TEST_F(OperationsTest, SignRefusesEd25519InTls12) {
  EXPECT_THAT(ops_.Sign(edge_,
                        SignRequest("ed", offkey::v1::ED25519, Tls12EcdheInput(),
                                    offkey::v1::TLS_1_2),
                        deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("Ed25519 keys sign only TLS 1.3")));
  EXPECT_EQ(store_->CallCount(M::kSign), 0);
}

// DHE is off until the configuration turns it on, and the switch takes effect on the
// next call.
TEST_F(OperationsTest, SignDheOnlyWhenTheConfigurationAllowsIt) {
  const offkey::v1::SignRequest request = SignRequest(
      "rsa", offkey::v1::RSA_PSS_RSAE_SHA256, Tls12DheInput(), offkey::v1::TLS_1_2);
  EXPECT_THAT(ops_.Sign(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("handshake.allow_rfc7919_dhe")));
  tls::HandshakeShapeOptions options;
  options.allow_rfc7919_dhe = true;
  ops_.SetHandshakeShapeOptions(options);
  OFFKEY_ASSERT_OK_AND_ASSIGN(offkey::v1::SignResponse response,
                              ops_.Sign(edge_, request, deadline_));
  EXPECT_THAT(
      VerifyWithOpenSsl(rsa_.public_key_spki,
                        tls::FindScheme(offkey::v1::RSA_PSS_RSAE_SHA256)->algorithm,
                        request.message(), response.signature()),
      IsOk());
  options.allow_rfc7919_dhe = false;
  ops_.SetHandshakeShapeOptions(options);
  EXPECT_THAT(ops_.Sign(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(store_->CallCount(M::kSign), 1);
}

TEST_F(OperationsTest, SignRefusesSchemesThatDoNotFit) {
  // PKCS#1 v1.5 in TLS 1.3, an EC scheme for an RSA key, the wrong curve in TLS 1.3,
  // rsa_pss_pss_* (offkey never holds RSASSA-PSS keys).
  EXPECT_THAT(
      ops_.Sign(edge_,
                SignRequest("rsa", offkey::v1::RSA_PKCS1_SHA256, Tls13ServerInput()),
                deadline_),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("TLS 1.3")));
  EXPECT_THAT(ops_.Sign(edge_,
                        SignRequest("rsa", offkey::v1::ECDSA_SECP256R1_SHA256,
                                    Tls13ServerInput()),
                        deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ops_.Sign(edge_,
                        SignRequest("p256", offkey::v1::ECDSA_SECP384R1_SHA384,
                                    Tls13ServerInput()),
                        deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      ops_.Sign(edge_,
                SignRequest("rsa", offkey::v1::RSA_PSS_PSS_SHA256, Tls13ServerInput()),
                deadline_),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(store_->CallCount(M::kSign), 0);
}

TEST_F(OperationsTest, SignValidatesTheRequest) {
  auto sign = [&](const offkey::v1::SignRequest& request) {
    return ops_.Sign(edge_, request, deadline_);
  };
  auto request = SignRequest("p256", offkey::v1::ECDSA_SECP256R1_SHA256, "");
  EXPECT_THAT(sign(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("message")));
  request.set_message(std::string(64 * 1024 + 1, 'x'));
  EXPECT_THAT(sign(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("message")));
  request = SignRequest("p256", static_cast<offkey::v1::SignatureScheme>(0x9999),
                        Tls13ServerInput());
  EXPECT_THAT(sign(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("scheme")));
  request = SignRequest("p256", offkey::v1::ECDSA_SECP256R1_SHA256, Tls13ServerInput());
  request.mutable_context()->set_version(static_cast<offkey::v1::TlsVersion>(0x0305));
  EXPECT_THAT(sign(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context.version")));
  request.mutable_context()->set_version(offkey::v1::TLS_1_3);
  request.mutable_context()->set_sni(std::string(256, 'a'));
  EXPECT_THAT(sign(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context.sni")));
  request.mutable_context()->set_sni("");
  request.mutable_context()->set_handshake_id(std::string(65, 'h'));
  EXPECT_THAT(sign(request), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("context.handshake_id")));
  request.mutable_context()->clear_handshake_id();
  request.clear_key();
  EXPECT_THAT(sign(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key")));
  EXPECT_EQ(store_->CallCount(M::kSign), 0);
}

TEST_F(OperationsTest, TlsServerKeysSignOnlyHandshakeShapedMessages) {
  const std::string not_a_handshake = "please sign this certificate for me";
  EXPECT_THAT(
      ops_.Sign(edge_,
                SignRequest("p256", offkey::v1::ECDSA_SECP256R1_SHA256, not_a_handshake),
                deadline_),
      StatusIs(absl::StatusCode::kPermissionDenied));
  // A client CertificateVerify input is not a server's to sign.
  std::string client = Tls13ServerInput();
  client.replace(64, 33, "TLS 1.3, client CertificateVerify");
  EXPECT_THAT(
      ops_.Sign(edge_, SignRequest("p256", offkey::v1::ECDSA_SECP256R1_SHA256, client),
                deadline_),
      StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(store_->CallCount(M::kSign), 0);

  // A GENERAL_SIGNING key signs any message.
  SetMetadata(p256_, offkey::v1::GENERAL_SIGNING, offkey::v1::ENABLED);
  OFFKEY_ASSERT_OK_AND_ASSIGN(
      auto response,
      ops_.Sign(edge_,
                SignRequest("p256", offkey::v1::ECDSA_SECP256R1_SHA256, not_a_handshake),
                deadline_));
  EXPECT_THAT(
      VerifyWithOpenSsl(p256_.public_key_spki,
                        tls::FindScheme(offkey::v1::ECDSA_SECP256R1_SHA256)->algorithm,
                        not_a_handshake, response.signature()),
      IsOk());
}

// ------------------------------------------------------------------ Authorization

TEST_F(OperationsTest, UnknownAndForbiddenKeysGetTheSameDenial) {
  const auto request =
      SignRequest("secret", offkey::v1::ECDSA_SECP256R1_SHA256, Tls13ServerInput());
  // "secret" exists but has no tier=edge label.
  absl::Status forbidden = ops_.Sign(edge_, request, deadline_).status();
  EXPECT_THAT(forbidden, StatusIs(absl::StatusCode::kPermissionDenied));
  // The same, disabled or pending destruction: still the denial, not the key's state.
  SetMetadata(secret_, offkey::v1::TLS_SERVER, offkey::v1::DISABLED, {});
  EXPECT_EQ(ops_.Sign(edge_, request, deadline_).status(), forbidden);
  SetMetadata(secret_, offkey::v1::TLS_SERVER, offkey::v1::PENDING_DESTRUCTION, {});
  EXPECT_EQ(ops_.Sign(edge_, request, deadline_).status(), forbidden);

  // Gone: exactly the same code and message.
  ASSERT_THAT(store_->DestroyKey(secret_.key_id), IsOk());
  ASSERT_THAT(catalog_.Refresh(), IsOk());
  absl::Status unknown = ops_.Sign(edge_, request, deadline_).status();
  EXPECT_EQ(unknown, forbidden);
  EXPECT_EQ(store_->CallCount(M::kSign), 0);

  // The same holds for the premaster operations and GetCertificate.
  offkey::v1::DecryptPremasterRequest decrypt = DecryptRequest(std::string(256, 'x'));
  *decrypt.mutable_key() = ByName("rsa");
  offkey::v1::GetCertificateRequest get;
  *get.mutable_key() = ByName("rsa");
  absl::Status decrypt_forbidden =
      ops_.DecryptPremaster(stranger_, decrypt, deadline_).status();
  absl::Status get_forbidden = ops_.GetCertificate(stranger_, get, deadline_).status();
  EXPECT_THAT(decrypt_forbidden, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(get_forbidden, StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_THAT(store_->DestroyKey(rsa_.key_id), IsOk());
  ASSERT_THAT(catalog_.Refresh(), IsOk());
  EXPECT_EQ(ops_.DecryptPremaster(stranger_, decrypt, deadline_).status(),
            decrypt_forbidden);
  EXPECT_EQ(ops_.GetCertificate(stranger_, get, deadline_).status(), get_forbidden);
}

TEST_F(OperationsTest, UnknownKeyIdAndForbiddenKeyIdGetTheSameDenial) {
  // By key id the reference text is the same hex for both, so the statuses are equal.
  offkey::v1::SignRequest request =
      SignRequest("", offkey::v1::ECDSA_SECP256R1_SHA256, Tls13ServerInput());
  request.mutable_key()->set_key_id(secret_.key_id);
  absl::Status forbidden = ops_.Sign(edge_, request, deadline_).status();
  EXPECT_THAT(forbidden, StatusIs(absl::StatusCode::kPermissionDenied,
                                  HasSubstr("or no such key exists")));
  ASSERT_THAT(store_->DestroyKey(secret_.key_id), IsOk());
  catalog_.Invalidate();
  EXPECT_EQ(ops_.Sign(edge_, request, deadline_).status(), forbidden);
}

TEST_F(OperationsTest, CallersWithoutAGrantAreRefused) {
  const auto request =
      SignRequest("p256", offkey::v1::ECDSA_SECP256R1_SHA256, Tls13ServerInput());
  // No grant for the operation, no grant at all, no identity.
  EXPECT_THAT(ops_.Sign(stranger_, request, deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr(kStranger)));
  EXPECT_THAT(ops_.Sign(Caller{"spiffe://example.org/nobody"}, request, deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(ops_.Sign(Caller{""}, request, deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // A prefix of a granted identity is not that identity.
  EXPECT_THAT(ops_.Sign(Caller{"spiffe://example.org/edge/extra"}, request, deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(store_->CallCount(M::kSign), 0);

  // A new policy takes effect on the next call.
  offkey::v1::PolicyConfig open;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(grants {
             identities: "spiffe://example.org/stranger"
             operations: [ SIGN ]
             keys { all_keys: true }
           })pb",
      &open));
  OFFKEY_ASSERT_OK_AND_ASSIGN(
      config::Policy policy,
      config::Policy::Create(open, google::protobuf::RepeatedPtrField<std::string>()));
  ops_.SetPolicy(std::make_shared<const config::Policy>(std::move(policy)));
  EXPECT_THAT(ops_.Sign(stranger_, request, deadline_), IsOk());
  EXPECT_THAT(ops_.Sign(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

// A caller with no grant for the operation is turned away before any key lookup: its
// answer cannot depend on the store (an outage must not tell it which keys exist) and
// it cannot make the catalog reload.
TEST_F(OperationsTest, CallersWithoutAGrantForTheOperationNeverReachTheStore) {
  const auto known =
      SignRequest("p256", offkey::v1::ECDSA_SECP256R1_SHA256, Tls13ServerInput());
  const auto unknown =
      SignRequest("ghost", offkey::v1::ECDSA_SECP256R1_SHA256, Tls13ServerInput());
  const absl::Status denied_known = ops_.Sign(stranger_, known, deadline_).status();
  EXPECT_THAT(denied_known, StatusIs(absl::StatusCode::kPermissionDenied));

  store_->SetHealthy(false);
  catalog_.Invalidate();
  const int lists = store_->CallCount(M::kListKeys);
  EXPECT_EQ(ops_.Sign(stranger_, known, deadline_).status(), denied_known);
  EXPECT_THAT(ops_.Sign(stranger_, unknown, deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(ops_.Sign(Caller{"spiffe://example.org/nobody"}, unknown, deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(store_->CallCount(M::kListKeys), lists);
}

using hsm::testing::CallerThreadStore;

// For a key the caller may not use, "no such key", "disabled", "pending destruction"
// and "not yours" are one answer in code and message, with the HSM up or down, and
// none of them touches the store in the request path (so none takes longer). A caller
// whose grant would cover the key, asking for one that does not exist, gets that same
// answer (its own identity in it).
TEST_F(OperationsTest, KeysTheCallerMayNotUseGetOneAnswerWithTheHsmUpOrDown) {
  constexpr char kNamed[] = "spiffe://example.org/named";  // SIGN on "mine" only.
  constexpr char kAll[] = "spiffe://example.org/all";      // SIGN on every key.
  offkey::v1::PolicyConfig config;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(grants {
             identities: "spiffe://example.org/named"
             operations: [ SIGN ]
             keys { names: "mine" }
           }
           grants {
             identities: "spiffe://example.org/all"
             operations: [ SIGN ]
             keys { all_keys: true }
           })pb",
      &config));
  OFFKEY_ASSERT_OK_AND_ASSIGN(
      config::Policy policy,
      config::Policy::Create(config, google::protobuf::RepeatedPtrField<std::string>()));
  CallerThreadStore observed(store_.get());
  // No miss limit at all: a miss that reloaded in the request path would show here.
  KeyCatalog catalog(&observed, absl::Hours(1), absl::ZeroDuration());
  Operations ops(&observed, &catalog,
                 std::make_shared<const config::Policy>(std::move(policy)));
  const KeyInfo target = Import("target", KeyAlgorithm::kEcP256, {},
                                hsm::testing::GeneratePkcs8(KeyAlgorithm::kEcP256));
  ASSERT_THAT(catalog.Refresh(), IsOk());
  const auto request =
      SignRequest("target", offkey::v1::ECDSA_SECP256R1_SHA256, Tls13ServerInput());

  const absl::Status denied = ops.Sign(Caller{kNamed}, request, deadline_).status();
  ASSERT_THAT(denied, StatusIs(absl::StatusCode::kPermissionDenied,
                               HasSubstr("or no such key exists")));
  const absl::Status stranger_denied = ops.Sign(stranger_, request, deadline_).status();
  ASSERT_THAT(stranger_denied, StatusIs(absl::StatusCode::kPermissionDenied));
  const absl::Status all_denied = absl::PermissionDeniedError(
      absl::StrReplaceAll(denied.message(), {{kNamed, kAll}}));

  // Each state, asked with the HSM up and then down.
  auto ask = [&](absl::string_view state, bool exists) {
    for (bool healthy : {true, false}) {
      SCOPED_TRACE(absl::StrCat(state, healthy ? ", HSM up" : ", HSM down"));
      store_->SetHealthy(healthy);
      const int calls = observed.calls();
      EXPECT_EQ(ops.Sign(Caller{kNamed}, request, deadline_).status(), denied);
      EXPECT_EQ(ops.Sign(stranger_, request, deadline_).status(), stranger_denied);
      if (!exists) {
        EXPECT_EQ(ops.Sign(Caller{kAll}, request, deadline_).status(), all_denied);
      }
      EXPECT_EQ(observed.calls(), calls);
      store_->SetHealthy(true);
    }
  };
  ask("enabled", true);
  SetMetadata(target, offkey::v1::TLS_SERVER, offkey::v1::DISABLED, {});
  ASSERT_THAT(catalog.Refresh(), IsOk());
  ask("disabled", true);
  SetMetadata(target, offkey::v1::TLS_SERVER, offkey::v1::PENDING_DESTRUCTION, {});
  ASSERT_THAT(catalog.Refresh(), IsOk());
  ask("pending destruction", true);
  ASSERT_THAT(store_->DestroyKey(target.key_id), IsOk());
  ASSERT_THAT(catalog.Refresh(), IsOk());
  ask("missing", false);
  EXPECT_EQ(store_->CallCount(M::kSign), 0);
}

TEST_F(OperationsTest, DisabledAndPendingKeysFailThePrecondition) {
  const auto request =
      SignRequest("p256", offkey::v1::ECDSA_SECP256R1_SHA256, Tls13ServerInput());
  SetMetadata(p256_, offkey::v1::TLS_SERVER, offkey::v1::DISABLED);
  EXPECT_THAT(ops_.Sign(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("disabled")));
  SetMetadata(p256_, offkey::v1::TLS_SERVER, offkey::v1::PENDING_DESTRUCTION);
  EXPECT_THAT(ops_.Sign(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("destruction")));
  SetMetadata(rsa_, offkey::v1::TLS_SERVER, offkey::v1::DISABLED);
  EXPECT_THAT(
      ops_.DecryptPremaster(edge_, DecryptRequest(std::string(256, 'x')), deadline_),
      StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(store_->CallCount(M::kSign), 0);
  EXPECT_EQ(store_->CallCount(M::kRsaDecryptRaw), 0);

  SetMetadata(p256_, offkey::v1::TLS_SERVER, offkey::v1::ENABLED);
  EXPECT_THAT(ops_.Sign(edge_, request, deadline_), IsOk());
}

TEST_F(OperationsTest, StoreErrorsKeepTheirCodes) {
  const auto request =
      SignRequest("p256", offkey::v1::ECDSA_SECP256R1_SHA256, Tls13ServerInput());
  store_->Fail(M::kSign, absl::UnavailableError("token removed"));
  EXPECT_THAT(ops_.Sign(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("token removed")));
  store_->Fail(M::kSign, absl::DeadlineExceededError("no free session"));
  EXPECT_THAT(ops_.Sign(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  store_->ClearAll();

  const std::string ciphertext =
      hsm::testing::RsaEncryptPkcs1(rsa_.public_key_spki, Premaster());
  store_->Fail(M::kRsaDecryptRaw, absl::UnavailableError("token removed"));
  EXPECT_THAT(ops_.DecryptPremaster(edge_, DecryptRequest(ciphertext), deadline_),
              StatusIs(absl::StatusCode::kUnavailable));
  store_->ClearAll();
  store_->Fail(M::kHmacWithStoreSecret, absl::DeadlineExceededError("no free session"));
  EXPECT_THAT(ops_.DecryptPremaster(edge_, DecryptRequest(ciphertext), deadline_),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  store_->ClearAll();

  // The catalog cannot be read: the store's code, not a denial.
  store_->SetHealthy(false);
  catalog_.Invalidate();
  EXPECT_THAT(ops_.Sign(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kUnavailable));
  store_->SetHealthy(true);
  EXPECT_THAT(ops_.Sign(edge_, request, deadline_), IsOk());
}

// ------------------------------------------------------------ DecryptPremaster

TEST_F(OperationsTest, ValidPremasterIsReturned) {
  const std::string premaster = Premaster();
  const std::string ciphertext =
      hsm::testing::RsaEncryptPkcs1(rsa_.public_key_spki, premaster);
  ASSERT_EQ(ciphertext.size(), 256u);
  EXPECT_EQ(Decrypt(ciphertext), premaster);
  // The substitute is computed on every call, even when it is not used.
  EXPECT_EQ(store_->CallCount(M::kHmacWithStoreSecret), 1);
  EXPECT_EQ(store_->CallCount(M::kRsaDecryptRaw), 1);
  // TLS_VERSION_UNSPECIFIED is taken as TLS 1.2.
  auto request = DecryptRequest(ciphertext);
  request.mutable_context()->clear_version();
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto response,
                              ops_.DecryptPremaster(edge_, request, deadline_));
  EXPECT_EQ(response.premaster(), premaster);
}

TEST_F(OperationsTest, BadPaddingOrVersionGivesTheDeterministicSubstitute) {
  const std::string premaster = Premaster();
  const size_t k = 256;
  struct Case {
    const char* what;
    std::string ciphertext;
    uint32_t client_version;
  };
  const std::string good = hsm::testing::RsaEncryptPkcs1(rsa_.public_key_spki, premaster);
  auto raw = [&](const std::string& block) {
    return hsm::testing::RsaEncryptRaw(rsa_.public_key_spki, block);
  };
  const Case cases[] = {
      {"wrong client version", good, 0x0302},
      {"version in premaster differs",
       hsm::testing::RsaEncryptPkcs1(rsa_.public_key_spki, Premaster(0x0301)), 0x0303},
      {"block type 1", raw(Block(k, premaster, 1)), 0x0303},
      {"no separator", raw(Block(k, premaster, 2, '\x01')), 0x0303},
      {"47-byte message", raw(Block(k, premaster.substr(1))), 0x0303},
      {"49-byte message", raw(Block(k, premaster + "x")), 0x0303},
      {"first byte not zero", raw(std::string(1, '\x01') + Block(k, premaster).substr(1)),
       0x0303},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ASSERT_EQ(c.ciphertext.size(), k);
    absl::StatusOr<offkey::v1::DecryptPremasterResponse> first = ops_.DecryptPremaster(
        edge_, DecryptRequest(c.ciphertext, c.client_version), deadline_);
    absl::StatusOr<offkey::v1::DecryptPremasterResponse> second = ops_.DecryptPremaster(
        edge_, DecryptRequest(c.ciphertext, c.client_version), deadline_);
    // Same status as success, same size, the same answer twice.
    ASSERT_THAT(first, IsOk());
    ASSERT_THAT(second, IsOk());
    EXPECT_EQ(first->premaster().size(), 48u);
    EXPECT_EQ(first->premaster(), second->premaster());
    EXPECT_NE(first->premaster(), premaster);
    // The documented substitute: the client version, then an HMAC under the store
    // secret over key id, version and ciphertext.
    EXPECT_EQ(first->premaster(), Substitute(c.ciphertext, c.client_version));
  }
  // Different ciphertexts, different substitutes.
  EXPECT_NE(Decrypt(raw(Block(k, premaster, 1))), Decrypt(raw(Block(k, premaster, 3))));
}

// A substitute looks like a real premaster. Its first two bytes are the
// client_version, as RFC 5246 §7.4.7.1 has a real one start, and the version is bound
// into the MAC, so the other 46 bytes change with it too.
TEST_F(OperationsTest, SubstituteStartsWithTheClientVersionAndDependsOnIt) {
  const std::string bad =
      hsm::testing::RsaEncryptRaw(rsa_.public_key_spki, Block(256, Premaster(), 1));
  std::map<uint32_t, std::string> rest_by_version;
  for (uint32_t version : {0x0303u, 0x0302u, 0x0301u, 0x0300u, 0x0000u, 0xfefdu}) {
    SCOPED_TRACE(absl::StrCat("client_version ", absl::Hex(version)));
    const std::string premaster = Decrypt(bad, version);
    ASSERT_EQ(premaster.size(), 48u);
    EXPECT_EQ(static_cast<uint8_t>(premaster[0]), version >> 8);
    EXPECT_EQ(static_cast<uint8_t>(premaster[1]), version & 0xff);
    rest_by_version[version] = premaster.substr(2);
  }
  // The 46 bytes after the version differ for every version.
  for (const auto& [a, rest_a] : rest_by_version) {
    for (const auto& [b, rest_b] : rest_by_version) {
      if (a != b) {
        EXPECT_NE(rest_a, rest_b) << a << " vs " << b;
      }
    }
  }
  // A well-formed premaster sent with another client_version is refused the same way.
  const std::string premaster = Premaster(0x0303);
  const std::string good = hsm::testing::RsaEncryptPkcs1(rsa_.public_key_spki, premaster);
  const std::string substitute = Decrypt(good, 0x0302);
  EXPECT_EQ(substitute.substr(0, 2), std::string("\x03\x02", 2));
  EXPECT_NE(substitute.substr(2), premaster.substr(2));
}

// A ciphertext shorter than the modulus is the same integer as its
// zero-padded form (OpenSSL reads it so), not an error a local-key server would not give.
TEST_F(OperationsTest, AShortCiphertextIsTheIntegerItEncodes) {
  const std::string premaster = Premaster();
  // About one encryption in 256 starts with a zero byte.
  std::string good;
  for (int i = 0; i < 20000 && (good.empty() || good[0] != '\0'); ++i) {
    good = hsm::testing::RsaEncryptPkcs1(rsa_.public_key_spki, premaster);
  }
  ASSERT_EQ(good[0], '\0');
  EXPECT_EQ(Decrypt(good.substr(1)), premaster);
  EXPECT_EQ(Decrypt(good), premaster);

  // A malformed block: short and padded forms get the same substitute.
  const std::string bad = std::string(3, '\0') + std::string(253, '\x5a');
  const std::string padded_answer = Decrypt(bad);
  ASSERT_EQ(padded_answer.size(), 48u);
  EXPECT_EQ(Decrypt(bad.substr(1)), padded_answer);
  EXPECT_EQ(Decrypt(bad.substr(3)), padded_answer);
  EXPECT_EQ(Decrypt(bad.substr(3), 0x0301).substr(0, 2), std::string("\x03\x01", 2));
  // An empty ciphertext is zero, and one byte a small integer like any other.
  EXPECT_EQ(Decrypt("").size(), 48u);
  EXPECT_EQ(Decrypt(""), Decrypt(std::string(256, '\0')));
  EXPECT_EQ(Decrypt(std::string(1, '\x07')).size(), 48u);
  EXPECT_EQ(Decrypt(std::string(1, '\x07')), Decrypt(std::string(255, '\0') + '\x07'));
  // DeriveMasterSecret shares the path.
  offkey::v1::DeriveMasterSecretRequest derive;
  *derive.mutable_key() = ByName("rsa");
  derive.mutable_context()->set_version(offkey::v1::TLS_1_2);
  derive.set_ciphertext(good.substr(1));
  derive.set_client_version(0x0303);
  derive.set_prf_hash(offkey::v1::PRF_SHA256);
  derive.mutable_randoms()->set_client_random(std::string(32, 'c'));
  derive.mutable_randoms()->set_server_random(std::string(32, 's'));
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto short_master,
                              ops_.DeriveMasterSecret(edge_, derive, deadline_));
  derive.set_ciphertext(good);
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto full_master,
                              ops_.DeriveMasterSecret(edge_, derive, deadline_));
  EXPECT_EQ(short_master.master_secret(), full_master.master_secret());
}

TEST_F(OperationsTest, SubstituteIsTheSameOnEveryReplica) {
  const std::string ciphertext =
      hsm::testing::RsaEncryptRaw(rsa_.public_key_spki, Block(256, Premaster(), 1));
  const std::string here = Decrypt(ciphertext);
  // A second offkeyd in front of the same token.
  std::unique_ptr<FakeKeyStore> replica_store = store_->OpenAnother();
  KeyCatalog replica_catalog(replica_store.get(), absl::Hours(1), absl::Hours(1));
  Operations replica(replica_store.get(), &replica_catalog, MakePolicy());
  OFFKEY_ASSERT_OK_AND_ASSIGN(
      auto there, replica.DecryptPremaster(edge_, DecryptRequest(ciphertext), deadline_));
  EXPECT_EQ(there.premaster(), here);
  // Another token (another store secret) answers differently.
  std::unique_ptr<FakeKeyStore> other_store = FakeKeyStore::Create();
  ASSERT_THAT(
      other_store->ImportKey("rsa", SecretBytes(pkcs8_->at(KeyAlgorithm::kRsa2048))),
      IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto other_rsa,
                              other_store->FindKey(hsm::KeyLookup::Name("rsa")));
  offkey::v1::KeyMetadata metadata;
  metadata.set_format_version(1);
  metadata.set_usage(offkey::v1::TLS_SERVER);
  metadata.set_state(offkey::v1::ENABLED);
  (*metadata.mutable_labels())["tier"] = "edge";
  ASSERT_THAT(other_store->PutMetadata(other_rsa.key_id, metadata.SerializeAsString()),
              IsOk());
  KeyCatalog other_catalog(other_store.get(), absl::Hours(1), absl::Hours(1));
  Operations other(other_store.get(), &other_catalog, MakePolicy());
  OFFKEY_ASSERT_OK_AND_ASSIGN(
      auto elsewhere,
      other.DecryptPremaster(edge_, DecryptRequest(ciphertext), deadline_));
  EXPECT_NE(elsewhere.premaster(), here);
}

TEST_F(OperationsTest, DecryptPremasterErrorsVisibleWithoutDecrypting) {
  auto decrypt = [&](const offkey::v1::DecryptPremasterRequest& request) {
    return ops_.DecryptPremaster(edge_, request, deadline_);
  };
  const std::string good =
      hsm::testing::RsaEncryptPkcs1(rsa_.public_key_spki, Premaster());
  // Longer than the modulus (shorter is a smaller integer: see above).
  EXPECT_THAT(decrypt(DecryptRequest(good + "x")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("256")));
  // Not below the modulus.
  EXPECT_THAT(decrypt(DecryptRequest(std::string(256, '\xff'))),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(decrypt(DecryptRequest(good, 0x10000)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("client_version")));
  auto tls13 = DecryptRequest(good);
  tls13.mutable_context()->set_version(offkey::v1::TLS_1_3);
  EXPECT_THAT(decrypt(tls13),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("TLS 1.3")));
  // Not an RSA key.
  EXPECT_THAT(decrypt(DecryptRequest(good, 0x0303, "p256")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RSA")));
  // Not a tls-server key.
  SetMetadata(rsa_, offkey::v1::GENERAL_SIGNING, offkey::v1::ENABLED);
  EXPECT_THAT(decrypt(DecryptRequest(good)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("tls-server")));
}

// ---------------------------------------------------------- DeriveMasterSecret

TEST_F(OperationsTest, DeriveMasterSecretMatchesTheTls12Prf) {
  const std::string premaster = Premaster();
  const std::string ciphertext =
      hsm::testing::RsaEncryptPkcs1(rsa_.public_key_spki, premaster);
  const std::string client_random(32, '\x0c');
  const std::string server_random(32, '\x05');
  for (auto [prf, hash] :
       {std::pair{offkey::v1::PRF_SHA256, hsm::HashAlgorithm::kSha256},
        std::pair{offkey::v1::PRF_SHA384, hsm::HashAlgorithm::kSha384}}) {
    SCOPED_TRACE(hsm::HashName(hash));
    offkey::v1::DeriveMasterSecretRequest request;
    *request.mutable_key() = ByName("rsa");
    request.mutable_context()->set_version(offkey::v1::TLS_1_2);
    request.set_ciphertext(ciphertext);
    request.set_client_version(0x0303);
    request.set_prf_hash(prf);
    request.mutable_randoms()->set_client_random(client_random);
    request.mutable_randoms()->set_server_random(server_random);
    OFFKEY_ASSERT_OK_AND_ASSIGN(auto response,
                                ops_.DeriveMasterSecret(edge_, request, deadline_));
    OFFKEY_ASSERT_OK_AND_ASSIGN(
        SecretBytes expected,
        crypto::MasterSecret(hash, SecretBytes(premaster), client_random, server_random));
    EXPECT_EQ(response.master_secret(), expected.view());
    EXPECT_EQ(response.master_secret().size(), 48u);

    // Extended master secret over a session hash.
    const std::string session_hash(hsm::HashLength(hash), '\x33');
    request.set_session_hash(session_hash);
    OFFKEY_ASSERT_OK_AND_ASSIGN(response,
                                ops_.DeriveMasterSecret(edge_, request, deadline_));
    OFFKEY_ASSERT_OK_AND_ASSIGN(
        expected,
        crypto::ExtendedMasterSecret(hash, SecretBytes(premaster), session_hash));
    EXPECT_EQ(response.master_secret(), expected.view());

    // A bad premaster derives from the substitute, with no error.
    request.set_client_version(0x0302);
    OFFKEY_ASSERT_OK_AND_ASSIGN(response,
                                ops_.DeriveMasterSecret(edge_, request, deadline_));
    OFFKEY_ASSERT_OK_AND_ASSIGN(
        expected, crypto::ExtendedMasterSecret(
                      hash, SecretBytes(Substitute(ciphertext, 0x0302)), session_hash));
    EXPECT_EQ(response.master_secret(), expected.view());
  }
}

TEST_F(OperationsTest, DeriveMasterSecretValidatesTheSeed) {
  offkey::v1::DeriveMasterSecretRequest request;
  *request.mutable_key() = ByName("rsa");
  request.set_ciphertext(
      hsm::testing::RsaEncryptPkcs1(rsa_.public_key_spki, Premaster()));
  request.set_client_version(0x0303);
  auto derive = [&] { return ops_.DeriveMasterSecret(edge_, request, deadline_); };
  request.set_session_hash(std::string(32, 'h'));
  EXPECT_THAT(derive(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prf_hash")));
  request.set_prf_hash(offkey::v1::PRF_SHA384);
  EXPECT_THAT(derive(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("session_hash")));
  request.set_prf_hash(offkey::v1::PRF_SHA256);
  request.mutable_randoms()->set_client_random(std::string(31, 'c'));
  request.mutable_randoms()->set_server_random(std::string(32, 's'));
  EXPECT_THAT(derive(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("randoms")));
  request.clear_randoms();
  EXPECT_THAT(derive(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("seed")));
  EXPECT_EQ(store_->CallCount(M::kRsaDecryptRaw), 0);
  // Authorization as for DecryptPremaster: the grant is per operation.
  request.set_session_hash(std::string(32, 'h'));
  EXPECT_THAT(ops_.DeriveMasterSecret(stranger_, request, deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

// ------------------------------------------- GetCertificate, ListKeys, VerifyClient

TEST_F(OperationsTest, GetCertificateAndListKeysFollowTheGrants) {
  offkey::v1::GetCertificateRequest get;
  *get.mutable_key() = ByName("p384");
  get.mutable_context()->set_version(offkey::v1::TLS_1_3);
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto cert, ops_.GetCertificate(edge_, get, deadline_));
  EXPECT_EQ(cert.key_id(), p384_.key_id);
  EXPECT_EQ(cert.algorithm(), offkey::v1::EC_P384);
  EXPECT_THAT(cert.certificate_chain(), IsEmpty());
  EXPECT_THAT(cert.schemes(), Not(IsEmpty()));

  OFFKEY_ASSERT_OK_AND_ASSIGN(auto listed, ops_.ListKeys(edge_, {}, deadline_));
  std::vector<std::string> names;
  for (const auto& key : listed.keys()) names.push_back(key.name());
  EXPECT_THAT(names, ElementsAre("ed", "p256", "p384", "rsa"));  // Not "secret".
  OFFKEY_ASSERT_OK_AND_ASSIGN(listed, ops_.ListKeys(stranger_, {}, deadline_));
  EXPECT_THAT(listed.keys(), IsEmpty());
  offkey::v1::ListKeysRequest selector;
  (*selector.mutable_label_selector())["tier"] = "core";
  OFFKEY_ASSERT_OK_AND_ASSIGN(listed, ops_.ListKeys(edge_, selector, deadline_));
  EXPECT_THAT(listed.keys(), IsEmpty());
}

// GetCertificate's schemes are those Sign accepts for the key in context.version (every
// version's when unset), and an unknown version is refused as Sign refuses it.
TEST_F(OperationsTest, GetCertificateSchemesFollowTheTlsVersion) {
  offkey::v1::GetCertificateRequest get;
  *get.mutable_key() = ByName("rsa");
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto any, ops_.GetCertificate(edge_, get, deadline_));
  EXPECT_THAT(any.schemes(), ::testing::Contains(offkey::v1::RSA_PKCS1_SHA256));
  EXPECT_THAT(any.schemes(), ::testing::Contains(offkey::v1::RSA_PSS_RSAE_SHA256));

  for (offkey::v1::TlsVersion version : {offkey::v1::TLS_1_2, offkey::v1::TLS_1_3}) {
    SCOPED_TRACE(version);
    get.mutable_context()->set_version(version);
    OFFKEY_ASSERT_OK_AND_ASSIGN(auto response,
                                ops_.GetCertificate(edge_, get, deadline_));
    EXPECT_THAT(response.schemes(), Not(IsEmpty()));
    for (int scheme : response.schemes()) {
      EXPECT_THAT(tls::CheckScheme(static_cast<offkey::v1::SignatureScheme>(scheme),
                                   KeyAlgorithm::kRsa2048, version),
                  IsOk());
    }
    EXPECT_THAT(response.schemes(), ::testing::Contains(offkey::v1::RSA_PSS_RSAE_SHA256));
  }
  // PKCS#1 v1.5 is TLS 1.2 only.
  EXPECT_THAT(ops_.GetCertificate(edge_, get, deadline_)->schemes(),
              Not(::testing::Contains(offkey::v1::RSA_PKCS1_SHA256)));

  get.mutable_context()->set_version(static_cast<offkey::v1::TlsVersion>(0x0305));
  EXPECT_THAT(ops_.GetCertificate(edge_, get, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context.version")));
}

// The data plane's label selector has the admin plane's limits: at most 64 entries, each
// a possible label (key at most 63 bytes, value at most 255), else INVALID_ARGUMENT
// naming the limit.
TEST_F(OperationsTest, ListKeysLabelSelectorIsBounded) {
  offkey::v1::ListKeysRequest request;
  for (int i = 0; i < 64; ++i) {
    (*request.mutable_label_selector())[absl::StrCat("k", i)] = "v";
  }
  EXPECT_THAT(ops_.ListKeys(edge_, request, deadline_), IsOk());
  (*request.mutable_label_selector())["one-more"] = "v";
  EXPECT_THAT(ops_.ListKeys(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("label_selector"), HasSubstr("64"))));

  request.clear_label_selector();
  (*request.mutable_label_selector())[std::string(64, 'k')] = "v";
  EXPECT_THAT(ops_.ListKeys(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("63")));
  request.clear_label_selector();
  (*request.mutable_label_selector())["tier"] = std::string(256, 'v');
  EXPECT_THAT(ops_.ListKeys(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("255")));
  request.clear_label_selector();
  (*request.mutable_label_selector())[std::string(63, 'k')] = std::string(255, 'v');
  EXPECT_THAT(ops_.ListKeys(edge_, request, deadline_), IsOk());
}

TEST_F(OperationsTest, VerifyClientNeedsItsGrantBeforeTheBundle) {
  offkey::v1::VerifyClientRequest request;
  request.mutable_context()->set_version(offkey::v1::TLS_1_3);
  request.add_certificate_chain("x");
  request.set_trust_bundle("clients");
  request.set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
  request.set_signed_content("content");
  request.set_signature("signature");
  // Without the grant the bundle's existence is not revealed.
  EXPECT_THAT(ops_.VerifyClient(edge_, request, deadline_),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("verify-client")));
  EXPECT_THAT(ops_.VerifyClient(Caller{kVerifier}, request, deadline_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("clients")));
}

}  // namespace
}  // namespace offkey::service
