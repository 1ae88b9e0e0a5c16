// The token is lost and restored several times while threads sign without pause. The
// store re-initialises the module to find the token again; it must never do so while
// another thread is inside the module (PKCS#11 leaves C_Finalize beside other calls
// undefined, and SoftHSM2 frees state under them). The fault module counts the calls
// inside it and records any C_Initialize or C_Finalize that overlapped one.
#include <atomic>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/module.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/fault_control.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "hsm/testing/verify.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::testing::IsOk;

constexpr int kThreads = 8;
constexpr int kLosses = 6;

TEST(RecoveryUnderLoadTest, NeverFinalizesUnderACallAndSigningResumes) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto faults, testing::FaultControl::Load());
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto token, testing::SoftHsmToken::Create());
  TokenOptions options = token.Options(/*max_sessions=*/4);
  options.module_path = testing::FaultModulePath();
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto store, Pkcs11KeyStore::Create(options));
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto key, store->GenerateKey("k", KeyAlgorithm::kEcP256));
  const SignAlgorithm alg{SignatureKind::kEcdsa, HashAlgorithm::kSha256};
  // Every call stays in the module a little, as on a real HSM, so that calls are in
  // flight whenever a recovery starts.
  faults.Delay("*", /*latency_ms=*/1);

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> signed_ok{0}, failed{0}, bad_signatures{0};
  std::vector<std::thread> signers;
  for (int i = 0; i < kThreads; ++i) {
    signers.emplace_back([&] {
      while (!stop.load()) {
        CallOptions call;
        call.deadline = absl::Now() + absl::Seconds(10);
        auto sig = store->Sign(key.key_id, alg, "message", call);
        if (!sig.ok()) {
          ++failed;
          continue;
        }
        if (!hsm::testing::VerifyWithOpenSsl(key.public_key_spki, alg, "message", *sig)
                 .ok()) {
          ++bad_signatures;
        }
        ++signed_ok;
      }
    });
  }
  // Waits (bounded) until `n` more signatures than `from` were made.
  auto signed_after = [&](uint64_t from, uint64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (signed_ok.load() < from + n && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    return signed_ok.load() >= from + n;
  };

  ASSERT_TRUE(signed_after(0, 20));
  for (int loss = 0; loss < kLosses; ++loss) {
    const uint64_t failed_before = failed.load();
    faults.Fail("*", loss % 2 == 0 ? CKR_DEVICE_REMOVED : CKR_TOKEN_NOT_PRESENT);
    // Gone long enough for calls to fail and recoveries to run.
    const absl::Time gone_until = absl::Now() + absl::Seconds(5);
    while (failed.load() < failed_before + 20 && absl::Now() < gone_until) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    EXPECT_GE(failed.load(), failed_before + 20) << "loss " << loss;
    faults.Clear();
    faults.Delay("*", 1);
    EXPECT_TRUE(signed_after(signed_ok.load(), 20))
        << "signing resumes after loss " << loss;
  }
  stop = true;
  for (auto& t : signers) t.join();
  faults.Clear();
  std::cout << "signatures " << signed_ok.load() << ", failed calls " << failed.load()
            << ", C_Finalize " << faults.Calls("C_Finalize") << ", C_Initialize "
            << faults.Calls("C_Initialize") << ", overlaps " << faults.LifecycleOverlaps()
            << "\n";

  EXPECT_EQ(faults.LifecycleOverlaps(), 0u)
      << "C_Initialize or C_Finalize ran while another call was inside the module";
  EXPECT_GT(faults.Calls("C_Finalize"), 0u) << "the losses made the store re-initialise";
  EXPECT_EQ(bad_signatures.load(), 0u);
  EXPECT_THAT(store->Sign(key.key_id, alg, "after", {}), IsOk());
  EXPECT_EQ(store->Sessions().in_use, 0);
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
