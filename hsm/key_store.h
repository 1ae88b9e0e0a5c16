// KeyStore: everything offkeyd needs from a key store. The PKCS#11 implementation lives
// in hsm/pkcs11; tests can put a fake behind the same interface.
#ifndef OFFKEY_HSM_KEY_STORE_H_
#define OFFKEY_HSM_KEY_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "base/secret_bytes.h"
#include "hsm/key_types.h"

namespace offkey::hsm {

// Public facts about a key. Never holds private material.
struct KeyInfo {
  std::string name;    // CKA_LABEL; unique within a store.
  std::string key_id;  // CKA_ID bytes; for keys offkey makes, equal to `ski`.
  std::string ski;     // SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2).
  KeyAlgorithm algorithm = KeyAlgorithm::kUnknown;
  std::string public_key_spki;  // DER SubjectPublicKeyInfo.
};

// A ticket-key set: a root secret on the token (sensitive, never extractable) from
// which each rotation epoch's ticket key is derived. Holds no secret material.
struct TicketKeySetInfo {
  std::string name;  // Unique among sets; sets and keys have separate names.
  absl::Duration rotation_period;
  absl::Time create_time;
};

// How to find a key: exactly one field set. `cert_sha256` lookups belong to the caller
// (it reads certificates); the store finds by what it indexes.
struct KeyLookup {
  enum class By { kName, kKeyId, kSki };
  By by = By::kName;
  std::string value;

  static KeyLookup Name(absl::string_view v) { return {By::kName, std::string(v)}; }
  static KeyLookup KeyId(absl::string_view v) { return {By::kKeyId, std::string(v)}; }
  static KeyLookup Ski(absl::string_view v) { return {By::kSki, std::string(v)}; }
};

// Per-call options. The deadline bounds the wait for a free HSM session; an operation
// already running in the HSM is not interrupted.
struct CallOptions {
  absl::Time deadline = absl::InfiniteFuture();
};

// Status codes, shared by every implementation so callers can branch on them:
//   NOT_FOUND           no key (or object) matches
//   ALREADY_EXISTS      a key with that name exists
//   INVALID_ARGUMENT    input of the wrong size or shape, or an algorithm the key lacks
//   UNIMPLEMENTED       the module lacks the mechanism (for example Ed25519, P-521)
//   DEADLINE_EXCEEDED   no session became free before the deadline
//   UNAVAILABLE         the token is absent or unusable, or failed the call for a reason
//                       of its own; retrying later may succeed
//   PERMISSION_DENIED   the token refused the PIN
//   INTERNAL            the module misbehaved, or was misused
//
// Implementations are thread-safe.
class KeyStore {
 public:
  virtual ~KeyStore() = default;

  // Generates a key pair inside the store: private part sensitive, never extractable.
  virtual absl::StatusOr<KeyInfo> GenerateKey(absl::string_view name,
                                              KeyAlgorithm algorithm) = 0;

  // Stores a private key given as DER PKCS#8 (unencrypted) with the same protections as
  // a generated key. The caller wipes its copy; the store keeps none in memory.
  virtual absl::StatusOr<KeyInfo> ImportKey(absl::string_view name,
                                            const SecretBytes& pkcs8_der) = 0;

  virtual absl::StatusOr<KeyInfo> FindKey(const KeyLookup& lookup) = 0;
  virtual absl::StatusOr<std::vector<KeyInfo>> ListKeys() = 0;

  // Destroys the key pair and every object stored beside it (certificates, metadata).
  virtual absl::Status DestroyKey(absl::string_view key_id) = 0;

  // Replaces the certificate chain stored beside the key (DER, leaf first). An empty
  // chain removes it. The store does not check that the leaf matches; callers do.
  virtual absl::Status PutCertificateChain(absl::string_view key_id,
                                           absl::Span<const std::string> chain_der) = 0;
  // The stored chain, leaf first; empty when none is stored.
  virtual absl::StatusOr<std::vector<std::string>> GetCertificateChain(
      absl::string_view key_id) = 0;

  // Replaces the opaque metadata blob stored beside the key (offkeyd keeps labels,
  // usage and state there). NOT_FOUND from GetMetadata when none is stored.
  virtual absl::Status PutMetadata(absl::string_view key_id,
                                   absl::string_view metadata) = 0;
  virtual absl::StatusOr<std::string> GetMetadata(absl::string_view key_id) = 0;

  // Signs `message` (unhashed; the store hashes unless the algorithm is EdDSA). Returns
  // the signature in TLS wire form: PKCS#1/PSS bytes of modulus size, DER ECDSA, raw
  // 64-byte Ed25519. INVALID_ARGUMENT when `algorithm` does not fit the key.
  virtual absl::StatusOr<std::string> Sign(absl::string_view key_id,
                                           SignAlgorithm algorithm,
                                           absl::string_view message,
                                           const CallOptions& options) = 0;

  // The raw RSA private operation (c^d mod n), for the TLS 1.2 premaster path only:
  // padding is the caller's to check, in constant time. `ciphertext` must be exactly the
  // modulus size and less than the modulus (INVALID_ARGUMENT otherwise; callers pad
  // shorter encodings). The result has modulus size, also from modules that drop leading
  // zero bytes (re-aligned in time independent of how many: hsm/right_align.h).
  virtual absl::StatusOr<SecretBytes> RsaDecryptRaw(absl::string_view key_id,
                                                    absl::string_view ciphertext,
                                                    const CallOptions& options) = 0;

  // HMAC-SHA256 of `data` under a secret key that lives in the store, created on first
  // use and shared by every process using the store. Backs the deterministic premaster
  // substitute, so every replica in front of one HSM answers alike.
  virtual absl::StatusOr<SecretBytes> HmacWithStoreSecret(absl::string_view data,
                                                          const CallOptions& options) = 0;

  // Ticket-key sets. The defaults answer UNIMPLEMENTED for stores without them.
  // Creates the set's root secret in the store (generated there: sensitive, never
  // extractable) and records its rotation period and creation time beside it.
  virtual absl::StatusOr<TicketKeySetInfo> CreateTicketKeySet(
      absl::string_view name, absl::Duration rotation_period) {
    return Unimplemented("ticket-key sets");
  }
  virtual absl::StatusOr<std::vector<TicketKeySetInfo>> ListTicketKeySets() {
    return Unimplemented("ticket-key sets");
  }
  // NOT_FOUND when there is no set of that name.
  virtual absl::StatusOr<TicketKeySetInfo> FindTicketKeySet(absl::string_view name) {
    return Unimplemented("ticket-key sets");
  }
  // Destroys the root secret and everything stored beside it. NOT_FOUND if absent.
  virtual absl::Status DestroyTicketKeySet(absl::string_view name) {
    return Unimplemented("ticket-key sets");
  }
  // The 32-byte secret of one epoch of a set, computed inside the store from the set's
  // root secret, the set name and the epoch, so every process on one token gets the
  // same bytes. NOT_FOUND when there is no set of that name.
  virtual absl::StatusOr<SecretBytes> DeriveTicketEpochSecret(
      absl::string_view name, int64_t epoch, const CallOptions& options) {
    return Unimplemented("ticket-key sets");
  }

  // OK while the store can serve operations; UNAVAILABLE with the reason otherwise.
  // Cheap enough for a readiness probe.
  virtual absl::Status CheckHealth() = 0;

  // Sessions (concurrent operations) in use now and at most, for metrics. Stores
  // without a session pool report {0, 0}.
  struct SessionUse {
    int in_use = 0;
    int max = 0;
  };
  virtual SessionUse Sessions() const { return {}; }

 private:
  static absl::Status Unimplemented(absl::string_view what) {
    return absl::UnimplementedError(absl::StrCat("this key store has no ", what));
  }
};

}  // namespace offkey::hsm

#endif  // OFFKEY_HSM_KEY_STORE_H_
