// A Pkcs11KeyStore that keeps the test token it was made on, so that a conformance
// factory's open_another can open a second store on the same token.
#ifndef OFFKEY_HSM_PKCS11_TESTING_TOKEN_STORE_H_
#define OFFKEY_HSM_PKCS11_TESTING_TOKEN_STORE_H_

#include <memory>
#include <utility>

#include "base/status_macros.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/testing/forwarding_store.h"

namespace offkey::hsm::pkcs11::testing {

// TestToken: SoftHsmToken, OpencryptokiToken, Tpm2Token (anything with Options()).
template <typename TestToken>
class TokenStore : public hsm::testing::ForwardingStore {
 public:
  TokenStore(TestToken token, std::unique_ptr<Pkcs11KeyStore> store)
      : ForwardingStore(store.get()),
        token_(std::move(token)),
        store_(std::move(store)) {}

  // A new token from TestToken::Create() and a store on it.
  static absl::StatusOr<std::unique_ptr<KeyStore>> Make() {
    OFFKEY_ASSIGN_OR_RETURN(TestToken token, TestToken::Create());
    OFFKEY_ASSIGN_OR_RETURN(std::unique_ptr<Pkcs11KeyStore> store,
                            Pkcs11KeyStore::Create(token.Options()));
    return std::make_unique<TokenStore>(std::move(token), std::move(store));
  }

  // Another store on the token of `store`, which Make made.
  static absl::StatusOr<std::unique_ptr<KeyStore>> OpenAnother(KeyStore& store) {
    OFFKEY_ASSIGN_OR_RETURN(
        std::unique_ptr<Pkcs11KeyStore> other,
        Pkcs11KeyStore::Create(static_cast<TokenStore&>(store).token().Options()));
    return other;
  }

  const TestToken& token() const { return token_; }
  Pkcs11KeyStore& store() { return *store_; }

 private:
  TestToken token_;
  std::unique_ptr<Pkcs11KeyStore> store_;
};

}  // namespace offkey::hsm::pkcs11::testing

#endif  // OFFKEY_HSM_PKCS11_TESTING_TOKEN_STORE_H_
