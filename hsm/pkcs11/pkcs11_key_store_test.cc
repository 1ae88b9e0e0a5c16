// Conformance of Pkcs11KeyStore against a real SoftHSM2 token: every key type and every
// scheme it supports, checked with OpenSSL; error statuses; concurrency; recovery.
#include "hsm/pkcs11/pkcs11_key_store.h"

#include <openssl/rand.h>
#include <openssl/x509.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/testing/secret_ledger.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/ck_rv.h"
#include "hsm/pkcs11/module.h"
#include "hsm/pkcs11/object_io.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "hsm/testing/verify.h"
#include "hsm/testing/wycheproof.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::hsm::pkcs11::testing::SoftHsmToken;
using ::offkey::hsm::testing::GeneratePkcs8;
using ::offkey::hsm::testing::LoadJson;
using ::offkey::hsm::testing::RsaEncryptRaw;
using ::offkey::hsm::testing::Unhex;
using ::offkey::hsm::testing::VerifyWithOpenSsl;

constexpr HashAlgorithm kHashes[] = {HashAlgorithm::kSha256, HashAlgorithm::kSha384,
                                     HashAlgorithm::kSha512};

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

class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto token = SoftHsmToken::Create();
    ASSERT_TRUE(token.ok()) << token.status();
    token_ = *token;
    auto store = Pkcs11KeyStore::Create(token_.Options());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  void SignAndVerifyAll(const KeyInfo& key) {
    const std::string message = "TLS 1.3, server CertificateVerify" + Random(64);
    for (SignAlgorithm alg : AlgorithmsFor(key.algorithm)) {
      SCOPED_TRACE(absl::StrCat(KeyAlgorithmName(key.algorithm), " ",
                                SignatureKindName(alg.kind), " ", HashName(alg.hash)));
      auto sig = store_->Sign(key.key_id, alg, message, {});
      ASSERT_TRUE(sig.ok()) << sig.status();
      EXPECT_TRUE(VerifyWithOpenSsl(key.public_key_spki, alg, message, *sig).ok());
      // A signature over a different message must not verify: the check has teeth.
      EXPECT_FALSE(VerifyWithOpenSsl(key.public_key_spki, alg, message + "x", *sig).ok());
    }
  }

  SoftHsmToken token_;
  std::unique_ptr<Pkcs11KeyStore> store_;
};

class GeneratedKeyTest : public KeyStoreTest,
                         public ::testing::WithParamInterface<KeyAlgorithm> {};

TEST_P(GeneratedKeyTest, SignsEverySchemeVerifiableByOpenSsl) {
  auto key = store_->GenerateKey("web", GetParam());
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->algorithm, GetParam());
  EXPECT_EQ(key->key_id, key->ski);
  EXPECT_EQ(key->ski.size(), 20u);
  SignAndVerifyAll(*key);
}

TEST_P(GeneratedKeyTest, PrivateKeyIsSensitiveAndNeverExtractable) {
  auto key = store_->GenerateKey("web", GetParam());
  ASSERT_TRUE(key.ok()) << key.status();
  ASSERT_TRUE(
      store_->token()
          .Run("check attributes", absl::InfiniteFuture(),
               [&](CK_SESSION_HANDLE session, int) -> absl::Status {
                 const CK_FUNCTION_LIST* fn = store_->token().fn();
                 Template find;
                 find.Ulong(CKA_CLASS, CKO_PRIVATE_KEY).Bytes(CKA_ID, key->key_id);
                 std::vector<CK_OBJECT_HANDLE> found;
                 EXPECT_EQ(FindObjects(fn, session, find, &found), CKR_OK);
                 EXPECT_EQ(found.size(), 1u);
                 if (found.size() != 1) return absl::OkStatus();
                 CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, token = CK_FALSE;
                 CK_ATTRIBUTE attrs[] = {
                     {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
                     {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
                     {CKA_TOKEN, &token, sizeof(token)}};
                 EXPECT_EQ(fn->C_GetAttributeValue(session, found[0], attrs, 3), CKR_OK);
                 EXPECT_EQ(sensitive, CK_TRUE);
                 EXPECT_EQ(extractable, CK_FALSE);
                 EXPECT_EQ(token, CK_TRUE);
                 std::string value;
                 EXPECT_EQ(GetBytes(fn, session, found[0],
                                    FamilyOf(key->algorithm) == KeyFamily::kRsa
                                        ? CKA_PRIVATE_EXPONENT
                                        : CKA_VALUE,
                                    &value),
                           CKR_ATTRIBUTE_SENSITIVE);
                 return absl::OkStatus();
               })
          .ok());
}

TEST_P(GeneratedKeyTest, ImportedPkcs8KeySignsAndKeepsItsPublicKey) {
  SecretBytes pkcs8(GeneratePkcs8(GetParam()));
  auto key = store_->ImportKey("imported", pkcs8);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->algorithm, GetParam());
  auto found = store_->FindKey(KeyLookup::Name("imported"));
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->public_key_spki, key->public_key_spki);
  EXPECT_EQ(found->ski, key->ski);
  SignAndVerifyAll(*key);
  // The same key twice is refused, under any name.
  EXPECT_EQ(store_->ImportKey("again", pkcs8).status().code(),
            absl::StatusCode::kAlreadyExists);
}

INSTANTIATE_TEST_SUITE_P(AllKeyTypes, GeneratedKeyTest,
                         ::testing::Values(KeyAlgorithm::kRsa2048, KeyAlgorithm::kRsa3072,
                                           KeyAlgorithm::kRsa4096, KeyAlgorithm::kEcP256,
                                           KeyAlgorithm::kEcP384, KeyAlgorithm::kEcP521,
                                           KeyAlgorithm::kEd25519),
                         [](const ::testing::TestParamInfo<KeyAlgorithm>& info) {
                           std::string name(KeyAlgorithmName(info.param));
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

// Known answers: PKCS#1 v1.5 and Ed25519 signatures are deterministic.
TEST_F(KeyStoreTest, WycheproofPkcs1SignaturesMatchByteForByte) {
  int checked = 0;
  for (const char* file : {"wycheproof/rsa_pkcs1_2048_sig_gen_test.json",
                           "wycheproof/rsa_pkcs1_3072_sig_gen_test.json"}) {
    auto json = LoadJson(file);
    ASSERT_TRUE(json.ok()) << json.status();
    int group_index = 0;
    for (const auto& group : json->fields().at("testGroups").list_value().values()) {
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
      ASSERT_TRUE(key.ok()) << key.status();
      for (const auto& test : g.at("tests").list_value().values()) {
        const auto& t = test.struct_value().fields();
        if (t.at("result").string_value() != "valid") continue;
        auto sig = store_->Sign(key->key_id, {SignatureKind::kRsaPkcs1, hash},
                                Unhex(t.at("msg").string_value()), {});
        ASSERT_TRUE(sig.ok()) << sig.status();
        EXPECT_EQ(*sig, Unhex(t.at("sig").string_value()))
            << file << " tcId " << t.at("tcId").number_value();
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 10);
}

TEST_F(KeyStoreTest, WycheproofEd25519SignaturesMatchByteForByte) {
  auto json = LoadJson("wycheproof/ed25519_signing_legacy_v0_test.json");
  ASSERT_TRUE(json.ok()) << json.status();
  int checked = 0, index = 0;
  for (const auto& group : json->fields().at("testGroups").list_value().values()) {
    const auto& g = group.struct_value().fields();
    // The legacy file gives the raw private key; wrap it in PKCS#8 (RFC 8410).
    std::string raw = Unhex(g.at("key").struct_value().fields().at("sk").string_value());
    ASSERT_EQ(raw.size(), 32u);
    SecretBytes pkcs8(absl::StrCat(Unhex("302e020100300506032b657004220420"), raw));
    auto key = store_->ImportKey(absl::StrCat("ed-", index++), pkcs8);
    ASSERT_TRUE(key.ok()) << key.status();
    for (const auto& test : g.at("tests").list_value().values()) {
      const auto& t = test.struct_value().fields();
      if (t.at("result").string_value() != "valid") continue;
      auto sig = store_->Sign(key->key_id, {SignatureKind::kEdDsa, HashAlgorithm::kNone},
                              Unhex(t.at("msg").string_value()), {});
      ASSERT_TRUE(sig.ok()) << sig.status();
      EXPECT_EQ(*sig, Unhex(t.at("sig").string_value()));
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

TEST_F(KeyStoreTest, RawDecryptionInvertsOpenSslEncryption) {
  for (KeyAlgorithm alg :
       {KeyAlgorithm::kRsa2048, KeyAlgorithm::kRsa3072, KeyAlgorithm::kRsa4096}) {
    auto key = store_->GenerateKey(absl::StrCat("rsa-", KeyBits(alg)), alg);
    ASSERT_TRUE(key.ok()) << key.status();
    const size_t k = KeyBits(alg) / 8;
    for (int i = 0; i < 4; ++i) {
      std::string message = Random(k);
      message[0] = 0;              // Keep it below the modulus.
      if (i == 1) message[1] = 0;  // Leading zero bytes survive.
      ::offkey::testing::RecordSecret("raw RSA plaintext", message);
      std::string ciphertext = RsaEncryptRaw(key->public_key_spki, message);
      auto plain = store_->RsaDecryptRaw(key->key_id, ciphertext, {});
      ASSERT_TRUE(plain.ok()) << plain.status();
      EXPECT_EQ(plain->view(), message);
    }
  }
}

TEST_F(KeyStoreTest, RawDecryptionRefusesWrongSizesAndKeys) {
  auto rsa = store_->GenerateKey("rsa", KeyAlgorithm::kRsa2048);
  auto ec = store_->GenerateKey("ec", KeyAlgorithm::kEcP256);
  ASSERT_TRUE(rsa.ok() && ec.ok());
  EXPECT_EQ(store_->RsaDecryptRaw(rsa->key_id, "", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store_->RsaDecryptRaw(rsa->key_id, std::string(255, '\1'), {}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store_->RsaDecryptRaw(rsa->key_id, std::string(257, '\1'), {}).status().code(),
      absl::StatusCode::kInvalidArgument);
  // Not less than the modulus.
  auto too_big = store_->RsaDecryptRaw(rsa->key_id, std::string(256, '\xff'), {});
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_big.status().message().find("modulus"), std::string::npos);
  EXPECT_EQ(store_->RsaDecryptRaw(ec->key_id, std::string(256, '\1'), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KeyStoreTest, FindsByNameIdAndSkiAndLists) {
  auto a = store_->GenerateKey("alpha", KeyAlgorithm::kEcP256);
  auto b = store_->GenerateKey("beta", KeyAlgorithm::kEd25519);
  ASSERT_TRUE(a.ok() && b.ok());
  for (const KeyLookup& lookup :
       {KeyLookup::Name("alpha"), KeyLookup::KeyId(a->key_id), KeyLookup::Ski(a->ski)}) {
    auto found = store_->FindKey(lookup);
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(found->name, "alpha");
    EXPECT_EQ(found->public_key_spki, a->public_key_spki);
  }
  auto all = store_->ListKeys();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "alpha");
  EXPECT_EQ((*all)[1].name, "beta");
  EXPECT_EQ((*all)[1].algorithm, KeyAlgorithm::kEd25519);
}

TEST_F(KeyStoreTest, UnknownKeysAreNotFound) {
  EXPECT_EQ(store_->FindKey(KeyLookup::Name("nope")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->FindKey(KeyLookup::KeyId("\x01\x02")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->FindKey(KeyLookup::Ski(std::string(20, '\x07'))).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(
      store_->Sign("missing", {SignatureKind::kEcdsa, HashAlgorithm::kSha256}, "m", {})
          .status()
          .code(),
      absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DestroyKey("missing").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetMetadata("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(KeyStoreTest, RefusesBadNamesDuplicatesAndMismatchedAlgorithms) {
  EXPECT_EQ(store_->GenerateKey("", KeyAlgorithm::kEcP256).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GenerateKey("a/b", KeyAlgorithm::kEcP256).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store_->GenerateKey(std::string(65, 'a'), KeyAlgorithm::kEcP256).status().code(),
      absl::StatusCode::kInvalidArgument);
  auto key = store_->GenerateKey("dup", KeyAlgorithm::kEcP256);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(store_->GenerateKey("dup", KeyAlgorithm::kRsa2048).status().code(),
            absl::StatusCode::kAlreadyExists);
  // ECDSA key asked for an RSA signature, and EdDSA with a hash.
  EXPECT_EQ(
      store_->Sign(key->key_id, {SignatureKind::kRsaPss, HashAlgorithm::kSha256}, "m", {})
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store_->Sign(key->key_id, {SignatureKind::kEdDsa, HashAlgorithm::kNone}, "m", {})
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ImportKey("junk", SecretBytes(absl::string_view("not der")))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KeyStoreTest, CertificateChainAndMetadataLiveBesideTheKeyUntilDestroyed) {
  auto key = store_->GenerateKey("web", KeyAlgorithm::kEcP256);
  ASSERT_TRUE(key.ok());
  auto empty = store_->GetCertificateChain(key->key_id);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  // Any DER certificates will do for storage; build two self-signed ones with OpenSSL.
  std::vector<std::string> chain;
  for (int i = 0; i < 3; ++i) {
    EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), i + 1);
    X509_NAME_add_entry_by_txt(
        X509_get_subject_name(cert), "CN", MBSTRING_ASC,
        reinterpret_cast<const unsigned char*>(absl::StrCat("cert ", i).c_str()), -1, -1,
        0);
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, pkey);
    X509_sign(cert, pkey, EVP_sha256());
    unsigned char* der = nullptr;
    int len = i2d_X509(cert, &der);
    chain.emplace_back(reinterpret_cast<char*>(der), len);
    OPENSSL_free(der);
    X509_free(cert);
    EVP_PKEY_free(pkey);
  }
  ASSERT_TRUE(store_->PutCertificateChain(key->key_id, chain).ok());
  auto read = store_->GetCertificateChain(key->key_id);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, chain);  // Order kept, leaf first.
  // Replacing keeps only the new chain.
  std::vector<std::string> shorter = {chain[1]};
  ASSERT_TRUE(store_->PutCertificateChain(key->key_id, shorter).ok());
  EXPECT_EQ(*store_->GetCertificateChain(key->key_id), shorter);
  EXPECT_EQ(store_->PutCertificateChain(key->key_id, {std::string("junk")}).code(),
            absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(store_->PutMetadata(key->key_id, "v1").ok());
  ASSERT_TRUE(store_->PutMetadata(key->key_id, std::string("v2\0bin", 6)).ok());
  EXPECT_EQ(*store_->GetMetadata(key->key_id), std::string("v2\0bin", 6));

  // A second store on the same token sees it all (state lives on the token).
  auto other = Pkcs11KeyStore::Create(token_.Options());
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*(*other)->GetMetadata(key->key_id), std::string("v2\0bin", 6));
  EXPECT_EQ(*(*other)->GetCertificateChain(key->key_id), shorter);

  ASSERT_TRUE(store_->DestroyKey(key->key_id).ok());
  EXPECT_EQ(store_->FindKey(KeyLookup::Name("web")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetMetadata(key->key_id).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetCertificateChain(key->key_id)->empty());
  EXPECT_EQ(
      (*other)
          ->Sign(key->key_id, {SignatureKind::kEcdsa, HashAlgorithm::kSha256}, "m", {})
          .status()
          .code(),
      absl::StatusCode::kNotFound);
}

TEST_F(KeyStoreTest, StoreSecretHmacIsDeterministicAndSharedByStores) {
  auto a = store_->HmacWithStoreSecret("key id|ciphertext", {});
  auto b = store_->HmacWithStoreSecret("key id|ciphertext", {});
  auto c = store_->HmacWithStoreSecret("key id|other", {});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status();
  EXPECT_EQ(a->size(), 32u);
  EXPECT_EQ(a->view(), b->view());
  EXPECT_NE(a->view(), c->view());
  auto other = Pkcs11KeyStore::Create(token_.Options());
  ASSERT_TRUE(other.ok());
  EXPECT_EQ((*other)->HmacWithStoreSecret("key id|ciphertext", {})->view(), a->view());
  // A different token has a different secret.
  auto token2 = SoftHsmToken::Create();
  ASSERT_TRUE(token2.ok());
  auto store2 = Pkcs11KeyStore::Create(token2->Options());
  ASSERT_TRUE(store2.ok());
  EXPECT_NE((*store2)->HmacWithStoreSecret("key id|ciphertext", {})->view(), a->view());
}

TEST_F(KeyStoreTest, WrongPinIsPermissionDenied) {
  // A token nobody in this process has logged in to: PKCS#11 logins are per process,
  // so a second login to token_ would be "already logged in" whatever the PIN.
  auto fresh = SoftHsmToken::Create();
  ASSERT_TRUE(fresh.ok());
  TokenOptions options = fresh->Options();
  std::string bad_pin = fresh->pin_file + ".bad";
  FILE* f = fopen(bad_pin.c_str(), "w");
  fputs("wrong-pin", f);
  fclose(f);
  options.pin.file = bad_pin;
  auto store = Pkcs11KeyStore::Create(options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(store.status().message().find("CKR_PIN_INCORRECT"), std::string::npos)
      << store.status();
  EXPECT_EQ(store.status().message().find("wrong-pin"), std::string::npos);
}

TEST_F(KeyStoreTest, MissingTokenPinAndModuleGiveSpecificErrors) {
  TokenOptions options = token_.Options();
  options.uri = "pkcs11:token=no-such-token";
  auto missing = Pkcs11KeyStore::Create(options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(token_.label), std::string::npos)
      << "the message lists the tokens present: " << missing.status();

  options = token_.Options();
  options.pin.file = "/nonexistent/pin";
  EXPECT_EQ(Pkcs11KeyStore::Create(options).status().code(), absl::StatusCode::kNotFound);

  options = token_.Options();
  options.module_path = "/nonexistent/module.so";
  EXPECT_EQ(Pkcs11KeyStore::Create(options).status().code(), absl::StatusCode::kNotFound);

  options = token_.Options();
  options.uri = "pkcs11:token=x?pin-value=1234";
  EXPECT_EQ(Pkcs11KeyStore::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KeyStoreTest, SessionWaitHonoursTheDeadline) {
  auto store = Pkcs11KeyStore::Create(token_.Options(/*max_sessions=*/1));
  ASSERT_TRUE(store.ok());
  auto key = (*store)->GenerateKey("k", KeyAlgorithm::kEcP256);
  ASSERT_TRUE(key.ok());
  absl::Notification holding, release;
  std::thread holder([&] {
    (*store)
        ->token()
        .Run("hold", absl::InfiniteFuture(),
             [&](CK_SESSION_HANDLE, int) -> absl::Status {
               holding.Notify();
               release.WaitForNotification();
               return absl::OkStatus();
             })
        .IgnoreError();
  });
  holding.WaitForNotification();
  CallOptions options;
  options.deadline = absl::Now() + absl::Milliseconds(50);
  auto sig = (*store)->Sign(key->key_id, {SignatureKind::kEcdsa, HashAlgorithm::kSha256},
                            "m", options);
  EXPECT_EQ(sig.status().code(), absl::StatusCode::kDeadlineExceeded);
  release.Notify();
  holder.join();
  EXPECT_TRUE(
      (*store)
          ->Sign(key->key_id, {SignatureKind::kEcdsa, HashAlgorithm::kSha256}, "m", {})
          .ok());
}

TEST_F(KeyStoreTest, ManyThreadsSigningWithSeveralKeysAllVerify) {
  std::vector<KeyInfo> keys;
  for (KeyAlgorithm alg : {KeyAlgorithm::kRsa2048, KeyAlgorithm::kEcP256,
                           KeyAlgorithm::kEcP384, KeyAlgorithm::kEd25519}) {
    auto key = store_->GenerateKey(absl::StrCat("k", keys.size()), alg);
    ASSERT_TRUE(key.ok());
    keys.push_back(*key);
  }
  constexpr int kThreads = 12;  // More than the pool's 4 sessions: callers queue.
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
  EXPECT_EQ(store_->token().sessions_in_use(), 0);
}

// Keys are created and destroyed while other threads sign, list and check health, as an
// operator's offkeyctl does against a serving offkeyd. Every call must succeed: SoftHSM2
// (2.6) corrupts its view of an object that another thread reads while it is being
// created, so the store must keep object changes apart from other calls there.
TEST_F(KeyStoreTest, KeysChangeWhileOtherThreadsUseTheToken) {
  auto signer = store_->GenerateKey("signer", KeyAlgorithm::kEcP256);
  ASSERT_TRUE(signer.ok()) << signer.status();
  const SignAlgorithm alg{SignatureKind::kEcdsa, HashAlgorithm::kSha256};
  std::atomic<bool> done{false};
  std::atomic<int> reader_failures{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      while (!done.load()) {
        absl::Status status;
        switch (t) {
          case 0:
            status = store_->Sign(signer->key_id, alg, "m", {}).status();
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
    auto key = store_->GenerateKey(absl::StrCat("k", i), KeyAlgorithm::kEcP256);
    ASSERT_TRUE(key.ok()) << "key " << i << ": " << key.status();
    ASSERT_TRUE(store_->PutMetadata(key->key_id, "metadata").ok());
    ASSERT_TRUE(store_->DestroyKey(key->key_id).ok());
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(reader_failures.load(), 0);
  EXPECT_GT(reads.load(), 0);
  auto keys = store_->ListKeys();
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->size(), 1u);
}

// On SoftHSM2 an object change runs alone; a signature waiting for one still keeps its
// deadline, and one change waiting for readers is not starved by them.
TEST_F(KeyStoreTest, WaitForAnObjectChangeHonoursTheDeadline) {
  auto key = store_->GenerateKey("k", KeyAlgorithm::kEcP256);
  ASSERT_TRUE(key.ok());
  const SignAlgorithm alg{SignatureKind::kEcdsa, HashAlgorithm::kSha256};
  absl::Notification changing, release;
  std::thread changer([&] {
    store_->token()
        .Run(
            "hold a change", absl::InfiniteFuture(),
            [&](CK_SESSION_HANDLE, int) -> absl::Status {
              changing.Notify();
              release.WaitForNotification();
              return absl::OkStatus();
            },
            Token::Access::kChange)
        .IgnoreError();
  });
  changing.WaitForNotification();
  CallOptions options;
  options.deadline = absl::Now() + absl::Milliseconds(50);
  auto sig = store_->Sign(key->key_id, alg, "m", options);
  EXPECT_EQ(sig.status().code(), absl::StatusCode::kDeadlineExceeded) << sig.status();
  EXPECT_EQ(store_->token().sessions_in_use(), 1);  // The waiter gave its session back.
  release.Notify();
  changer.join();
  EXPECT_TRUE(store_->Sign(key->key_id, alg, "m", {}).ok());
}

// The module closes every session under us (as a reset HSM or an administrator's tool
// does): the next call must reopen, log in again and succeed.
TEST_F(KeyStoreTest, RecoversWhenAllSessionsAreClosed) {
  auto key = store_->GenerateKey("k", KeyAlgorithm::kEcP256);
  ASSERT_TRUE(key.ok());
  SignAlgorithm alg{SignatureKind::kEcdsa, HashAlgorithm::kSha256};
  ASSERT_TRUE(store_->Sign(key->key_id, alg, "before", {}).ok());
  const CK_SLOT_ID slot = store_->token().slot();
  ASSERT_EQ(store_->token().fn()->C_CloseAllSessions(slot), CKR_OK);
  auto sig = store_->Sign(key->key_id, alg, "after", {});
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_TRUE(VerifyWithOpenSsl(key->public_key_spki, alg, "after", *sig).ok());
}

TEST_F(KeyStoreTest, RecoversWhenTheLoginIsLost) {
  auto key = store_->GenerateKey("k", KeyAlgorithm::kRsa2048);
  ASSERT_TRUE(key.ok());
  SignAlgorithm alg{SignatureKind::kRsaPss, HashAlgorithm::kSha256};
  ASSERT_TRUE(store_->token()
                  .Run("logout", absl::InfiniteFuture(),
                       [&](CK_SESSION_HANDLE s, int) -> absl::Status {
                         return CkRvStatus(store_->token().fn()->C_Logout(s), "C_Logout");
                       })
                  .ok());
  auto sig = store_->Sign(key->key_id, alg, "after logout", {});
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_TRUE(VerifyWithOpenSsl(key->public_key_spki, alg, "after logout", *sig).ok());
  EXPECT_TRUE(store_->CheckHealth().ok());
}

// Token::Run reads the CK_RV from the status payload: a lost session is retried on a
// fresh one, a failure that is not the token's is returned unchanged after one call.
TEST_F(KeyStoreTest, RunRecoversOnTheCkRvPayloadOnly) {
  int calls = 0;
  absl::Status status = store_->token().Run(
      "lose the session once", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE, int attempt) {
        ++calls;
        return attempt == 0 ? CkRvStatus(CKR_SESSION_HANDLE_INVALID, "C_Sign")
                            : absl::OkStatus();
      });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(calls, 2);

  calls = 0;
  status = store_->token().Run("not found", absl::InfiniteFuture(),
                               [&](CK_SESSION_HANDLE, int) {
                                 ++calls;
                                 // Same code as a lost session, but no CK_RV: no retry.
                                 return absl::UnavailableError("not the token's");
                               });
  EXPECT_EQ(status, absl::UnavailableError("not the token's"));
  EXPECT_EQ(calls, 1);

  calls = 0;
  status =
      store_->token().Run("refused", absl::InfiniteFuture(), [&](CK_SESSION_HANDLE, int) {
        ++calls;
        return CkRvStatus(CKR_MECHANISM_INVALID, "C_SignInit");
      });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(status.message(), "refused: C_SignInit: CKR_MECHANISM_INVALID (0x70)");
  EXPECT_EQ(CkRvOf(status), CKR_MECHANISM_INVALID);
}

// The module is finalised and re-initialised under us (what a reinserted token or a
// restarted HSM client library looks like): handles and sessions are all dead.
TEST_F(KeyStoreTest, RecoversWhenTheModuleIsReinitialised) {
  auto key = store_->GenerateKey("k", KeyAlgorithm::kEcP256);
  ASSERT_TRUE(key.ok());
  SignAlgorithm alg{SignatureKind::kEcdsa, HashAlgorithm::kSha256};
  ASSERT_TRUE(store_->Sign(key->key_id, alg, "before", {}).ok());
  // Another user of the module in this process makes it rescan.
  auto module = Module::Load(testing::SoftHsmModulePath());
  ASSERT_TRUE(module.ok());
  ASSERT_TRUE((*module)->Reinitialize((*module)->generation()).ok());
  auto sig = store_->Sign(key->key_id, alg, "after", {});
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_TRUE(VerifyWithOpenSsl(key->public_key_spki, alg, "after", *sig).ok());
  EXPECT_TRUE(store_->CheckHealth().ok());
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
