// Capabilities: what a PKCS#11 token can do for offkey, read once from its mechanism
// list, so that a module lacking something (Ed25519, a key size, raw RSA) is refused
// with a clear error naming the module and what it lacks, before the module is asked.
#ifndef OFFKEY_HSM_PKCS11_CAPABILITIES_H_
#define OFFKEY_HSM_PKCS11_CAPABILITIES_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hsm/key_types.h"
#include "hsm/pkcs11/pkcs11.h"

namespace offkey::hsm::pkcs11 {

class Capabilities {
 public:
  using MechanismMap = absl::flat_hash_map<CK_MECHANISM_TYPE, CK_MECHANISM_INFO>;

  // Reads C_GetInfo and the mechanism list of `slot` (C_GetMechanismList, then
  // C_GetMechanismInfo for each). Modules known to get an algorithm wrong although they
  // list its mechanisms are recognised by C_GetInfo and refused that algorithm:
  // tpm2-pkcs11 (1.9) drops leading zero bytes from P-521 coordinates, so its P-521
  // public keys (and r, s) come back malformed about three times in four. The caller
  // holds a Module::Call. Errors: a CkRvStatus.
  static absl::StatusOr<Capabilities> Read(const CK_FUNCTION_LIST* fn, CK_SLOT_ID slot);

  // `module` names the module in messages, e.g. "SoftHSM (Implementation of PKCS11 2.6)".
  // `broken` lists key algorithms the module lists mechanisms for but gets wrong, with
  // the reason (see Read).
  // Without `imports_private_keys`, ImportKey is refused (see CanImport).
  Capabilities(std::string module, MechanismMap mechanisms,
               absl::flat_hash_map<KeyAlgorithm, std::string> broken = {},
               bool imports_private_keys = true)
      : module_(std::move(module)),
        mechanisms_(std::move(mechanisms)),
        broken_(std::move(broken)),
        imports_private_keys_(imports_private_keys) {}

  const std::string& module() const { return module_; }

  // OK if keys of `algorithm` can be generated on the token and signed with.
  // UNIMPLEMENTED otherwise, naming the module and the missing mechanism or key size.
  absl::Status CanGenerate(KeyAlgorithm algorithm) const;
  // OK if keys of `algorithm` stored by other means (import) can sign. UNIMPLEMENTED
  // otherwise, as CanGenerate.
  absl::Status CanSign(KeyAlgorithm algorithm) const;
  // OK if a private key of `algorithm` given to the store (PKCS#8) can be stored with
  // C_CreateObject and signed with. UNIMPLEMENTED otherwise: as CanSign, or because the
  // module takes no private key objects at all (tpm2-pkcs11 1.9, recognised by
  // C_GetInfo: its keys must be made in the TPM).
  absl::Status CanImport(KeyAlgorithm algorithm) const;
  // OK if the raw RSA private operation (CKM_RSA_X_509 decryption, for TLS 1.2 RSA key
  // exchange) works with RSA keys of `algorithm`; UNIMPLEMENTED otherwise.
  absl::Status CanDecryptRaw(KeyAlgorithm algorithm) const;
  // OK if the store secret can be used (CKM_SHA256_HMAC) and, with `generate`, made on
  // the token (CKM_GENERIC_SECRET_KEY_GEN). FAILED_PRECONDITION otherwise: offkey
  // cannot serve TLS 1.2 RSA key exchange safely without it, so the store refuses to
  // start; the message says how to provision the secret instead.
  absl::Status CanUseStoreSecret(bool generate, absl::string_view label) const;
  // OK if ticket-key sets can be made on the token: their root secrets are generated
  // there (CKM_GENERIC_SECRET_KEY_GEN) and used with CKM_SHA256_HMAC. UNIMPLEMENTED
  // otherwise, naming the module and what it lacks (tpm2-pkcs11 1.9 generates no secret
  // keys).
  absl::Status CanMakeTicketKeySets() const;

  // One line for start-up logs and errors: which key algorithms work, which do not and
  // why, e.g. "rsa-2048 rsa-3072 ec-p256 ...; lacks ed25519 (no CKM_EDDSA)".
  std::string Summary() const;

 private:
  // Whether the module lists `mechanism` with `flag` (CKF_SIGN, CKF_GENERATE, ...).
  bool Lists(CK_MECHANISM_TYPE mechanism, CK_FLAGS flag) const;
  // OK if `mechanism` is listed with `flag` and, when `bits` > 0, takes keys of that
  // size; UNIMPLEMENTED "<module> ... <what>" otherwise.
  absl::Status Need(CK_MECHANISM_TYPE mechanism, absl::string_view mechanism_name,
                    CK_FLAGS flag, int bits, KeyAlgorithm algorithm) const;

  std::string module_;
  MechanismMap mechanisms_;
  absl::flat_hash_map<KeyAlgorithm, std::string> broken_;
  bool imports_private_keys_;
};

}  // namespace offkey::hsm::pkcs11

#endif  // OFFKEY_HSM_PKCS11_CAPABILITIES_H_
