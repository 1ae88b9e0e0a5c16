// One conformance suite for every KeyStore: what hsm/key_store.h promises, checked with
// OpenSSL and known answers. A store's test instantiates both fixtures with a factory:
//
//   const KeyStoreFactory kFake{"Fake", [] { ... }, ...};
//   INSTANTIATE_TEST_SUITE_P(Fake, KeyStoreConformanceTest, ::testing::Values(kFake),
//                            KeyStoreFactoryName);
//   INSTANTIATE_TEST_SUITE_P(Fake, KeyStoreConformanceKeyTest,
//                            ::testing::Combine(::testing::Values(kFake),
//                                               ::testing::ValuesIn(kAllKeyAlgorithms)),
//                            KeyStoreFactoryAndKeyName);
//
// The test binary needs data = ["//testdata:wycheproof"]. Tests that only make sense
// for one store (PKCS#11 attributes, PINs, sessions, recovery) stay in its own test.
#ifndef OFFKEY_HSM_TESTING_KEY_STORE_CONFORMANCE_H_
#define OFFKEY_HSM_TESTING_KEY_STORE_CONFORMANCE_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "hsm/key_store.h"

namespace offkey::hsm::testing {

struct KeyStoreFactory {
  // Names the instantiation in test names: letters, digits and '_'.
  std::string name;
  // A fresh, empty store on a backing of its own (for PKCS#11, a new token).
  std::function<absl::StatusOr<std::unique_ptr<KeyStore>>()> make;
  // Optional: another store over the backing of `store` (made by `make`), as a second
  // process in front of one HSM would see it. Tests that need it skip without it.
  std::function<absl::StatusOr<std::unique_ptr<KeyStore>>(KeyStore& store)> open_another;
  // Key algorithms the store must refuse because its module lacks them (Ed25519 on
  // tpm2-pkcs11, EC on opencryptoki 3.8). For each, the suite checks that GenerateKey
  // and ImportKey fail with UNIMPLEMENTED naming the algorithm and containing
  // `refusal_mentions` (the module's name), and that nothing is stored; the store-wide
  // tests use other algorithms instead.
  std::vector<KeyAlgorithm> refused;
  std::string refusal_mentions;
  // Whether ImportKey is refused for every algorithm (UNIMPLEMENTED containing
  // `refusal_mentions`): modules that cannot store private keys made elsewhere.
  bool refuses_import = false;
  // Why the store cannot make ticket-key sets (empty when it can): then
  // CreateTicketKeySet must fail with UNIMPLEMENTED containing `refusal_mentions`, and
  // the other ticket-key set tests skip, naming this reason.
  std::string ticket_sets_refused;
};

// Every key algorithm offkey stores.
inline constexpr KeyAlgorithm kAllKeyAlgorithms[] = {
    KeyAlgorithm::kRsa2048, KeyAlgorithm::kRsa3072, KeyAlgorithm::kRsa4096,
    KeyAlgorithm::kEcP256,  KeyAlgorithm::kEcP384,  KeyAlgorithm::kEcP521,
    KeyAlgorithm::kEd25519,
};

// Test name generators for INSTANTIATE_TEST_SUITE_P.
std::string KeyStoreFactoryName(const ::testing::TestParamInfo<KeyStoreFactory>& info);
std::string KeyStoreFactoryAndKeyName(
    const ::testing::TestParamInfo<std::tuple<KeyStoreFactory, KeyAlgorithm>>& info);

// gtest prints a parameter with this (its name) when a test fails.
void PrintTo(const KeyStoreFactory& factory, std::ostream* os);

// Shared by both fixtures: the store under test, made fresh for every test.
class KeyStoreConformanceBase {
 protected:
  // Makes store_ with `factory.make`; fails the test (fatally) if that fails.
  void MakeStore(const KeyStoreFactory& factory);
  // Signs a random message with every scheme the key's family has and checks each
  // signature with OpenSSL (and that it fails for another message).
  void SignAndVerifyAll(const KeyInfo& key);
  // Whether the store under test is expected to refuse `algorithm`.
  bool Refused(KeyAlgorithm algorithm) const;
  // Checks that `algorithm` is refused as KeyStoreFactory::refused says.
  void ExpectRefused(KeyAlgorithm algorithm);
  // The algorithm store-wide tests make keys of: P-256 unless refused, else RSA-2048;
  // and a second, different one the store supports.
  KeyAlgorithm Everyday() const;
  // Empty if the store can make ticket-key sets; otherwise the reason tests skip with.
  std::string NoTicketSets() const;
  KeyAlgorithm Another() const;

  KeyStoreFactory factory_;
  std::unique_ptr<KeyStore> store_;
};

// Store-wide tests, once per store.
class KeyStoreConformanceTest : public KeyStoreConformanceBase,
                                public ::testing::TestWithParam<KeyStoreFactory> {
 protected:
  void SetUp() override { MakeStore(GetParam()); }
};

// Tests run once per store and key algorithm.
class KeyStoreConformanceKeyTest
    : public KeyStoreConformanceBase,
      public ::testing::TestWithParam<std::tuple<KeyStoreFactory, KeyAlgorithm>> {
 protected:
  void SetUp() override { MakeStore(std::get<0>(GetParam())); }
  KeyAlgorithm algorithm() const { return std::get<1>(GetParam()); }
};

}  // namespace offkey::hsm::testing

#endif  // OFFKEY_HSM_TESTING_KEY_STORE_CONFORMANCE_H_
