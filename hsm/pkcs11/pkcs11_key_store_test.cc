// Pkcs11KeyStore on real SoftHSM2 tokens: the KeyStore conformance suite (a fresh token
// per test), then what only PKCS#11 has: object attributes, PINs, modules, the session
// pool and recovery from a token that misbehaves.
#include "hsm/pkcs11/pkcs11_key_store.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/status_macros.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/ck_rv.h"
#include "hsm/pkcs11/module.h"
#include "hsm/pkcs11/object_io.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "hsm/testing/forwarding_store.h"
#include "hsm/testing/key_store_conformance.h"
#include "hsm/testing/verify.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::hsm::pkcs11::testing::SoftHsmToken;
using ::offkey::hsm::testing::ForwardingStore;
using ::offkey::hsm::testing::kAllKeyAlgorithms;
using ::offkey::hsm::testing::KeyStoreConformanceKeyTest;
using ::offkey::hsm::testing::KeyStoreConformanceTest;
using ::offkey::hsm::testing::KeyStoreFactory;
using ::offkey::hsm::testing::KeyStoreFactoryAndKeyName;
using ::offkey::hsm::testing::KeyStoreFactoryName;
using ::offkey::hsm::testing::VerifyWithOpenSsl;
using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;

// A Pkcs11KeyStore on a token of its own, which it keeps for open_another.
class TokenStore : public ForwardingStore {
 public:
  TokenStore(SoftHsmToken token, std::unique_ptr<Pkcs11KeyStore> store)
      : ForwardingStore(store.get()),
        token_(std::move(token)),
        store_(std::move(store)) {}

  const SoftHsmToken& token() const { return token_; }

 private:
  SoftHsmToken token_;
  std::unique_ptr<Pkcs11KeyStore> store_;
};

const KeyStoreFactory kSoftHsm2{
    "SoftHsm2",
    []() -> absl::StatusOr<std::unique_ptr<KeyStore>> {
      OFFKEY_ASSIGN_OR_RETURN(SoftHsmToken token, SoftHsmToken::Create());
      OFFKEY_ASSIGN_OR_RETURN(std::unique_ptr<Pkcs11KeyStore> store,
                              Pkcs11KeyStore::Create(token.Options()));
      return std::make_unique<TokenStore>(std::move(token), std::move(store));
    },
    [](KeyStore& store) -> absl::StatusOr<std::unique_ptr<KeyStore>> {
      OFFKEY_ASSIGN_OR_RETURN(
          std::unique_ptr<Pkcs11KeyStore> other,
          Pkcs11KeyStore::Create(static_cast<TokenStore&>(store).token().Options()));
      return other;
    }};
INSTANTIATE_TEST_SUITE_P(SoftHsm2, KeyStoreConformanceTest, ::testing::Values(kSoftHsm2),
                         KeyStoreFactoryName);
INSTANTIATE_TEST_SUITE_P(SoftHsm2, KeyStoreConformanceKeyTest,
                         ::testing::Combine(::testing::Values(kSoftHsm2),
                                            ::testing::ValuesIn(kAllKeyAlgorithms)),
                         KeyStoreFactoryAndKeyName);

// PKCS#11 only, from here on.

class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OFFKEY_ASSERT_OK_AND_ASSIGN(token_, SoftHsmToken::Create());
    OFFKEY_ASSERT_OK_AND_ASSIGN(store_, Pkcs11KeyStore::Create(token_.Options()));
  }

  SoftHsmToken token_;
  std::unique_ptr<Pkcs11KeyStore> store_;
};

class SensitiveKeyTest : public KeyStoreTest,
                         public ::testing::WithParamInterface<KeyAlgorithm> {};

TEST_P(SensitiveKeyTest, PrivateKeyIsSensitiveAndNeverExtractable) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo key, store_->GenerateKey("web", GetParam()));
  ASSERT_TRUE(
      store_->TokenForTest()
          .Run("check attributes", absl::InfiniteFuture(),
               [&](CK_SESSION_HANDLE session, int) -> absl::Status {
                 const CK_FUNCTION_LIST* fn = store_->TokenForTest().fn();
                 Template find;
                 find.Ulong(CKA_CLASS, CKO_PRIVATE_KEY).Bytes(CKA_ID, key.key_id);
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
                                    FamilyOf(key.algorithm) == KeyFamily::kRsa
                                        ? CKA_PRIVATE_EXPONENT
                                        : CKA_VALUE,
                                    &value),
                           CKR_ATTRIBUTE_SENSITIVE);
                 return absl::OkStatus();
               })
          .ok());
}

INSTANTIATE_TEST_SUITE_P(AllKeyTypes, SensitiveKeyTest,
                         ::testing::ValuesIn(kAllKeyAlgorithms),
                         [](const ::testing::TestParamInfo<KeyAlgorithm>& info) {
                           std::string name(KeyAlgorithmName(info.param));
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

// The root is a sign-only HMAC key whose value never leaves the token, and its record
// beside it holds no secret.
TEST_F(KeyStoreTest, TicketKeySetRootIsSensitiveNeverExtractableAndSignOnly) {
  ASSERT_THAT(store_->CreateTicketKeySet("tickets", absl::Hours(1)), IsOk());
  ASSERT_THAT(
      store_->TokenForTest().Run(
          "check attributes", absl::InfiniteFuture(),
          [&](CK_SESSION_HANDLE session, int) -> absl::Status {
            const CK_FUNCTION_LIST* fn = store_->TokenForTest().fn();
            Template find;
            find.Ulong(CKA_CLASS, CKO_SECRET_KEY)
                .Bytes(CKA_LABEL, "offkey-ticket-keys/tickets");
            std::vector<CK_OBJECT_HANDLE> found;
            EXPECT_EQ(FindObjects(fn, session, find, &found), CKR_OK);
            EXPECT_EQ(found.size(), 1u);
            if (found.size() != 1) return absl::OkStatus();
            CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, token = CK_FALSE,
                     is_private = CK_FALSE, sign = CK_FALSE, verify = CK_TRUE,
                     derive = CK_TRUE, local = CK_FALSE, always_sensitive = CK_FALSE,
                     never_extractable = CK_FALSE, encrypt = CK_TRUE, decrypt = CK_TRUE,
                     wrap = CK_TRUE, unwrap = CK_TRUE;
            CK_ULONG type = 0, length = 0;
            CK_ATTRIBUTE attrs[] = {
                {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
                {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
                {CKA_TOKEN, &token, sizeof(token)},
                {CKA_PRIVATE, &is_private, sizeof(is_private)},
                {CKA_SIGN, &sign, sizeof(sign)},
                {CKA_VERIFY, &verify, sizeof(verify)},
                {CKA_DERIVE, &derive, sizeof(derive)},
                {CKA_LOCAL, &local, sizeof(local)},
                {CKA_ALWAYS_SENSITIVE, &always_sensitive, sizeof(always_sensitive)},
                {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof(never_extractable)},
                {CKA_ENCRYPT, &encrypt, sizeof(encrypt)},
                {CKA_DECRYPT, &decrypt, sizeof(decrypt)},
                {CKA_WRAP, &wrap, sizeof(wrap)},
                {CKA_UNWRAP, &unwrap, sizeof(unwrap)},
                {CKA_KEY_TYPE, &type, sizeof(type)},
                {CKA_VALUE_LEN, &length, sizeof(length)}};
            EXPECT_EQ(fn->C_GetAttributeValue(session, found[0], attrs,
                                              sizeof(attrs) / sizeof(attrs[0])),
                      CKR_OK);
            EXPECT_EQ(sensitive, CK_TRUE);
            EXPECT_EQ(extractable, CK_FALSE);
            EXPECT_EQ(token, CK_TRUE);
            EXPECT_EQ(is_private, CK_TRUE);
            EXPECT_EQ(sign, CK_TRUE);
            EXPECT_EQ(verify, CK_FALSE);
            EXPECT_EQ(derive, CK_FALSE);
            EXPECT_EQ(local, CK_TRUE) << "generated in the token";
            EXPECT_EQ(always_sensitive, CK_TRUE);
            EXPECT_EQ(never_extractable, CK_TRUE);
            EXPECT_EQ(encrypt, CK_FALSE);
            EXPECT_EQ(decrypt, CK_FALSE);
            EXPECT_EQ(wrap, CK_FALSE);
            EXPECT_EQ(unwrap, CK_FALSE);
            EXPECT_EQ(type, CKK_GENERIC_SECRET);
            EXPECT_EQ(length, 32u);
            std::string value;
            EXPECT_EQ(GetBytes(fn, session, found[0], CKA_VALUE, &value),
                      CKR_ATTRIBUTE_SENSITIVE);
            EXPECT_TRUE(value.empty());
            // Nor can it be made extractable, or less sensitive, afterwards.
            Template loosen;
            loosen.Bool(CKA_EXTRACTABLE, true);
            EXPECT_NE(
                fn->C_SetAttributeValue(session, found[0], loosen.data(), loosen.size()),
                CKR_OK);
            Template unsensitive;
            unsensitive.Bool(CKA_SENSITIVE, false);
            EXPECT_NE(fn->C_SetAttributeValue(session, found[0], unsensitive.data(),
                                              unsensitive.size()),
                      CKR_OK);
            return absl::OkStatus();
          }),
      IsOk());
  // Still whole and usable.
  EXPECT_THAT(store_->DeriveTicketEpochSecret("tickets", 1, {}), IsOk());
}

// The documented layout and derivation, from outside the store: a set provisioned by
// hand with a known root (as another tool could) is found, and its epoch secret is
// HMAC-SHA256(root, "offkey ticket epoch v1" 0x00 name 0x00 epoch-as-8-bytes-BE).
TEST_F(KeyStoreTest, HandMadeSetWithAKnownRootDerivesTheDocumentedHmac) {
  const std::string root(32, '\x5a');
  const std::string root_id = "0123456789abcdef";  // 16 bytes.
  ASSERT_THAT(
      store_->TokenForTest().Run(
          "provision", absl::InfiniteFuture(),
          [&](CK_SESSION_HANDLE session, int) -> absl::Status {
            const CK_FUNCTION_LIST* fn = store_->TokenForTest().fn();
            // Version 1, root id, period 600 s, created at Unix time 1'700'000'000.
            const std::string record = absl::StrCat(
                std::string(1, '\x01'), root_id, std::string("\0\0\0\0\0\0\x02\x58", 8),
                std::string("\0\0\0\0\x65\x53\xf1\x00", 8));
            Template data, key;
            data.Ulong(CKA_CLASS, CKO_DATA)
                .Bool(CKA_TOKEN, true)
                .Bool(CKA_PRIVATE, true)
                .Bytes(CKA_APPLICATION, "offkey-ticket-key-set")
                .Bytes(CKA_LABEL, "offkey-ticket-keys/known")
                .Bytes(CKA_VALUE, record);
            key.Ulong(CKA_CLASS, CKO_SECRET_KEY)
                .Ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
                .Bool(CKA_TOKEN, true)
                .Bool(CKA_PRIVATE, true)
                .Bool(CKA_SENSITIVE, true)
                .Bool(CKA_SIGN, true)
                .Bytes(CKA_LABEL, "offkey-ticket-keys/known")
                .Bytes(CKA_ID, root_id)
                .Bytes(CKA_VALUE, root);
            CK_OBJECT_HANDLE h;
            EXPECT_EQ(fn->C_CreateObject(session, data.data(), data.size(), &h), CKR_OK);
            EXPECT_EQ(fn->C_CreateObject(session, key.data(), key.size(), &h), CKR_OK);
            return absl::OkStatus();
          }),
      IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(TicketKeySetInfo found, store_->FindTicketKeySet("known"));
  EXPECT_EQ(found.rotation_period, absl::Seconds(600));
  EXPECT_EQ(found.create_time, absl::FromUnixSeconds(1'700'000'000));
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes derived,
                              store_->DeriveTicketEpochSecret("known", 0x0102, {}));
  const std::string message("offkey ticket epoch v1\0known\0\0\0\0\0\0\0\x01\x02",
                            22 + 1 + 5 + 1 + 8);
  unsigned char expected[32];
  unsigned int len = 0;
  ASSERT_NE(HMAC(EVP_sha256(), root.data(), static_cast<int>(root.size()),
                 reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                 expected, &len),
            nullptr);
  ASSERT_EQ(len, 32u);
  EXPECT_EQ(derived.view(),
            absl::string_view(reinterpret_cast<const char*>(expected), sizeof(expected)));
}

// Sets live on the token: a store opened after this one is gone finds them.
TEST_F(KeyStoreTest, TicketKeySetsSurviveTheStore) {
  ASSERT_THAT(store_->CreateTicketKeySet("tickets", absl::Seconds(90)), IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes before,
                              store_->DeriveTicketEpochSecret("tickets", 5, {}));
  store_.reset();
  OFFKEY_ASSERT_OK_AND_ASSIGN(store_, Pkcs11KeyStore::Create(token_.Options()));
  OFFKEY_ASSERT_OK_AND_ASSIGN(TicketKeySetInfo found,
                              store_->FindTicketKeySet("tickets"));
  EXPECT_EQ(found.rotation_period, absl::Seconds(90));
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes after,
                              store_->DeriveTicketEpochSecret("tickets", 5, {}));
  EXPECT_EQ(after.view(), before.view());
}

TEST_F(KeyStoreTest, WrongPinIsPermissionDenied) {
  // A token nobody in this process has logged in to: PKCS#11 logins are per process,
  // so a second login to token_ would be "already logged in" whatever the PIN.
  auto fresh = SoftHsmToken::Create();
  ASSERT_THAT(fresh, IsOk());
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
  ASSERT_THAT(store, IsOk());
  auto key = (*store)->GenerateKey("k", KeyAlgorithm::kEcP256);
  ASSERT_THAT(key, IsOk());
  absl::Notification holding, release;
  std::thread holder([&] {
    (*store)
        ->TokenForTest()
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

// On SoftHSM2 an object change runs alone; a signature waiting for one still keeps its
// deadline, and one change waiting for readers is not starved by them.
TEST_F(KeyStoreTest, WaitForAnObjectChangeHonoursTheDeadline) {
  auto key = store_->GenerateKey("k", KeyAlgorithm::kEcP256);
  ASSERT_THAT(key, IsOk());
  const SignAlgorithm alg{SignatureKind::kEcdsa, HashAlgorithm::kSha256};
  absl::Notification changing, release;
  std::thread changer([&] {
    store_->TokenForTest()
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
  EXPECT_EQ(store_->TokenForTest().sessions_in_use(),
            1);  // The waiter gave its session back.
  release.Notify();
  changer.join();
  EXPECT_THAT(store_->Sign(key->key_id, alg, "m", {}), IsOk());
}

// The module closes every session under us (as a reset HSM or an administrator's tool
// does): the next call must reopen, log in again and succeed.
TEST_F(KeyStoreTest, RecoversWhenAllSessionsAreClosed) {
  auto key = store_->GenerateKey("k", KeyAlgorithm::kEcP256);
  ASSERT_THAT(key, IsOk());
  SignAlgorithm alg{SignatureKind::kEcdsa, HashAlgorithm::kSha256};
  ASSERT_THAT(store_->Sign(key->key_id, alg, "before", {}), IsOk());
  const CK_SLOT_ID slot = store_->TokenForTest().slot();
  ASSERT_EQ(store_->TokenForTest().fn()->C_CloseAllSessions(slot), CKR_OK);
  auto sig = store_->Sign(key->key_id, alg, "after", {});
  ASSERT_THAT(sig, IsOk());
  EXPECT_THAT(VerifyWithOpenSsl(key->public_key_spki, alg, "after", *sig), IsOk());
}

TEST_F(KeyStoreTest, RecoversWhenTheLoginIsLost) {
  auto key = store_->GenerateKey("k", KeyAlgorithm::kRsa2048);
  ASSERT_THAT(key, IsOk());
  SignAlgorithm alg{SignatureKind::kRsaPss, HashAlgorithm::kSha256};
  ASSERT_TRUE(store_->TokenForTest()
                  .Run("logout", absl::InfiniteFuture(),
                       [&](CK_SESSION_HANDLE s, int) -> absl::Status {
                         return CkRvStatus(store_->TokenForTest().fn()->C_Logout(s),
                                           "C_Logout");
                       })
                  .ok());
  auto sig = store_->Sign(key->key_id, alg, "after logout", {});
  ASSERT_THAT(sig, IsOk());
  EXPECT_THAT(VerifyWithOpenSsl(key->public_key_spki, alg, "after logout", *sig), IsOk());
  EXPECT_THAT(store_->CheckHealth(), IsOk());
}

// Token::Run reads the CK_RV from the status payload: a lost session is retried on a
// fresh one, a failure that is not the token's is returned unchanged after one call.
TEST_F(KeyStoreTest, RunRecoversOnTheCkRvPayloadOnly) {
  int calls = 0;
  absl::Status status = store_->TokenForTest().Run(
      "lose the session once", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE, int attempt) {
        ++calls;
        return attempt == 0 ? CkRvStatus(CKR_SESSION_HANDLE_INVALID, "C_Sign")
                            : absl::OkStatus();
      });
  EXPECT_THAT(status, IsOk());
  EXPECT_EQ(calls, 2);

  calls = 0;
  status = store_->TokenForTest().Run("not found", absl::InfiniteFuture(),
                                      [&](CK_SESSION_HANDLE, int) {
                                        ++calls;
                                        // Same code as a lost session, but no CK_RV: no
                                        // retry.
                                        return absl::UnavailableError("not the token's");
                                      });
  EXPECT_EQ(status, absl::UnavailableError("not the token's"));
  EXPECT_EQ(calls, 1);

  calls = 0;
  status = store_->TokenForTest().Run(
      "refused", absl::InfiniteFuture(), [&](CK_SESSION_HANDLE, int) {
        ++calls;
        return CkRvStatus(CKR_MECHANISM_INVALID, "C_SignInit");
      });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(status.message(), "refused: C_SignInit: CKR_MECHANISM_INVALID (0x70)");
  EXPECT_EQ(CkRvOf(status), CKR_MECHANISM_INVALID);
}

// A recovery that finds the token still there starts a new epoch; a session leased
// before it is still open in the module and must be closed when it comes back, not
// dropped from the pool's count and left open (a leak per recovery).
TEST_F(KeyStoreTest, SessionsLeasedBeforeARecoveryAreClosedWhenReturned) {
  Token& token = store_->TokenForTest();
  CK_SESSION_HANDLE held = CK_INVALID_HANDLE;
  absl::Notification holding, release;
  std::thread holder([&] {
    token
        .Run("hold", absl::InfiniteFuture(),
             [&](CK_SESSION_HANDLE s, int) -> absl::Status {
               held = s;
               holding.Notify();
               release.WaitForNotification();
               return absl::OkStatus();
             })
        .IgnoreError();
  });
  holding.WaitForNotification();
  const uint64_t epoch = token.epoch();
  ASSERT_THAT(token.Run("lose the token once", absl::InfiniteFuture(),
                        [](CK_SESSION_HANDLE, int attempt) {
                          return attempt == 0 ? CkRvStatus(CKR_DEVICE_REMOVED, "C_Sign")
                                              : absl::OkStatus();
                        }),
              IsOk());
  ASSERT_GT(token.epoch(), epoch);  // Recovered, without re-initialising the module.
  release.Notify();
  holder.join();
  CK_SESSION_INFO info;
  EXPECT_EQ(token.fn()->C_GetSessionInfo(held, &info), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(token.sessions_in_use(), 0);
  EXPECT_THAT(store_->CheckHealth(), IsOk());
}

// The module is finalised and re-initialised under us (what a reinserted token or a
// restarted HSM client library looks like): handles and sessions are all dead.
TEST_F(KeyStoreTest, RecoversWhenTheModuleIsReinitialised) {
  auto key = store_->GenerateKey("k", KeyAlgorithm::kEcP256);
  ASSERT_THAT(key, IsOk());
  SignAlgorithm alg{SignatureKind::kEcdsa, HashAlgorithm::kSha256};
  ASSERT_THAT(store_->Sign(key->key_id, alg, "before", {}), IsOk());
  // Another user of the module in this process makes it rescan.
  auto module = Module::Load(testing::SoftHsmModulePath());
  ASSERT_THAT(module, IsOk());
  ASSERT_THAT((*module)->Reinitialize((*module)->generation()), IsOk());
  auto sig = store_->Sign(key->key_id, alg, "after", {});
  ASSERT_THAT(sig, IsOk());
  EXPECT_THAT(VerifyWithOpenSsl(key->public_key_spki, alg, "after", *sig), IsOk());
  EXPECT_THAT(store_->CheckHealth(), IsOk());
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
