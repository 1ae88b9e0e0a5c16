// Pkcs11KeyStore: KeyStore over any PKCS#11 v2.40 module (SoftHSM2 in development).
#ifndef OFFKEY_HSM_PKCS11_PKCS11_KEY_STORE_H_
#define OFFKEY_HSM_PKCS11_PKCS11_KEY_STORE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "base/mutex.h"
#include "hsm/key_store.h"
#include "hsm/pkcs11/capabilities.h"
#include "hsm/pkcs11/object_io.h"
#include "hsm/pkcs11/token.h"

namespace offkey::hsm::pkcs11 {

// Objects on the token, all sharing the key's CKA_ID:
//   CKO_PRIVATE_KEY  label = name; sensitive, never extractable; sign (and decrypt, RSA)
//   CKO_PUBLIC_KEY   label = name
//   CKO_CERTIFICATE  X.509; label = name for the leaf, "name/1", "name/2"... above it
//   CKO_DATA         application "offkey-metadata", label = name (see PutMetadata)
// plus one CKO_SECRET_KEY labelled "offkey-premaster-substitute-v1" (HMAC-SHA256).
//
// Each ticket-key set (hsm/ticket_keys.h) is two objects labelled
// "offkey-ticket-keys/<name>" (key labels cannot hold '/', so the two never meet):
//   CKO_SECRET_KEY  the root: CKK_GENERIC_SECRET, 32 bytes, generated in the token,
//                   private, sensitive, never extractable, CKA_SIGN only (HMAC-SHA256);
//                   CKA_ID = 16 random bytes
//   CKO_DATA        application "offkey-ticket-key-set", private; CKA_VALUE the record:
//                   0x01 || root CKA_ID (16) || rotation period in seconds (8) ||
//                   creation time in Unix seconds (8), integers big-endian
// Data objects take no CKA_ID everywhere (opencryptoki refuses CKA_OBJECT_ID), so the
// record names its root's id. A set exists while both are on the token. The record is
// made before the root and destroyed after it, so no process sees half a set; parts
// left alone by a crash are ignored and removed by the next DestroyTicketKeySet of the
// name. Should two processes create one name at once, every store uses the earliest
// made (then smallest CKA_ID), and the other creator undoes its own and reports
// ALREADY_EXISTS.
//
// Object handles (keys, ticket roots) are cached and dropped when the token is
// re-established.
// Thread-safe; concurrency is bounded by the token's session pool.
class Pkcs11KeyStore final : public KeyStore {
 public:
  // Opens the token, reads what its module can do (Capabilities) and finds or makes
  // the store secret. FAILED_PRECONDITION if the module cannot provide the store secret
  // (see Capabilities::CanUseStoreSecret); Token::Open's errors otherwise.
  static absl::StatusOr<std::unique_ptr<Pkcs11KeyStore>> Create(
      const TokenOptions& options);

  // What the module can do, read once by Create. GenerateKey, ImportKey and
  // RsaDecryptRaw refuse what it lacks with UNIMPLEMENTED before calling the module;
  // Summary() is meant for start-up logs.
  const Capabilities& capabilities() const { return capabilities_; }

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
  // UNIMPLEMENTED when the module cannot generate secret keys or do HMAC-SHA256
  // (Capabilities::CanMakeTicketKeySets).
  absl::StatusOr<TicketKeySetInfo> CreateTicketKeySet(
      absl::string_view name, absl::Duration rotation_period) override;
  absl::StatusOr<std::vector<TicketKeySetInfo>> ListTicketKeySets() override;
  absl::StatusOr<TicketKeySetInfo> FindTicketKeySet(absl::string_view name) override;
  absl::Status DestroyTicketKeySet(absl::string_view name) override;
  // HMAC-SHA256 (CKM_SHA256_HMAC, in the token) under the set's root over
  // TicketEpochMessage(name, epoch).
  absl::StatusOr<SecretBytes> DeriveTicketEpochSecret(
      absl::string_view name, int64_t epoch, const CallOptions& options) override;
  absl::Status CheckHealth() override;
  SessionUse Sessions() const override {
    return {token_->sessions_in_use(), token_->max_sessions()};
  }

  // The token underneath, for tests and benchmarks that drive PKCS#11 directly (to
  // read attributes, log out, close sessions). Production code goes through the store.
  Token& TokenForTest() { return *token_; }

 private:
  // What a private-key operation needs, cached per key id.
  struct KeyHandle {
    CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
    KeyAlgorithm algorithm = KeyAlgorithm::kUnknown;
    std::string modulus;  // RSA only, big-endian, for the size and range checks.
    uint64_t epoch = 0;
  };

  // A ticket-key set found on the token (both parts present).
  struct TicketSetObjects {
    TicketKeySetInfo info;
    CK_OBJECT_HANDLE root = CK_INVALID_HANDLE;
    std::string root_id;
  };
  // A set's root, cached per set name.
  struct TicketRootHandle {
    CK_OBJECT_HANDLE object = CK_INVALID_HANDLE;
    std::string id;
    uint64_t epoch = 0;
  };

  Pkcs11KeyStore(std::unique_ptr<Token> token, Capabilities capabilities)
      : token_(std::move(token)), capabilities_(std::move(capabilities)) {}

  // The helpers below run inside Token::Run: a failed PKCS#11 call is a status carrying
  // its CK_RV (CkRvStatus), which Run may recover from; other failures (NOT_FOUND,
  // FAILED_PRECONDITION, ...) are plain statuses that Run returns as they are.
  //
  // Finds the private key with CKA_ID `key_id`, from the cache unless `fresh`.
  // NOT_FOUND if there is none, FAILED_PRECONDITION if several.
  absl::Status ResolveKey(CK_SESSION_HANDLE session, absl::string_view key_id, bool fresh,
                          KeyHandle* out);
  // Whether `object` still exists with CKA_ID `key_id` (for modules that reuse handles).
  bool StillNames(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                  absl::string_view key_id);
  // Replaces the objects `find` selects beside the key `key_id` with those `create`
  // makes (given the key's label): new objects first, then the old ones destroyed, so a
  // failure in between leaves both, never neither. Errors as ResolveKey and `create`.
  // Objects `also_find` selects, if given, are replaced too.
  absl::Status ReplaceObjects(
      CK_SESSION_HANDLE session, absl::string_view key_id, Template& find,
      const std::function<absl::Status(const std::string& key_name)>& create,
      Template* also_find = nullptr);
  // Finds the store secret, creating it when `create` and it does not exist; with
  // !create, *out is CK_INVALID_HANDLE when there is none.
  absl::Status ResolveHmacKey(CK_SESSION_HANDLE session, bool fresh, bool create,
                              CK_OBJECT_HANDLE* out);
  // Whether the store secret is visible on the token (it always exists once Create
  // returned): a token whose storage vanished shows a logged-in session but no objects.
  absl::Status CheckStoreSecretVisible();
  // UNAVAILABLE: the store secret, made by Create, is no longer on the token.
  absl::Status StoreSecretGone() const;
  // Public description of the private key `object`. Without a CK_RV payload: the key
  // cannot be described (a type offkey does not use, no public key object, ...).
  absl::Status Describe(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, KeyInfo* out);
  absl::StatusOr<KeyInfo> StoreKeyPair(
      absl::string_view name, KeyAlgorithm algorithm, const std::string& spki,
      absl::FunctionRef<void(Template&, Template&)> add_components);
  void Forget(absl::string_view key_id);
  // The ticket-key sets on the token (only `name`'s unless empty), one per name as the
  // class comment says, in *sets; with `parts`, every object of those names (roots
  // before records, whole sets or not). Errors: CkRvStatus.
  absl::Status FindTicketSets(CK_SESSION_HANDLE session, absl::string_view name,
                              std::vector<TicketSetObjects>* sets,
                              std::vector<CK_OBJECT_HANDLE>* parts = nullptr);
  // The one set named `name`. NOT_FOUND if there is none (a CkRvStatus that Run
  // recovers from if the session is not logged in).
  absl::Status FindTicketSet(CK_SESSION_HANDLE session, absl::string_view name,
                             TicketSetObjects* out);
  // The root of set `name`, from the cache unless `fresh`. Errors as FindTicketSet.
  absl::Status ResolveTicketRoot(CK_SESSION_HANDLE session, absl::string_view name,
                                 bool fresh, TicketRootHandle* out);
  void ForgetTicketRoot(absl::string_view name);
  // OK if no key is named `name`; ALREADY_EXISTS if one is.
  absl::Status CheckNameFree(absl::string_view name);

  std::unique_ptr<Token> token_;
  const Capabilities capabilities_;
  // Set once the module refused CKA_OBJECT_ID on a metadata object and took the other
  // form (see MetadataSelectorByApplication); later writes use that form at once.
  std::atomic<bool> metadata_by_application_{false};
  offkey::Mutex mu_;
  absl::flat_hash_map<std::string, KeyHandle> handles_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, TicketRootHandle> ticket_roots_ ABSL_GUARDED_BY(mu_);
  CK_OBJECT_HANDLE hmac_key_ ABSL_GUARDED_BY(mu_) = CK_INVALID_HANDLE;
  uint64_t hmac_epoch_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace offkey::hsm::pkcs11

#endif  // OFFKEY_HSM_PKCS11_PKCS11_KEY_STORE_H_
