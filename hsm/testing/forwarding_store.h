// A KeyStore that forwards every call to another, for tests that observe or delay some
// calls of a real store (override only those). Does not own the store it forwards to,
// which must outlive it; as thread-safe as that store.
#ifndef OFFKEY_HSM_TESTING_FORWARDING_STORE_H_
#define OFFKEY_HSM_TESTING_FORWARDING_STORE_H_

#include <string>
#include <vector>

#include "hsm/key_store.h"

namespace offkey::hsm::testing {

class ForwardingStore : public hsm::KeyStore {
 public:
  explicit ForwardingStore(hsm::KeyStore* real) : real_(real) {}

  absl::StatusOr<hsm::KeyInfo> GenerateKey(absl::string_view n,
                                           hsm::KeyAlgorithm a) override {
    BeforeCall();
    return real_->GenerateKey(n, a);
  }
  absl::StatusOr<hsm::KeyInfo> ImportKey(absl::string_view n,
                                         const SecretBytes& k) override {
    BeforeCall();
    return real_->ImportKey(n, k);
  }
  absl::StatusOr<hsm::KeyInfo> FindKey(const hsm::KeyLookup& l) override {
    BeforeCall();
    return real_->FindKey(l);
  }
  absl::StatusOr<std::vector<hsm::KeyInfo>> ListKeys() override {
    BeforeCall();
    return real_->ListKeys();
  }
  absl::Status DestroyKey(absl::string_view id) override {
    BeforeCall();
    return real_->DestroyKey(id);
  }
  absl::Status PutCertificateChain(absl::string_view id,
                                   absl::Span<const std::string> c) override {
    BeforeCall();
    return real_->PutCertificateChain(id, c);
  }
  absl::StatusOr<std::vector<std::string>> GetCertificateChain(
      absl::string_view id) override {
    BeforeCall();
    return real_->GetCertificateChain(id);
  }
  absl::Status PutMetadata(absl::string_view id, absl::string_view m) override {
    BeforeCall();
    return real_->PutMetadata(id, m);
  }
  absl::StatusOr<std::string> GetMetadata(absl::string_view id) override {
    BeforeCall();
    return real_->GetMetadata(id);
  }
  absl::StatusOr<std::string> Sign(absl::string_view id, hsm::SignAlgorithm a,
                                   absl::string_view m,
                                   const hsm::CallOptions& o) override {
    BeforeCall();
    return real_->Sign(id, a, m, o);
  }
  absl::StatusOr<SecretBytes> RsaDecryptRaw(absl::string_view id, absl::string_view c,
                                            const hsm::CallOptions& o) override {
    BeforeCall();
    return real_->RsaDecryptRaw(id, c, o);
  }
  absl::StatusOr<SecretBytes> HmacWithStoreSecret(absl::string_view d,
                                                  const hsm::CallOptions& o) override {
    BeforeCall();
    return real_->HmacWithStoreSecret(d, o);
  }
  absl::StatusOr<hsm::TicketKeySetInfo> CreateTicketKeySet(absl::string_view n,
                                                           absl::Duration p) override {
    BeforeCall();
    return real_->CreateTicketKeySet(n, p);
  }
  absl::StatusOr<std::vector<hsm::TicketKeySetInfo>> ListTicketKeySets() override {
    BeforeCall();
    return real_->ListTicketKeySets();
  }
  absl::StatusOr<hsm::TicketKeySetInfo> FindTicketKeySet(absl::string_view n) override {
    BeforeCall();
    return real_->FindTicketKeySet(n);
  }
  absl::Status DestroyTicketKeySet(absl::string_view n) override {
    BeforeCall();
    return real_->DestroyTicketKeySet(n);
  }
  absl::StatusOr<SecretBytes> DeriveTicketEpochSecret(
      absl::string_view n, int64_t e, const hsm::CallOptions& o) override {
    BeforeCall();
    return real_->DeriveTicketEpochSecret(n, e, o);
  }
  absl::Status CheckHealth() override {
    BeforeCall();
    return real_->CheckHealth();
  }
  SessionUse Sessions() const override { return real_->Sessions(); }

 protected:
  // Runs before every forwarded call except Sessions(), on the calling thread (a hook
  // for counting or gating every call without overriding each method).
  virtual void BeforeCall() {}

 private:
  hsm::KeyStore* const real_;
};

}  // namespace offkey::hsm::testing

#endif  // OFFKEY_HSM_TESTING_FORWARDING_STORE_H_
