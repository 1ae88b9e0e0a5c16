// RFC 7512 PKCS#11 URIs that select a token.
#ifndef OFFKEY_HSM_PKCS11_TOKEN_URI_H_
#define OFFKEY_HSM_PKCS11_TOKEN_URI_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hsm/pkcs11/pkcs11.h"

namespace offkey::hsm::pkcs11 {

// The token-selecting part of a PKCS#11 URI, for example
//   pkcs11:token=offkey;serial=5f3a...?module-path=/usr/lib/softhsm/libsofthsm2.so
// Empty fields match anything. Object attributes (object, id, type) are refused: a
// KeyStore serves a whole token. `pin-value` is refused because URIs end up in command
// lines and logs; `pin-source=file:/path` is accepted.
struct TokenUri {
  std::string token;         // CK_TOKEN_INFO.label
  std::string manufacturer;  // CK_TOKEN_INFO.manufacturerID
  std::string serial;        // CK_TOKEN_INFO.serialNumber
  std::string model;         // CK_TOKEN_INFO.model
  std::optional<CK_SLOT_ID> slot_id;
  std::string module_path;  // query attribute module-path
  std::string pin_file;     // query attribute pin-source (file: scheme or a plain path)

  // INVALID_ARGUMENT naming the offending attribute on any malformed or unsupported part.
  static absl::StatusOr<TokenUri> Parse(absl::string_view uri);

  bool Matches(CK_SLOT_ID slot, const CK_TOKEN_INFO& info) const;

  // The URI again (without pin-source), for messages.
  std::string ToString() const;
};

// CK_TOKEN_INFO text fields are space-padded and not NUL-terminated.
std::string TrimPadded(const unsigned char* field, size_t size);

}  // namespace offkey::hsm::pkcs11

#endif  // OFFKEY_HSM_PKCS11_TOKEN_URI_H_
