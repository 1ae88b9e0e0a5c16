#include "hsm/testing/key_store_conformance.h"

#include <openssl/rand.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/testing/secret_ledger.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "hsm/testing/verify.h"
#include "hsm/testing/wycheproof.h"

namespace offkey::hsm::testing {

using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

namespace {

// A StatusOr that holds a value matching `inner`.
MATCHER_P(HoldsValue, inner, "") {
  if (!arg.ok()) {
    *result_listener << "whose status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(inner, *arg, result_listener);
}

constexpr HashAlgorithm kHashes[] = {HashAlgorithm::kSha256, HashAlgorithm::kSha384,
                                     HashAlgorithm::kSha512};
constexpr SignAlgorithm kEcdsaSha256{SignatureKind::kEcdsa, HashAlgorithm::kSha256};

// Every signature algorithm offkey may ask of a key of `algorithm`.
std::vector<SignAlgorithm> AlgorithmsFor(KeyAlgorithm algorithm) {
  std::vector<SignAlgorithm> out;
  switch (FamilyOf(algorithm)) {
    case KeyFamily::kRsa:
      out.push_back({SignatureKind::kRsaPkcs1, HashAlgorithm::kSha1});
      for (HashAlgorithm h : kHashes) out.push_back({SignatureKind::kRsaPkcs1, h});
      for (HashAlgorithm h : kHashes) out.push_back({SignatureKind::kRsaPss, h});
      break;
    case KeyFamily::kEc:
      for (HashAlgorithm h : kHashes) out.push_back({SignatureKind::kEcdsa, h});
      break;
    case KeyFamily::kEd25519:
      out.push_back({SignatureKind::kEdDsa, HashAlgorithm::kNone});
      break;
  }
  return out;
}

std::string Random(size_t n) {
  std::string out(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n));
  return out;
}

// A self-signed P-256 certificate, DER: any certificate will do for storage.
std::string SelfSignedCertificate(int serial) {
  EvpPkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  const std::string cn = absl::StrCat("cert ", serial);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_set_pubkey(cert.get(), pkey.get());
  X509_sign(cert.get(), pkey.get(), EVP_sha256());
  return CertificateDer(cert.get());
}

std::string Identifier(std::string name) {
  for (char& c : name) {
    if (!absl::ascii_isalnum(c)) c = '_';
  }
  return name;
}

}  // namespace

std::string KeyStoreFactoryName(const ::testing::TestParamInfo<KeyStoreFactory>& info) {
  return Identifier(info.param.name);
}

std::string KeyStoreFactoryAndKeyName(
    const ::testing::TestParamInfo<std::tuple<KeyStoreFactory, KeyAlgorithm>>& info) {
  return Identifier(absl::StrCat(std::get<0>(info.param).name, "_",
                                 KeyAlgorithmName(std::get<1>(info.param))));
}

void PrintTo(const KeyStoreFactory& factory, std::ostream* os) { *os << factory.name; }

void KeyStoreConformanceBase::MakeStore(const KeyStoreFactory& factory) {
  factory_ = factory;
  OFFKEY_ASSERT_OK_AND_ASSIGN(store_, factory_.make());
}

void KeyStoreConformanceBase::SignAndVerifyAll(const KeyInfo& key) {
  const std::string message = "TLS 1.3, server CertificateVerify" + Random(64);
  for (SignAlgorithm alg : AlgorithmsFor(key.algorithm)) {
    SCOPED_TRACE(absl::StrCat(KeyAlgorithmName(key.algorithm), " ",
                              SignatureKindName(alg.kind), " ", HashName(alg.hash)));
    OFFKEY_ASSERT_OK_AND_ASSIGN(std::string sig,
                                store_->Sign(key.key_id, alg, message, {}));
    EXPECT_THAT(VerifyWithOpenSsl(key.public_key_spki, alg, message, sig), IsOk());
    // A signature over a different message must not verify: the check has teeth.
    EXPECT_THAT(VerifyWithOpenSsl(key.public_key_spki, alg, message + "x", sig),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

bool KeyStoreConformanceBase::Refused(KeyAlgorithm algorithm) const {
  return std::find(factory_.refused.begin(), factory_.refused.end(), algorithm) !=
         factory_.refused.end();
}

void KeyStoreConformanceBase::ExpectRefused(KeyAlgorithm algorithm) {
  SCOPED_TRACE(absl::StrCat("refused ", KeyAlgorithmName(algorithm)));
  const auto clear = ::testing::AllOf(HasSubstr(KeyAlgorithmName(algorithm)),
                                      HasSubstr(factory_.refusal_mentions));
  EXPECT_THAT(store_->GenerateKey("refused", algorithm),
              StatusIs(absl::StatusCode::kUnimplemented, clear));
  EXPECT_THAT(store_->ImportKey("refused", SecretBytes(GeneratePkcs8(algorithm))),
              StatusIs(absl::StatusCode::kUnimplemented, clear));
  EXPECT_THAT(store_->FindKey(KeyLookup::Name("refused")),
              StatusIs(absl::StatusCode::kNotFound));
}

std::string KeyStoreConformanceBase::NoTicketSets() const {
  if (factory_.ticket_sets_refused.empty()) return "";
  return absl::StrCat(
      "no ticket-key sets on this store (TicketKeySetsRefusedOnlyWhenDeclared): ",
      factory_.ticket_sets_refused);
}

KeyAlgorithm KeyStoreConformanceBase::Everyday() const {
  return Refused(KeyAlgorithm::kEcP256) ? KeyAlgorithm::kRsa2048 : KeyAlgorithm::kEcP256;
}

KeyAlgorithm KeyStoreConformanceBase::Another() const {
  for (KeyAlgorithm algorithm : {KeyAlgorithm::kEd25519, KeyAlgorithm::kEcP384,
                                 KeyAlgorithm::kRsa3072, KeyAlgorithm::kRsa2048}) {
    if (!Refused(algorithm) && algorithm != Everyday()) return algorithm;
  }
  return Everyday();
}

// --- Per key algorithm.

TEST_P(KeyStoreConformanceKeyTest, RefusedOnlyWhenDeclared) {
  if (Refused(algorithm())) {
    ExpectRefused(algorithm());
  } else {
    EXPECT_THAT(store_->GenerateKey("made", algorithm()), IsOk());
  }
}

TEST_P(KeyStoreConformanceKeyTest, GeneratedKeySignsEverySchemeVerifiableByOpenSsl) {
  if (Refused(algorithm())) GTEST_SKIP() << "refused (RefusedOnlyWhenDeclared)";
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo key, store_->GenerateKey("web", algorithm()));
  EXPECT_EQ(key.name, "web");
  EXPECT_EQ(key.algorithm, algorithm());
  EXPECT_EQ(key.key_id, key.ski);
  EXPECT_EQ(key.ski.size(), 20u);
  SignAndVerifyAll(key);
}

TEST_P(KeyStoreConformanceKeyTest, ImportedPkcs8KeySignsAndKeepsItsPublicKey) {
  if (Refused(algorithm())) GTEST_SKIP() << "refused (RefusedOnlyWhenDeclared)";
  SecretBytes pkcs8(GeneratePkcs8(algorithm()));
  if (factory_.refuses_import) {
    EXPECT_THAT(store_->ImportKey("imported", pkcs8),
                StatusIs(absl::StatusCode::kUnimplemented,
                         ::testing::AllOf(HasSubstr(factory_.refusal_mentions),
                                          HasSubstr(KeyAlgorithmName(algorithm())))));
    EXPECT_THAT(store_->FindKey(KeyLookup::Name("imported")),
                StatusIs(absl::StatusCode::kNotFound));
    return;
  }
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo key, store_->ImportKey("imported", pkcs8));
  EXPECT_EQ(key.algorithm, algorithm());
  EXPECT_EQ(key.key_id, key.ski);
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo found,
                              store_->FindKey(KeyLookup::Name("imported")));
  EXPECT_EQ(found.public_key_spki, key.public_key_spki);
  EXPECT_EQ(found.ski, key.ski);
  SignAndVerifyAll(key);
  // The same key twice is refused, under any name.
  EXPECT_THAT(store_->ImportKey("again", pkcs8),
              StatusIs(absl::StatusCode::kAlreadyExists));
}

// --- Store-wide.

// Known answers: PKCS#1 v1.5 and Ed25519 signatures are deterministic.
TEST_P(KeyStoreConformanceTest, WycheproofPkcs1SignaturesMatchByteForByte) {
  if (Refused(KeyAlgorithm::kRsa2048) || Refused(KeyAlgorithm::kRsa3072)) {
    GTEST_SKIP() << "RSA-2048 or RSA-3072 refused (RefusedOnlyWhenDeclared)";
  }
  if (factory_.refuses_import) {
    GTEST_SKIP() << "imports refused (ImportedPkcs8KeySignsAndKeepsItsPublicKey)";
  }
  int checked = 0;
  for (const char* file : {"wycheproof/rsa_pkcs1_2048_sig_gen_test.json",
                           "wycheproof/rsa_pkcs1_3072_sig_gen_test.json"}) {
    OFFKEY_ASSERT_OK_AND_ASSIGN(google::protobuf::Struct json, LoadJson(file));
    int group_index = 0;
    for (const auto& group : json.fields().at("testGroups").list_value().values()) {
      const auto& g = group.struct_value().fields();
      std::string sha = g.at("sha").string_value();
      HashAlgorithm hash = sha == "SHA-256"   ? HashAlgorithm::kSha256
                           : sha == "SHA-384" ? HashAlgorithm::kSha384
                           : sha == "SHA-512" ? HashAlgorithm::kSha512
                                              : HashAlgorithm::kNone;
      if (hash == HashAlgorithm::kNone) continue;
      SecretBytes pkcs8(Unhex(g.at("privateKeyPkcs8").string_value()));
      auto key =
          store_->ImportKey(absl::StrCat("wp-", checked, "-", group_index++), pkcs8);
      if (absl::IsAlreadyExists(key.status())) continue;  // Same key, other hash.
      ASSERT_THAT(key, IsOk());
      for (const auto& test : g.at("tests").list_value().values()) {
        const auto& t = test.struct_value().fields();
        if (t.at("result").string_value() != "valid") continue;
        OFFKEY_ASSERT_OK_AND_ASSIGN(
            std::string sig, store_->Sign(key->key_id, {SignatureKind::kRsaPkcs1, hash},
                                          Unhex(t.at("msg").string_value()), {}));
        EXPECT_EQ(sig, Unhex(t.at("sig").string_value()))
            << file << " tcId " << t.at("tcId").number_value();
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 10);
}

TEST_P(KeyStoreConformanceTest, WycheproofEd25519SignaturesMatchByteForByte) {
  if (Refused(KeyAlgorithm::kEd25519)) {
    GTEST_SKIP() << "Ed25519 refused (RefusedOnlyWhenDeclared)";
  }
  OFFKEY_ASSERT_OK_AND_ASSIGN(google::protobuf::Struct json,
                              LoadJson("wycheproof/ed25519_signing_legacy_v0_test.json"));
  int checked = 0, index = 0;
  for (const auto& group : json.fields().at("testGroups").list_value().values()) {
    const auto& g = group.struct_value().fields();
    // The legacy file gives the raw private key; wrap it in PKCS#8 (RFC 8410).
    std::string raw = Unhex(g.at("key").struct_value().fields().at("sk").string_value());
    ASSERT_EQ(raw.size(), 32u);
    SecretBytes pkcs8(absl::StrCat(Unhex("302e020100300506032b657004220420"), raw));
    OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo key,
                                store_->ImportKey(absl::StrCat("ed-", index++), pkcs8));
    for (const auto& test : g.at("tests").list_value().values()) {
      const auto& t = test.struct_value().fields();
      if (t.at("result").string_value() != "valid") continue;
      OFFKEY_ASSERT_OK_AND_ASSIGN(
          std::string sig,
          store_->Sign(key.key_id, {SignatureKind::kEdDsa, HashAlgorithm::kNone},
                       Unhex(t.at("msg").string_value()), {}));
      EXPECT_EQ(sig, Unhex(t.at("sig").string_value()));
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

TEST_P(KeyStoreConformanceTest, RawDecryptionInvertsOpenSslEncryption) {
  for (KeyAlgorithm alg :
       {KeyAlgorithm::kRsa2048, KeyAlgorithm::kRsa3072, KeyAlgorithm::kRsa4096}) {
    if (Refused(alg)) continue;
    OFFKEY_ASSERT_OK_AND_ASSIGN(
        KeyInfo key, store_->GenerateKey(absl::StrCat("rsa-", KeyBits(alg)), alg));
    const size_t k = KeyBits(alg) / 8;
    for (int i = 0; i < 4; ++i) {
      std::string message = Random(k);
      message[0] = 0;              // Keep it below the modulus.
      if (i == 1) message[1] = 0;  // Leading zero bytes survive.
      ::offkey::testing::RecordSecret("raw RSA plaintext", message);
      std::string ciphertext = RsaEncryptRaw(key.public_key_spki, message);
      OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes plain,
                                  store_->RsaDecryptRaw(key.key_id, ciphertext, {}));
      EXPECT_EQ(plain.view(), message);
    }
  }
}

TEST_P(KeyStoreConformanceTest, RawDecryptionRefusesWrongSizesAndKeys) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo rsa,
                              store_->GenerateKey("rsa", KeyAlgorithm::kRsa2048));
  const bool has_ec = !Refused(KeyAlgorithm::kEcP256);
  EXPECT_THAT(store_->RsaDecryptRaw(rsa.key_id, "", {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->RsaDecryptRaw(rsa.key_id, std::string(255, '\1'), {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->RsaDecryptRaw(rsa.key_id, std::string(257, '\1'), {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Not less than the modulus.
  EXPECT_THAT(store_->RsaDecryptRaw(rsa.key_id, std::string(256, '\xff'), {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("modulus")));
  if (has_ec) {
    OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo ec,
                                store_->GenerateKey("ec", KeyAlgorithm::kEcP256));
    EXPECT_THAT(store_->RsaDecryptRaw(ec.key_id, std::string(256, '\1'), {}),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

TEST_P(KeyStoreConformanceTest, FindsByNameIdAndSkiAndLists) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo a, store_->GenerateKey("alpha", Everyday()));
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo b, store_->GenerateKey("beta", Another()));
  for (const KeyLookup& lookup :
       {KeyLookup::Name("alpha"), KeyLookup::KeyId(a.key_id), KeyLookup::Ski(a.ski)}) {
    OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo found, store_->FindKey(lookup));
    EXPECT_EQ(found.name, "alpha");
    EXPECT_EQ(found.algorithm, Everyday());
    EXPECT_EQ(found.public_key_spki, a.public_key_spki);
  }
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<KeyInfo> all, store_->ListKeys());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "alpha");
  EXPECT_EQ(all[1].name, "beta");
  EXPECT_EQ(all[1].algorithm, Another());
  EXPECT_EQ(all[1].key_id, b.key_id);
}

TEST_P(KeyStoreConformanceTest, UnknownKeysAreNotFound) {
  EXPECT_THAT(store_->FindKey(KeyLookup::Name("nope")),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->FindKey(KeyLookup::KeyId("\x01\x02")),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->FindKey(KeyLookup::Ski(std::string(20, '\x07'))),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->Sign("missing", kEcdsaSha256, "m", {}),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->RsaDecryptRaw("missing", std::string(256, '\1'), {}),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->DestroyKey("missing"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->GetMetadata("missing"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->PutMetadata("missing", "m"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(KeyStoreConformanceTest, RefusesBadNamesDuplicatesAndMismatchedAlgorithms) {
  EXPECT_THAT(store_->GenerateKey("", Everyday()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->GenerateKey("a/b", Everyday()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->GenerateKey(std::string(65, 'a'), Everyday()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->GenerateKey("unknown", KeyAlgorithm::kUnknown),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->FindKey(KeyLookup::Name("a b")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo key, store_->GenerateKey("dup", Everyday()));
  EXPECT_THAT(store_->GenerateKey("dup", Another()),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(store_->ImportKey("dup", SecretBytes(GeneratePkcs8(Everyday()))),
              StatusIs(absl::StatusCode::kAlreadyExists));
  // Schemes of another family, and EdDSA with a hash, ECDSA and PSS without one.
  for (SignAlgorithm alg :
       {SignAlgorithm{SignatureKind::kRsaPss, HashAlgorithm::kNone},
        SignAlgorithm{SignatureKind::kEdDsa, HashAlgorithm::kSha256},
        SignAlgorithm{SignatureKind::kEcdsa, HashAlgorithm::kNone},
        FamilyOf(Everyday()) == KeyFamily::kRsa
            ? kEcdsaSha256
            : SignAlgorithm{SignatureKind::kRsaPss, HashAlgorithm::kSha256},
        SignAlgorithm{SignatureKind::kEdDsa, HashAlgorithm::kNone}}) {
    EXPECT_THAT(store_->Sign(key.key_id, alg, "m", {}),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << SignatureKindName(alg.kind) << " " << HashName(alg.hash);
  }
  EXPECT_THAT(store_->ImportKey("junk", SecretBytes(absl::string_view("not der"))),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Nothing refused was stored.
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<KeyInfo> all, store_->ListKeys());
  EXPECT_EQ(all.size(), 1u);
}

TEST_P(KeyStoreConformanceTest,
       CertificateChainAndMetadataLiveBesideTheKeyUntilDestroyed) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo key, store_->GenerateKey("web", Everyday()));
  EXPECT_THAT(store_->GetCertificateChain(key.key_id), HoldsValue(IsEmpty()));
  std::vector<std::string> chain;
  for (int i = 0; i < 3; ++i) chain.push_back(SelfSignedCertificate(i + 1));
  ASSERT_THAT(store_->PutCertificateChain(key.key_id, chain), IsOk());
  EXPECT_THAT(store_->GetCertificateChain(key.key_id),
              HoldsValue(chain));  // Order kept, leaf first.
  // Replacing keeps only the new chain.
  const std::vector<std::string> shorter = {chain[1]};
  ASSERT_THAT(store_->PutCertificateChain(key.key_id, shorter), IsOk());
  EXPECT_THAT(store_->GetCertificateChain(key.key_id), HoldsValue(shorter));
  EXPECT_THAT(store_->PutCertificateChain(key.key_id, {std::string("junk")}),
              StatusIs(absl::StatusCode::kInvalidArgument));

  EXPECT_THAT(store_->GetMetadata(key.key_id), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(store_->PutMetadata(key.key_id, "v1"), IsOk());
  const std::string v2("v2\0bin", 6);
  ASSERT_THAT(store_->PutMetadata(key.key_id, v2), IsOk());
  EXPECT_THAT(store_->GetMetadata(key.key_id), HoldsValue(v2));
  EXPECT_THAT(store_->PutMetadata(key.key_id, std::string(64 * 1024 + 1, 'm')),
              StatusIs(absl::StatusCode::kInvalidArgument));

  // A second store on the same backing sees it all.
  std::unique_ptr<KeyStore> other;
  if (factory_.open_another) {
    OFFKEY_ASSERT_OK_AND_ASSIGN(other, factory_.open_another(*store_));
    EXPECT_THAT(other->GetMetadata(key.key_id), HoldsValue(v2));
    EXPECT_THAT(other->GetCertificateChain(key.key_id), HoldsValue(shorter));
  }

  ASSERT_THAT(store_->DestroyKey(key.key_id), IsOk());
  EXPECT_THAT(store_->FindKey(KeyLookup::Name("web")),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->GetMetadata(key.key_id), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->GetCertificateChain(key.key_id), HoldsValue(IsEmpty()));
  if (other != nullptr) {
    EXPECT_THAT(other->Sign(key.key_id, kEcdsaSha256, "m", {}),
                StatusIs(absl::StatusCode::kNotFound));
  }
}

TEST_P(KeyStoreConformanceTest, StoreSecretHmacIsDeterministic) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes a,
                              store_->HmacWithStoreSecret("key id|ciphertext", {}));
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes b,
                              store_->HmacWithStoreSecret("key id|ciphertext", {}));
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes c,
                              store_->HmacWithStoreSecret("key id|other", {}));
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a.view(), b.view());
  EXPECT_NE(a.view(), c.view());
  // A store on another backing has another secret.
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<KeyStore> elsewhere, factory_.make());
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes d,
                              elsewhere->HmacWithStoreSecret("key id|ciphertext", {}));
  EXPECT_NE(a.view(), d.view());
}

TEST_P(KeyStoreConformanceTest, StoreSecretIsSharedByStoresOnOneBacking) {
  if (!factory_.open_another) GTEST_SKIP() << "this store cannot open another view";
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<KeyStore> other,
                              factory_.open_another(*store_));
  // The second store asks first: whichever makes the secret, both use it.
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes b,
                              other->HmacWithStoreSecret("key id|ciphertext", {}));
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes a,
                              store_->HmacWithStoreSecret("key id|ciphertext", {}));
  EXPECT_EQ(a.view(), b.view());
}

// Another store (another offkeyd, offkeyctl) destroys a key this store has used and
// makes a new one; a module may give the new key the old one's handle (tpm2-pkcs11
// does). Asking for the old key must then be "not found", never a signature by the new
// key.
TEST_P(KeyStoreConformanceTest, KeyDestroyedElsewhereIsNotFoundEvenIfItsHandleIsReused) {
  if (!factory_.open_another) GTEST_SKIP() << "this store cannot open another view";
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<KeyStore> other,
                              factory_.open_another(*store_));
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo old_key, store_->GenerateKey("old", Everyday()));
  const SignAlgorithm alg = AlgorithmsFor(old_key.algorithm).back();
  ASSERT_THAT(store_->Sign(old_key.key_id, alg, "m", {}), IsOk());  // Cached now.
  ASSERT_THAT(other->DestroyKey(old_key.key_id), IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo new_key, other->GenerateKey("new", Everyday()));
  ASSERT_NE(new_key.key_id, old_key.key_id);
  EXPECT_THAT(store_->Sign(old_key.key_id, alg, "m", {}),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->Sign(new_key.key_id, alg, "m", {}), IsOk());
}

TEST_P(KeyStoreConformanceTest, ManyThreadsSigningWithSeveralKeysAllVerify) {
  std::vector<KeyInfo> keys;
  for (KeyAlgorithm alg : {KeyAlgorithm::kRsa2048, KeyAlgorithm::kEcP256,
                           KeyAlgorithm::kEcP384, KeyAlgorithm::kEd25519}) {
    if (Refused(alg)) continue;
    OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo key,
                                store_->GenerateKey(absl::StrCat("k", keys.size()), alg));
    keys.push_back(std::move(key));
  }
  constexpr int kThreads = 12;  // More than a small session pool: callers queue.
  constexpr int kPerThread = 40;
  std::atomic<int> failures{0}, verified{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const KeyInfo& key = keys[(t + i) % keys.size()];
        SignAlgorithm alg = AlgorithmsFor(key.algorithm).back();
        std::string message = absl::StrCat("thread ", t, " message ", i);
        auto sig = store_->Sign(key.key_id, alg, message, {});
        if (!sig.ok() ||
            !VerifyWithOpenSsl(key.public_key_spki, alg, message, *sig).ok()) {
          ++failures;
        } else {
          ++verified;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(verified.load(), kThreads * kPerThread);
  EXPECT_EQ(store_->Sessions().in_use, 0);
}

// Keys are created and destroyed while other threads sign, list and check health, as an
// operator's offkeyctl does against a serving offkeyd. Every call must succeed.
TEST_P(KeyStoreConformanceTest, KeysChangeWhileOtherThreadsUseTheStore) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo signer, store_->GenerateKey("signer", Everyday()));
  const SignAlgorithm sign_alg = AlgorithmsFor(signer.algorithm).back();
  std::atomic<bool> done{false};
  std::atomic<int> reader_failures{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      while (!done.load()) {
        absl::Status status;
        switch (t) {
          case 0:
            status = store_->Sign(signer.key_id, sign_alg, "m", {}).status();
            break;
          case 1:
            status = store_->ListKeys().status();
            break;
          default:
            status = store_->CheckHealth();
        }
        if (!status.ok()) {
          ++reader_failures;
          ADD_FAILURE() << status;
        }
        ++reads;
      }
    });
  }
  for (int i = 0; i < 40; ++i) {
    auto key = store_->GenerateKey(absl::StrCat("k", i), Everyday());
    EXPECT_THAT(key, IsOk()) << "key " << i;
    if (!key.ok()) break;
    EXPECT_THAT(store_->PutMetadata(key->key_id, "metadata"), IsOk());
    EXPECT_THAT(store_->DestroyKey(key->key_id), IsOk());
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(reader_failures.load(), 0);
  EXPECT_GT(reads.load(), 0);
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<KeyInfo> keys, store_->ListKeys());
  EXPECT_EQ(keys.size(), 1u);
}

// --- Ticket-key sets.

TEST_P(KeyStoreConformanceTest, TicketKeySetsRefusedOnlyWhenDeclared) {
  auto made = store_->CreateTicketKeySet("tickets", absl::Hours(1));
  if (factory_.ticket_sets_refused.empty()) {
    EXPECT_THAT(made, IsOk());
    return;
  }
  EXPECT_THAT(made, StatusIs(absl::StatusCode::kUnimplemented,
                             HasSubstr(factory_.refusal_mentions)));
  EXPECT_THAT(store_->FindTicketKeySet("tickets"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->ListTicketKeySets(), HoldsValue(IsEmpty()));
}

TEST_P(KeyStoreConformanceTest, TicketKeySetsAreCreatedListedFoundAndDestroyed) {
  if (!NoTicketSets().empty()) GTEST_SKIP() << NoTicketSets();
  const absl::Time before = absl::Now();
  OFFKEY_ASSERT_OK_AND_ASSIGN(TicketKeySetInfo beta,
                              store_->CreateTicketKeySet("beta", absl::Seconds(10)));
  OFFKEY_ASSERT_OK_AND_ASSIGN(TicketKeySetInfo alpha,
                              store_->CreateTicketKeySet("alpha", absl::Hours(1)));
  const absl::Time after = absl::Now();
  EXPECT_EQ(alpha.name, "alpha");
  EXPECT_EQ(alpha.rotation_period, absl::Hours(1));
  EXPECT_EQ(beta.rotation_period, absl::Seconds(10));
  // Recorded in whole seconds.
  EXPECT_GE(alpha.create_time, absl::FromUnixSeconds(absl::ToUnixSeconds(before)));
  EXPECT_LE(alpha.create_time, after);
  EXPECT_EQ(alpha.create_time,
            absl::FromUnixSeconds(absl::ToUnixSeconds(alpha.create_time)));

  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<TicketKeySetInfo> sets,
                              store_->ListTicketKeySets());
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[0].name, "alpha");  // Ordered by name.
  EXPECT_EQ(sets[0].rotation_period, absl::Hours(1));
  EXPECT_EQ(sets[0].create_time, alpha.create_time);
  EXPECT_EQ(sets[1].name, "beta");
  EXPECT_EQ(sets[1].rotation_period, absl::Seconds(10));
  OFFKEY_ASSERT_OK_AND_ASSIGN(TicketKeySetInfo found, store_->FindTicketKeySet("beta"));
  EXPECT_EQ(found.name, "beta");
  EXPECT_EQ(found.rotation_period, absl::Seconds(10));
  EXPECT_EQ(found.create_time, beta.create_time);

  ASSERT_THAT(store_->DestroyTicketKeySet("alpha"), IsOk());
  EXPECT_THAT(store_->FindTicketKeySet("alpha"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->DeriveTicketEpochSecret("alpha", 1, {}),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->DestroyTicketKeySet("alpha"),
              StatusIs(absl::StatusCode::kNotFound));
  OFFKEY_ASSERT_OK_AND_ASSIGN(sets, store_->ListTicketKeySets());
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(sets[0].name, "beta");
  EXPECT_THAT(store_->FindTicketKeySet("beta"), IsOk());
}

TEST_P(KeyStoreConformanceTest, TicketKeySetsRefuseTakenAndBadNamesPeriodsAndEpochs) {
  if (!NoTicketSets().empty()) GTEST_SKIP() << NoTicketSets();
  ASSERT_THAT(store_->CreateTicketKeySet("web", absl::Hours(1)), IsOk());
  EXPECT_THAT(store_->CreateTicketKeySet("web", absl::Hours(2)),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("web")));
  for (const std::string& bad :
       {std::string(), std::string("a/b"), std::string("a b"), std::string("-web"),
        std::string(".web"), std::string(65, 't'), std::string("nul\0", 4)}) {
    SCOPED_TRACE(absl::CHexEscape(bad));
    EXPECT_THAT(store_->CreateTicketKeySet(bad, absl::Hours(1)),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(store_->FindTicketKeySet(bad),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(store_->DestroyTicketKeySet(bad),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(store_->DeriveTicketEpochSecret(bad, 1, {}),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  for (absl::Duration bad :
       {absl::ZeroDuration(), absl::Seconds(-60), absl::Milliseconds(10500)}) {
    EXPECT_THAT(store_->CreateTicketKeySet("other", bad),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  EXPECT_THAT(store_->DeriveTicketEpochSecret("web", -1, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->FindTicketKeySet("missing"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->DestroyTicketKeySet("missing"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->DeriveTicketEpochSecret("missing", 1, {}),
              StatusIs(absl::StatusCode::kNotFound));
  // Sets and keys have separate names and do not show up in each other's lists.
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo key, store_->GenerateKey("web", Everyday()));
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<KeyInfo> keys, store_->ListKeys());
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].key_id, key.key_id);
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<TicketKeySetInfo> sets,
                              store_->ListTicketKeySets());
  ASSERT_EQ(sets.size(), 1u);  // Nothing refused was made.
  EXPECT_EQ(sets[0].name, "web");
  ASSERT_THAT(store_->DestroyKey(key.key_id), IsOk());
  EXPECT_THAT(store_->FindTicketKeySet("web"), IsOk());
}

TEST_P(KeyStoreConformanceTest, TicketEpochSecretsAreDeterministicPerSetAndEpoch) {
  if (!NoTicketSets().empty()) GTEST_SKIP() << NoTicketSets();
  ASSERT_THAT(store_->CreateTicketKeySet("web", absl::Hours(1)), IsOk());
  ASSERT_THAT(store_->CreateTicketKeySet("api", absl::Hours(1)), IsOk());
  auto derive = [&](absl::string_view name, int64_t epoch) -> std::string {
    auto secret = store_->DeriveTicketEpochSecret(name, epoch, {});
    EXPECT_THAT(secret, IsOk()) << name << " epoch " << epoch;
    if (!secret.ok()) return "";
    EXPECT_EQ(secret->size(), 32u);
    std::string bytes(secret->view());
    ::offkey::testing::RecordSecret("ticket epoch secret", bytes);
    return bytes;
  };
  const int64_t epoch = 493'000;  // Hours since 1970, about now.
  const std::string web = derive("web", epoch);
  ASSERT_EQ(web.size(), 32u);
  EXPECT_EQ(derive("web", epoch), web);
  EXPECT_NE(derive("web", epoch + 1), web);
  EXPECT_NE(derive("web", epoch - 1), web);
  EXPECT_NE(derive("web", 0), derive("web", 1));
  EXPECT_NE(derive("api", epoch), web);
  EXPECT_NE(web, std::string(32, '\0'));
  // A set made again under the same name has a new root.
  ASSERT_THAT(store_->DestroyTicketKeySet("web"), IsOk());
  ASSERT_THAT(store_->CreateTicketKeySet("web", absl::Hours(1)), IsOk());
  const std::string again = derive("web", epoch);
  EXPECT_EQ(again.size(), 32u);
  EXPECT_NE(again, web);
  // A store on another backing derives other secrets for the same name.
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<KeyStore> elsewhere, factory_.make());
  ASSERT_THAT(elsewhere->CreateTicketKeySet("web", absl::Hours(1)), IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes other,
                              elsewhere->DeriveTicketEpochSecret("web", epoch, {}));
  EXPECT_NE(other.view(), again);
}

TEST_P(KeyStoreConformanceTest, TicketKeySetsAreSharedByStoresOnOneBacking) {
  if (!NoTicketSets().empty()) GTEST_SKIP() << NoTicketSets();
  if (!factory_.open_another) GTEST_SKIP() << "this store cannot open another view";
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<KeyStore> other,
                              factory_.open_another(*store_));
  const int64_t epoch = 7;
  OFFKEY_ASSERT_OK_AND_ASSIGN(TicketKeySetInfo made,
                              other->CreateTicketKeySet("shared", absl::Seconds(30)));
  OFFKEY_ASSERT_OK_AND_ASSIGN(TicketKeySetInfo seen, store_->FindTicketKeySet("shared"));
  EXPECT_EQ(seen.rotation_period, absl::Seconds(30));
  EXPECT_EQ(seen.create_time, made.create_time);
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<TicketKeySetInfo> sets,
                              store_->ListTicketKeySets());
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(sets[0].name, "shared");
  EXPECT_THAT(store_->CreateTicketKeySet("shared", absl::Seconds(30)),
              StatusIs(absl::StatusCode::kAlreadyExists));
  // This store asks first and caches what it found; both derive alike.
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes a,
                              store_->DeriveTicketEpochSecret("shared", epoch, {}));
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes b,
                              other->DeriveTicketEpochSecret("shared", epoch, {}));
  EXPECT_EQ(a.view(), b.view());
  // Destroyed and made again by the other store: this one follows, never using the
  // root it had cached.
  ASSERT_THAT(other->DestroyTicketKeySet("shared"), IsOk());
  EXPECT_THAT(store_->DeriveTicketEpochSecret("shared", epoch, {}),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(other->CreateTicketKeySet("shared", absl::Seconds(30)), IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes c,
                              other->DeriveTicketEpochSecret("shared", epoch, {}));
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes d,
                              store_->DeriveTicketEpochSecret("shared", epoch, {}));
  EXPECT_NE(c.view(), a.view());
  EXPECT_EQ(d.view(), c.view());
}

// Derivations from many threads at once (as offkeyd's handlers do) all agree.
TEST_P(KeyStoreConformanceTest, TicketEpochSecretsAgreeAcrossThreads) {
  if (!NoTicketSets().empty()) GTEST_SKIP() << NoTicketSets();
  ASSERT_THAT(store_->CreateTicketKeySet("busy", absl::Seconds(10)), IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes expected,
                              store_->DeriveTicketEpochSecret("busy", 42, {}));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto secret = store_->DeriveTicketEpochSecret("busy", 42, {});
        if (!secret.ok() || secret->view() != expected.view()) ++mismatches;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_P(KeyStoreConformanceTest, HealthyWhenFresh) {
  EXPECT_THAT(store_->CheckHealth(), IsOk());
}

}  // namespace offkey::hsm::testing
