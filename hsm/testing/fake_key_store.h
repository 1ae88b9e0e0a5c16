// FakeKeyStore: a KeyStore in memory, with software keys (OpenSSL), for tests of code
// that sits above the store. It keeps the contracts of hsm/key_store.h as the PKCS#11
// store does (it passes the same conformance suite, hsm/testing/key_store_conformance.h)
// and lets a test make any method fail or slow down, in the manner of LevelDB's
// EnvWrapper fault injection:
//
//   auto store = FakeKeyStore::Create();
//   using M = FakeKeyStore::Method;
//   store->Fail(M::kSign, absl::UnavailableError("HSM gone"));     // every Sign
//   store->FailCall(M::kRsaDecryptRaw, 2, absl::InternalError(""));  // only the 2nd
//   store->SetLatency(M::kSign, absl::Milliseconds(50));
//   ... EXPECT_EQ(store->CallCount(M::kSign), 3);
//   store->Clear(M::kSign);
//   store->SetHealthy(false);  // every method UNAVAILABLE, as a removed token
//
// Faults and latency only change what a call returns and when: a failed call has no
// effect on the keys. Not for production: private keys are plain OpenSSL EVP_PKEYs in
// this process's memory (freed, and so wiped, with the key).
//
// Thread-safe, including the fault controls while other threads call the store.
#ifndef OFFKEY_HSM_TESTING_FAKE_KEY_STORE_H_
#define OFFKEY_HSM_TESTING_FAKE_KEY_STORE_H_

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "hsm/key_store.h"

namespace offkey::hsm::testing {

class FakeKeyStore final : public KeyStore {
 public:
  // The KeyStore methods, for fault injection and call counts.
  enum class Method {
    kGenerateKey,
    kImportKey,
    kFindKey,
    kListKeys,
    kDestroyKey,
    kPutCertificateChain,
    kGetCertificateChain,
    kPutMetadata,
    kGetMetadata,
    kSign,
    kRsaDecryptRaw,
    kHmacWithStoreSecret,
    kCreateTicketKeySet,
    kListTicketKeySets,
    kFindTicketKeySet,
    kDestroyTicketKeySet,
    kDeriveTicketEpochSecret,
    kCheckHealth,
  };
  static constexpr int kMethodCount = static_cast<int>(Method::kCheckHealth) + 1;
  // "kSign", ... for test messages.
  static absl::string_view MethodName(Method method);

  // An empty store with a store secret of its own.
  static std::unique_ptr<FakeKeyStore> Create();

  // Another store over the same keys, chains, metadata, store secret and ticket-key
  // sets, as a second
  // process in front of one HSM: changes through either are seen by both. It has its
  // own faults, latencies, health and call counts. Either may outlive the other.
  std::unique_ptr<FakeKeyStore> OpenAnother() const;

  // --- Fault injection. `n` counts calls of `method` made after this call: 1 is the
  // next. A later Fail* for a method replaces its earlier one. `status` must not be OK.

  // Every call of `method` returns `status` instead of doing its work.
  void Fail(Method method, absl::Status status);
  // The `n`th call of `method` from now, and every later one, return `status`.
  void FailFromCall(Method method, int n, absl::Status status);
  // Only the `n`th call of `method` from now returns `status`.
  void FailCall(Method method, int n, absl::Status status);
  // Every call of `method` first sleeps `latency` (absl::SleepFor; the call's deadline
  // is not consulted). Zero removes it.
  void SetLatency(Method method, absl::Duration latency);
  // Removes the fault and the latency of `method`; of every method for ClearAll.
  void Clear(Method method);
  void ClearAll();

  // While false, every method (CheckHealth too) returns UNAVAILABLE, as the PKCS#11
  // store does for a removed token; per-method faults apply again once true. Latency
  // still applies. Starts true.
  void SetHealthy(bool healthy);

  // Calls of `method` since this store was made, whether they failed or not.
  int CallCount(Method method) const;

  // --- KeyStore.
  absl::StatusOr<KeyInfo> GenerateKey(absl::string_view name,
                                      KeyAlgorithm algorithm) override;
  absl::StatusOr<KeyInfo> ImportKey(absl::string_view name,
                                    const SecretBytes& pkcs8_der) override;
  absl::StatusOr<KeyInfo> FindKey(const KeyLookup& lookup) override;
  absl::StatusOr<std::vector<KeyInfo>> ListKeys() override;
  absl::Status DestroyKey(absl::string_view key_id) override;
  absl::Status PutCertificateChain(absl::string_view key_id,
                                   absl::Span<const std::string> chain_der) override;
  absl::StatusOr<std::vector<std::string>> GetCertificateChain(
      absl::string_view key_id) override;
  absl::Status PutMetadata(absl::string_view key_id, absl::string_view metadata) override;
  absl::StatusOr<std::string> GetMetadata(absl::string_view key_id) override;
  absl::StatusOr<std::string> Sign(absl::string_view key_id, SignAlgorithm algorithm,
                                   absl::string_view message,
                                   const CallOptions& options) override;
  absl::StatusOr<SecretBytes> RsaDecryptRaw(absl::string_view key_id,
                                            absl::string_view ciphertext,
                                            const CallOptions& options) override;
  absl::StatusOr<SecretBytes> HmacWithStoreSecret(absl::string_view data,
                                                  const CallOptions& options) override;
  // Ticket-key sets: a random 32-byte root per set, in memory; epochs are derived with
  // OpenSSL's HMAC-SHA256 over TicketEpochMessage, as the PKCS#11 store does in the HSM.
  absl::StatusOr<TicketKeySetInfo> CreateTicketKeySet(
      absl::string_view name, absl::Duration rotation_period) override;
  absl::StatusOr<std::vector<TicketKeySetInfo>> ListTicketKeySets() override;
  absl::StatusOr<TicketKeySetInfo> FindTicketKeySet(absl::string_view name) override;
  absl::Status DestroyTicketKeySet(absl::string_view name) override;
  absl::StatusOr<SecretBytes> DeriveTicketEpochSecret(
      absl::string_view name, int64_t epoch, const CallOptions& options) override;
  absl::Status CheckHealth() override;

 private:
  struct Backing;  // The keys and the store secret; shared by OpenAnother.

  // What a test set for one method. Calls numbered first..last (1-based, counted
  // since the store was made) fail with `status`.
  struct Fault {
    absl::Status status;
    int first = 0;
    int last = 0;
    absl::Duration latency;
  };

  explicit FakeKeyStore(std::shared_ptr<Backing> backing);
  // Counts the call, sleeps any latency, and returns the status the call must return
  // instead of doing its work (OK: do the work).
  absl::Status Enter(Method method);
  void SetFault(Method method, int from_now, int to_now, absl::Status status);

  const std::shared_ptr<Backing> backing_;
  mutable offkey::Mutex mu_;
  std::array<Fault, kMethodCount> faults_ ABSL_GUARDED_BY(mu_);
  std::array<int, kMethodCount> calls_ ABSL_GUARDED_BY(mu_) = {};
  bool healthy_ ABSL_GUARDED_BY(mu_) = true;
};

}  // namespace offkey::hsm::testing

#endif  // OFFKEY_HSM_TESTING_FAKE_KEY_STORE_H_
