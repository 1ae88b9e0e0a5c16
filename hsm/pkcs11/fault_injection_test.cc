// Each fault libfault_pkcs11.so injects below a Pkcs11KeyStore on SoftHSM2 reaches the
// store's caller as the status KeyStore promises (hsm/key_store.h), and the store
// serves again once the fault ends.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/module.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/fault_control.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "hsm/testing/verify.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using ::testing::HasSubstr;

const SignAlgorithm kEcdsa{SignatureKind::kEcdsa, HashAlgorithm::kSha256};

class FaultInjectionTest : public ::testing::Test {
 protected:
  void Open(int max_sessions = 4) {
    OFFKEY_ASSERT_OK_AND_ASSIGN(FaultControl faults, testing::FaultControl::Load());
    faults_ = std::make_unique<testing::FaultControl>(faults);
    OFFKEY_ASSERT_OK_AND_ASSIGN(token_, testing::SoftHsmToken::Create());
    TokenOptions options = token_.Options(max_sessions);
    options.module_path = testing::FaultModulePath();
    OFFKEY_ASSERT_OK_AND_ASSIGN(store_, Pkcs11KeyStore::Create(options));
    OFFKEY_ASSERT_OK_AND_ASSIGN(key_, store_->GenerateKey("k", KeyAlgorithm::kEcP256));
    OFFKEY_ASSERT_OK_AND_ASSIGN(module_, Module::Load(options.module_path));
  }

  void TearDown() override {
    if (faults_ != nullptr) faults_->Clear();
    if (module_ != nullptr) module_->SetDrainTimeoutForTest(Module::kDefaultDrainTimeout);
  }

  absl::StatusOr<std::string> Sign(absl::Time deadline = absl::InfiniteFuture()) {
    CallOptions call;
    call.deadline = deadline;
    return store_->Sign(key_.key_id, kEcdsa, "message", call);
  }

  // Signs and checks the signature: the store works.
  void ExpectServes() {
    auto sig = Sign();
    ASSERT_THAT(sig, IsOk());
    EXPECT_THAT(
        hsm::testing::VerifyWithOpenSsl(key_.public_key_spki, kEcdsa, "message", *sig),
        IsOk());
    EXPECT_THAT(store_->CheckHealth(), IsOk());
  }

  // Waits (bounded) until `function` has been entered `n` times in all; the caller
  // is then inside it or past it.
  bool AwaitCalls(const std::string& function, uint64_t n) {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (faults_->Calls(function) < n && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    return faults_->Calls(function) >= n;
  }

  using FaultControl = testing::FaultControl;
  std::unique_ptr<testing::FaultControl> faults_;
  testing::SoftHsmToken token_;
  std::unique_ptr<Pkcs11KeyStore> store_;
  KeyInfo key_;
  Module* module_ = nullptr;
};

TEST_F(FaultInjectionTest, TokenFaultsAreUnavailableUntilTheTokenIsBack) {
  Open();
  for (CK_RV rv : {CKR_DEVICE_ERROR, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT}) {
    SCOPED_TRACE(rv);
    const uint64_t finalized = faults_->Calls("C_Finalize");
    faults_->Fail("*", rv);
    EXPECT_THAT(Sign(), StatusIs(absl::StatusCode::kUnavailable));
    EXPECT_THAT(store_->CheckHealth(), StatusIs(absl::StatusCode::kUnavailable));
    EXPECT_GT(faults_->Calls("C_Finalize"), finalized) << "the store rescanned";
    faults_->Clear();
    ExpectServes();
  }
  EXPECT_EQ(faults_->LifecycleOverlaps(), 0u);
}

TEST_F(FaultInjectionTest, OneLostSessionIsReplacedWithoutTheCallerSeeingIt) {
  Open();
  for (CK_RV rv : {CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED}) {
    SCOPED_TRACE(rv);
    const uint64_t injected = faults_->Injected("C_Sign");
    faults_->Fail("C_Sign", rv, 1.0, /*count=*/1);
    ExpectServes();
    EXPECT_EQ(faults_->Injected("C_Sign"), injected + 1);
  }
}

TEST_F(FaultInjectionTest, SessionsThatKeepFailingAreUnavailableAfterRetries) {
  Open();
  const uint64_t injected = faults_->Injected("C_Sign");
  faults_->Fail("C_Sign", CKR_SESSION_HANDLE_INVALID);
  EXPECT_THAT(Sign(), StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("CKR_SESSION_HANDLE_INVALID")));
  EXPECT_EQ(faults_->Injected("C_Sign"), injected + 3) << "retried on fresh sessions";
  faults_->Clear();
  ExpectServes();
}

TEST_F(FaultInjectionTest, ModuleFailuresAreUnavailableAndNotRetried) {
  Open();
  for (CK_RV rv : {CKR_FUNCTION_FAILED, CKR_GENERAL_ERROR}) {
    SCOPED_TRACE(rv);
    const uint64_t injected = faults_->Injected("C_Sign");
    faults_->Fail("C_Sign", rv);
    EXPECT_THAT(Sign(),
                StatusIs(absl::StatusCode::kUnavailable,
                         HasSubstr(rv == CKR_FUNCTION_FAILED ? "CKR_FUNCTION_FAILED"
                                                             : "CKR_GENERAL_ERROR")));
    EXPECT_EQ(faults_->Injected("C_Sign"), injected + 1);
    faults_->Clear();
    ExpectServes();
  }
}

TEST_F(FaultInjectionTest, AFailingLoginIsUnavailableAndRecovers) {
  Open();
  // The session is lost, so the next session must log in again, and that fails.
  faults_->Fail("C_Sign", CKR_SESSION_CLOSED, 1.0, /*count=*/1);
  faults_->Fail("C_Login", CKR_DEVICE_ERROR);
  EXPECT_THAT(Sign(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("C_Login")));
  EXPECT_GT(faults_->Injected("C_Login"), 0u);
  faults_->Clear();
  ExpectServes();
}

TEST_F(FaultInjectionTest, ALockedPinIsNotPresentedAgain) {
  Open();
  faults_->Fail("C_Sign", CKR_SESSION_CLOSED, 1.0, /*count=*/1);
  faults_->Fail("C_Login", CKR_PIN_LOCKED);
  EXPECT_THAT(Sign(), StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("refused the PIN (C_Login: CKR_PIN_LOCKED)")));
  const uint64_t logins = faults_->Calls("C_Login");
  faults_->Clear();
  // By contract only a new store tries the PIN again, fault or not.
  EXPECT_THAT(Sign(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("PIN")));
  EXPECT_THAT(store_->CheckHealth(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(faults_->Calls("C_Login"), logins);
}

// KeyStore's deadline bounds the wait for a session; a call already in the HSM is not
// interrupted. A slow or hung HSM call therefore runs on, but the callers behind it
// still get their answer at their deadline.
TEST_F(FaultInjectionTest, LatencyDelaysTheCallAndWaitersKeepTheirDeadline) {
  Open(/*max_sessions=*/1);
  faults_->Delay("C_Sign", /*latency_ms=*/600);
  const uint64_t signs = faults_->Calls("C_Sign");
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> slow;
  std::thread first([&] { slow = Sign(absl::Now() + absl::Milliseconds(50)); });
  ASSERT_TRUE(AwaitCalls("C_Sign", signs + 1));  // In C_Sign: slowed or hung.
  const absl::Time waiting = absl::Now();
  EXPECT_THAT(Sign(absl::Now() + absl::Milliseconds(100)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_LT(absl::Now() - waiting, absl::Milliseconds(400));
  first.join();
  EXPECT_THAT(slow, IsOk()) << "a call in the HSM is not interrupted by its deadline";
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(600));
}

TEST_F(FaultInjectionTest, AHungCallHoldsItsSessionAndWaitersKeepTheirDeadline) {
  Open(/*max_sessions=*/1);
  faults_->Hang("C_Sign");
  const uint64_t signs = faults_->Calls("C_Sign");
  absl::StatusOr<std::string> hung;
  std::thread first([&] { hung = Sign(absl::Now() + absl::Milliseconds(50)); });
  ASSERT_TRUE(AwaitCalls("C_Sign", signs + 1));  // In C_Sign: slowed or hung.
  const absl::Time waiting = absl::Now();
  EXPECT_THAT(Sign(absl::Now() + absl::Milliseconds(200)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_LT(absl::Now() - waiting, absl::Milliseconds(800));
  faults_->Release();
  first.join();
  EXPECT_THAT(hung, IsOk());
  ExpectServes();
}

// A call that never returns must not stop recovery from answering, nor be finalised
// under: the store gives up re-initialising after the drain timeout and says why.
TEST_F(FaultInjectionTest, RecoveryGivesUpOnAHungCallInsteadOfFinalizingUnderIt) {
  Open(/*max_sessions=*/2);
  module_->SetDrainTimeoutForTest(absl::Milliseconds(300));
  faults_->Hang("C_Sign");
  const uint64_t signs = faults_->Calls("C_Sign");
  absl::StatusOr<std::string> hung;
  std::thread first([&] { hung = Sign(); });
  ASSERT_TRUE(AwaitCalls("C_Sign", signs + 1));  // In C_Sign: slowed or hung.
  const uint64_t finalized = faults_->Calls("C_Finalize");
  faults_->Fail("*", CKR_DEVICE_REMOVED);
  const absl::Time start = absl::Now();
  EXPECT_THAT(Sign(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  // What the recovery behind that answer met: the stuck call.
  EXPECT_THAT(
      module_->Reinitialize(module_->generation()),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("1 call(s) still inside it")));
  // Within the next drain timeout, recoveries fail at once instead of waiting again.
  const absl::Time again = absl::Now();
  EXPECT_THAT(Sign(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_LT(absl::Now() - again, absl::Milliseconds(250));
  EXPECT_EQ(faults_->Calls("C_Finalize"), finalized);
  faults_->Clear();
  first.join();
  EXPECT_THAT(hung, IsOk());
  ExpectServes();
  EXPECT_EQ(faults_->LifecycleOverlaps(), 0u);
}

TEST_F(FaultInjectionTest, RateCountAndWindowLimitInjection) {
  Open();
  uint64_t injected = faults_->Injected("C_Sign");
  faults_->Fail("C_Sign", CKR_FUNCTION_FAILED, /*rate=*/0.5);
  int failures = 0;
  for (int i = 0; i < 200; ++i) failures += Sign().ok() ? 0 : 1;
  EXPECT_GT(failures, 40);
  EXPECT_LT(failures, 160);
  EXPECT_EQ(faults_->Injected("C_Sign"), injected + failures);
  faults_->Clear();

  faults_->Fail("C_Sign", CKR_GENERAL_ERROR, 1.0, /*count=*/3);
  failures = 0;
  for (int i = 0; i < 10; ++i) failures += Sign().ok() ? 0 : 1;
  EXPECT_EQ(failures, 3);
  faults_->Clear();

  faults_->Fail("C_Sign", CKR_GENERAL_ERROR, 1.0, 0, /*window_ms=*/300);
  const absl::Time window_end = absl::Now() + absl::Milliseconds(300);
  EXPECT_THAT(Sign(), StatusIs(absl::StatusCode::kUnavailable));
  absl::SleepFor(window_end - absl::Now() + absl::Milliseconds(10));
  ExpectServes();
}

// A ticket epoch derivation whose HMAC fails in the module reports the failure (no
// bytes), and derives the same secret as before once the module works again.
TEST_F(FaultInjectionTest, AFailedTicketDerivationIsReportedAndLeavesNoBytes) {
  Open();
  ASSERT_THAT(store_->CreateTicketKeySet("tickets", absl::Hours(1)), IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes before,
                              store_->DeriveTicketEpochSecret("tickets", 9, {}));
  for (CK_RV rv : {CKR_FUNCTION_FAILED, CKR_DEVICE_ERROR}) {
    SCOPED_TRACE(rv);
    const uint64_t injected = faults_->Injected("C_Sign");
    faults_->Fail("C_Sign", rv);
    auto failed = store_->DeriveTicketEpochSecret("tickets", 9, {});
    EXPECT_THAT(failed,
                StatusIs(absl::StatusCode::kUnavailable,
                         ::testing::AllOf(HasSubstr("C_Sign"),
                                          HasSubstr("ticket-key set 'tickets'"))));
    EXPECT_GT(faults_->Injected("C_Sign"), injected);
    faults_->Clear();
    OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes after,
                                store_->DeriveTicketEpochSecret("tickets", 9, {}));
    EXPECT_EQ(after.view(), before.view());
  }
  // A lost session during the HMAC is replaced without the caller seeing it.
  faults_->Fail("C_Sign", CKR_SESSION_HANDLE_INVALID, 1.0, /*count=*/1);
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes retried,
                              store_->DeriveTicketEpochSecret("tickets", 9, {}));
  EXPECT_EQ(retried.view(), before.view());
}

// The control file lets a test drive the module inside another process.
TEST_F(FaultInjectionTest, ControlFileRulesApplyUntilTheFileChanges) {
  Open();
  const std::string path = token_.directory + "/faults";
  ASSERT_EQ(setenv("OFFKEY_FAULT_CONTROL_FILE", path.c_str(), 1), 0);
  auto write = [&](const std::string& text) {
    const std::string tmp = path + ".tmp";
    FILE* f = fopen(tmp.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fputs(text.c_str(), f);
    fclose(f);
    ASSERT_EQ(rename(tmp.c_str(), path.c_str()), 0);
  };
  write("# a comment\nerror C_Sign CKR_FUNCTION_FAILED count=2\nlatency C_Sign 1\n");
  EXPECT_THAT(Sign(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("FUNCTION_FAILED")));
  write("error * CKR_DEVICE_REMOVED rate=1\n");
  EXPECT_THAT(Sign(), StatusIs(absl::StatusCode::kUnavailable));
  write("");
  ExpectServes();
  write("error C_Sign 0x30\n");  // CKR_DEVICE_ERROR by number.
  EXPECT_THAT(Sign(), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_EQ(unlink(path.c_str()), 0);
  ExpectServes();
  unsetenv("OFFKEY_FAULT_CONTROL_FILE");
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
