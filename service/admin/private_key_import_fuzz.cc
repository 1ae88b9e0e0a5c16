// Fuzzes ImportKey's key decoding (NormalizePrivateKey): PKCS#8 PEM or DER, plain or
// encrypted under the passphrase "fuzz". A refusal must be INVALID_ARGUMENT; an
// accepted key must decode with ParsePkcs8PrivateKey and normalise to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/pem.h"
#include "base/secret_bytes.h"
#include "service/admin/private_key_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace admin = offkey::service::admin;
  const offkey::SecretBytes input(data, size);
  const offkey::SecretBytes passphrase(absl::string_view("fuzz"));
  absl::StatusOr<offkey::SecretBytes> pkcs8 =
      admin::NormalizePrivateKey(input, passphrase);
  if (!pkcs8.ok()) {
    if (pkcs8.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  if (!offkey::ParsePkcs8PrivateKey(*pkcs8).ok()) std::abort();
  absl::StatusOr<offkey::SecretBytes> again =
      admin::NormalizePrivateKey(*pkcs8, offkey::SecretBytes());
  if (!again.ok() || again->view() != pkcs8->view()) std::abort();
  return 0;
}
