#include "hsm/pkcs11/capabilities.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "hsm/pkcs11/ck_rv.h"

namespace offkey::hsm::pkcs11 {
namespace {

constexpr KeyAlgorithm kAlgorithms[] = {
    KeyAlgorithm::kRsa2048, KeyAlgorithm::kRsa3072, KeyAlgorithm::kRsa4096,
    KeyAlgorithm::kEcP256,  KeyAlgorithm::kEcP384,  KeyAlgorithm::kEcP521,
    KeyAlgorithm::kEd25519,
};

std::string Blank(const CK_UTF8CHAR* text, size_t size) {
  return std::string(absl::StripAsciiWhitespace(
      absl::string_view(reinterpret_cast<const char*>(text), size)));
}

}  // namespace

absl::StatusOr<Capabilities> Capabilities::Read(const CK_FUNCTION_LIST* fn,
                                                CK_SLOT_ID slot) {
  CK_INFO info;
  OFFKEY_RETURN_IF_ERROR(CkRvStatus(fn->C_GetInfo(&info), "C_GetInfo"));
  std::string module =
      absl::StrCat(Blank(info.manufacturerID, sizeof(info.manufacturerID)), " ",
                   Blank(info.libraryDescription, sizeof(info.libraryDescription)), " ",
                   static_cast<int>(info.libraryVersion.major), ".",
                   static_cast<int>(info.libraryVersion.minor));
  CK_ULONG count = 0;
  OFFKEY_RETURN_IF_ERROR(
      CkRvStatus(fn->C_GetMechanismList(slot, nullptr, &count), "C_GetMechanismList"));
  std::vector<CK_MECHANISM_TYPE> types(count);
  OFFKEY_RETURN_IF_ERROR(CkRvStatus(fn->C_GetMechanismList(slot, types.data(), &count),
                                    "C_GetMechanismList"));
  types.resize(count);
  MechanismMap mechanisms;
  for (CK_MECHANISM_TYPE type : types) {
    CK_MECHANISM_INFO mechanism;
    // A mechanism the module lists but cannot describe is one offkey cannot rely on.
    if (fn->C_GetMechanismInfo(slot, type, &mechanism) == CKR_OK) {
      mechanisms[type] = mechanism;
    }
  }
  absl::flat_hash_map<KeyAlgorithm, std::string> broken;
  bool imports_private_keys = true;
  if (Blank(info.manufacturerID, sizeof(info.manufacturerID)) ==
      "tpm2-software.github.io") {
    broken[KeyAlgorithm::kEcP521] =
        "it drops leading zero bytes from P-521 coordinates (CKA_EC_POINT)";
    imports_private_keys = false;
  }
  return Capabilities(std::move(module), std::move(mechanisms), std::move(broken),
                      imports_private_keys);
}

absl::Status Capabilities::Need(CK_MECHANISM_TYPE mechanism,
                                absl::string_view mechanism_name, CK_FLAGS flag, int bits,
                                KeyAlgorithm algorithm) const {
  auto it = mechanisms_.find(mechanism);
  if (it == mechanisms_.end() || (it->second.flags & flag) == 0) {
    return absl::UnimplementedError(
        absl::StrCat("PKCS#11 module '", module_, "' cannot do ", mechanism_name,
                     ", which ", KeyAlgorithmName(algorithm), " keys need"));
  }
  const CK_ULONG min = it->second.ulMinKeySize, max = it->second.ulMaxKeySize;
  // PKCS#11 gives RSA and EC sizes in bits. A maximum of 0 states no limit, and a few
  // modules give EC sizes in bytes (a maximum below any curve offkey uses): both are
  // left to the module to refuse.
  const bool stated = max != 0 && (FamilyOf(algorithm) != KeyFamily::kEc || max >= 256);
  if (bits > 0 && stated &&
      (static_cast<CK_ULONG>(bits) < min || static_cast<CK_ULONG>(bits) > max)) {
    return absl::UnimplementedError(absl::StrCat(
        "PKCS#11 module '", module_, "' cannot make or use ", KeyAlgorithmName(algorithm),
        " keys: its ", mechanism_name, " takes ", min, " to ", max, " bits"));
  }
  return absl::OkStatus();
}

absl::Status Capabilities::CanSign(KeyAlgorithm algorithm) const {
  if (auto it = broken_.find(algorithm); it != broken_.end()) {
    return absl::UnimplementedError(
        absl::StrCat("PKCS#11 module '", module_, "' cannot be used for ",
                     KeyAlgorithmName(algorithm), " keys: ", it->second));
  }
  const int bits = KeyBits(algorithm);
  switch (FamilyOf(algorithm)) {
    case KeyFamily::kRsa:
      OFFKEY_RETURN_IF_ERROR(
          Need(CKM_RSA_PKCS, "CKM_RSA_PKCS signing", CKF_SIGN, bits, algorithm));
      // TLS 1.3 signs with RSA only through PSS.
      return Need(CKM_RSA_PKCS_PSS, "CKM_RSA_PKCS_PSS signing", CKF_SIGN, bits,
                  algorithm);
    case KeyFamily::kEc:
      return Need(CKM_ECDSA, "CKM_ECDSA signing", CKF_SIGN, bits, algorithm);
    case KeyFamily::kEd25519:
      // Modules disagree on how to size Edwards keys (255, 256 or 32): not checked.
      return Need(CKM_EDDSA, "CKM_EDDSA signing", CKF_SIGN, 0, algorithm);
  }
  return absl::InvalidArgumentError("unknown key algorithm");
}

absl::Status Capabilities::CanGenerate(KeyAlgorithm algorithm) const {
  const int bits = KeyBits(algorithm);
  switch (FamilyOf(algorithm)) {
    case KeyFamily::kRsa:
      OFFKEY_RETURN_IF_ERROR(Need(CKM_RSA_PKCS_KEY_PAIR_GEN,
                                  "CKM_RSA_PKCS_KEY_PAIR_GEN key generation",
                                  CKF_GENERATE_KEY_PAIR, bits, algorithm));
      break;
    case KeyFamily::kEc:
      OFFKEY_RETURN_IF_ERROR(Need(CKM_EC_KEY_PAIR_GEN,
                                  "CKM_EC_KEY_PAIR_GEN key generation",
                                  CKF_GENERATE_KEY_PAIR, bits, algorithm));
      break;
    case KeyFamily::kEd25519:
      OFFKEY_RETURN_IF_ERROR(Need(CKM_EC_EDWARDS_KEY_PAIR_GEN,
                                  "CKM_EC_EDWARDS_KEY_PAIR_GEN key generation",
                                  CKF_GENERATE_KEY_PAIR, 0, algorithm));
      break;
  }
  return CanSign(algorithm);
}

absl::Status Capabilities::CanImport(KeyAlgorithm algorithm) const {
  OFFKEY_RETURN_IF_ERROR(CanSign(algorithm));
  if (!imports_private_keys_) {
    return absl::UnimplementedError(absl::StrCat(
        "PKCS#11 module '", module_, "' cannot import ", KeyAlgorithmName(algorithm),
        " keys: it creates no private key objects from outside; generate the key on "
        "the token instead"));
  }
  return absl::OkStatus();
}

absl::Status Capabilities::CanDecryptRaw(KeyAlgorithm algorithm) const {
  return Need(CKM_RSA_X_509, "CKM_RSA_X_509 (raw RSA) decryption", CKF_DECRYPT,
              KeyBits(algorithm), algorithm);
}

absl::Status Capabilities::CanUseStoreSecret(bool generate,
                                             absl::string_view label) const {
  if (!Lists(CKM_SHA256_HMAC, CKF_SIGN)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PKCS#11 module '", module_,
        "' cannot do CKM_SHA256_HMAC signing, which offkey needs for its store secret "
        "(the TLS 1.2 premaster substitute)"));
  }
  if (generate && !Lists(CKM_GENERIC_SECRET_KEY_GEN, CKF_GENERATE)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PKCS#11 module '", module_,
        "' cannot generate offkey's store secret (no CKM_GENERIC_SECRET_KEY_GEN); "
        "create an HMAC-SHA256 secret key labelled '",
        label,
        "' on the token with the module's own tool (for tpm2-pkcs11: tpm2_ptool "
        "addkey --algorithm=hmac:sha256 --key-label=",
        label, ") and start again"));
  }
  return absl::OkStatus();
}

absl::Status Capabilities::CanMakeTicketKeySets() const {
  absl::string_view lacks;
  if (!Lists(CKM_GENERIC_SECRET_KEY_GEN, CKF_GENERATE)) {
    lacks = "CKM_GENERIC_SECRET_KEY_GEN";
  } else if (!Lists(CKM_SHA256_HMAC, CKF_SIGN)) {
    lacks = "CKM_SHA256_HMAC";
  } else {
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat("PKCS#11 module '", module_, "' cannot make ticket-key sets (no ",
                   lacks, "): their root secrets must be generated in the token"));
}

bool Capabilities::Lists(CK_MECHANISM_TYPE mechanism, CK_FLAGS flag) const {
  auto it = mechanisms_.find(mechanism);
  return it != mechanisms_.end() && (it->second.flags & flag) != 0;
}

std::string Capabilities::Summary() const {
  std::vector<std::string> works, lacks;
  for (KeyAlgorithm algorithm : kAlgorithms) {
    absl::Status status = CanGenerate(algorithm);
    if (status.ok() && FamilyOf(algorithm) == KeyFamily::kRsa) {
      absl::Status raw = CanDecryptRaw(algorithm);
      if (!raw.ok()) {
        works.push_back(absl::StrCat(KeyAlgorithmName(algorithm), " (signing only)"));
        continue;
      }
    }
    if (status.ok()) {
      works.emplace_back(KeyAlgorithmName(algorithm));
    } else {
      lacks.emplace_back(KeyAlgorithmName(algorithm));
    }
  }
  std::string out =
      absl::StrCat("PKCS#11 module '", module_, "' makes ", absl::StrJoin(works, " "));
  if (!lacks.empty()) absl::StrAppend(&out, "; lacks ", absl::StrJoin(lacks, " "));
  return out;
}

}  // namespace offkey::hsm::pkcs11
