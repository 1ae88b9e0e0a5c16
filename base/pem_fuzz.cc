// Fuzzes the PEM readers and PKCS#8 parsing that key import and certificate chains go
// through: the same bytes as PEM text (ReadPem, ReadPemPrivateKey,
// ReadPemCertificatesDer) and as PKCS#8 DER (ParsePkcs8PrivateKey). What a reader
// accepts must keep its promises: at least one block, private key DER only in the
// wiping buffer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/pem.h"
#include "base/secret_bytes.h"

namespace offkey {
namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace
}  // namespace offkey

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using offkey::Check;
  absl::string_view input(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<std::vector<offkey::PemBlock>> blocks = offkey::ReadPem(input);
  if (blocks.ok()) {
    Check(!blocks->empty());
    for (const offkey::PemBlock& block : *blocks) {
      if (offkey::IsPrivateKeyType(block.type)) {
        Check(block.der.empty());
      } else {
        Check(block.secret_der.empty());
      }
      Check(block.label.size() <= 64);
    }
  }

  // ReadPemPrivateKey checks a PRIVATE KEY block's PrivateKeyInfo structure only (its
  // callers decode the key with ParsePkcs8PrivateKey, which may still refuse it).
  absl::StatusOr<offkey::SecretBytes> pkcs8 = offkey::ReadPemPrivateKey(input);
  if (pkcs8.ok()) (void)offkey::ParsePkcs8PrivateKey(*pkcs8);

  offkey::PemOptions skip;
  skip.skip_other_types = true;
  absl::StatusOr<std::vector<std::string>> certs =
      offkey::ReadPemCertificatesDer(input, skip);
  if (certs.ok()) Check(!certs->empty());

  (void)offkey::ParsePkcs8PrivateKey(offkey::SecretBytes(input));
  return 0;
}
