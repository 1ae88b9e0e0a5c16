// The one PEM reader: PEM text in, typed DER blocks out (RFC 7468), through OpenSSL's
// PEM_read_bio_ex. Every file, request field and peer certificate that arrives as PEM
// goes through here, so the size caps, the error messages and the handling of secrets
// are the same everywhere.
//
//   OFFKEY_ASSIGN_OR_RETURN(std::vector<X509Ptr> chain, ReadPemCertificates(text));
//   OFFKEY_ASSIGN_OR_RETURN(SecretBytes pkcs8, ReadPemPrivateKey(key_text));
//
// What counts as PEM: "-----BEGIN LABEL-----", base64 lines, "-----END LABEL-----".
// Text outside blocks (comments, `openssl x509 -text` dumps) is skipped, as OpenSSL
// always has; a block that begins but does not end or decode is an error, never
// silently dropped. All functions are pure functions of their input (fuzz-friendly),
// thread-safe, and leave OpenSSL's thread-local error queue empty on every path: its
// text goes into the returned status instead.
#ifndef OFFKEY_BASE_PEM_H_
#define OFFKEY_BASE_PEM_H_

#include <openssl/x509.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/openssl_util.h"
#include "base/secret_bytes.h"

namespace offkey {

enum class PemType {
  kCertificate,          // CERTIFICATE (also the old X509 CERTIFICATE)
  kX509Crl,              // X509 CRL
  kCertificateRequest,   // CERTIFICATE REQUEST (also NEW CERTIFICATE REQUEST)
  kPublicKey,            // PUBLIC KEY (a SubjectPublicKeyInfo)
  kPrivateKey,           // PRIVATE KEY (PKCS#8 PrivateKeyInfo)
  kRsaPrivateKey,        // RSA PRIVATE KEY (PKCS#1, "traditional")
  kEcPrivateKey,         // EC PRIVATE KEY (RFC 5915, "traditional")
  kEncryptedPrivateKey,  // ENCRYPTED PRIVATE KEY (PKCS#8 EncryptedPrivateKeyInfo)
  kOther,                // any other label; `label` says which
};

// The label as it is written after BEGIN ("CERTIFICATE"); kOther gives "".
absl::string_view PemTypeLabel(PemType type);

// True for the four private key types (plain, traditional or encrypted).
bool IsPrivateKeyType(PemType type);

// One decoded block. Private key blocks (IsPrivateKeyType) keep their DER only in
// `secret_der`, which wipes itself; every other block keeps it in `der`. Use der_view()
// to read either.
struct PemBlock {
  PemType type = PemType::kOther;
  std::string label;  // As written, at most 64 characters.
  // True when the block carries legacy OpenSSL encryption headers ("Proc-Type:
  // 4,ENCRYPTED", "DEK-Info: ..."): its DER is ciphertext.
  bool legacy_encrypted = false;
  std::string der;
  SecretBytes secret_der;

  absl::string_view der_view() const {
    return IsPrivateKeyType(type) ? secret_der.view() : absl::string_view(der);
  }
};

struct PemOptions {
  // Larger inputs are refused before any parsing (INVALID_ARGUMENT).
  size_t max_input_bytes = size_t{1} << 20;
  // More blocks than this are refused (INVALID_ARGUMENT). Counts every block, skipped
  // ones included.
  size_t max_blocks = 1024;
  // For the typed readers below: blocks of other types are skipped when true, refused
  // when false (the default: a chain with a key in it is a mistake worth saying).
  bool skip_other_types = false;
  // PEM_FLAG_SECURE: OpenSSL reads every block through wiping (secure-heap) buffers,
  // since a key's type is known only once it is read. Off only where no key is expected
  // and the reader runs inside another process's OpenSSL decoder (the provider's key
  // reference decoder): there it made the offkey provider's gRPC connections fail
  // intermittently (provider_test), for reasons not yet understood.
  bool secure = true;
};

// True when `text` holds a PEM BEGIN line, i.e. it is meant as PEM rather than DER.
bool LooksLikePem(absl::string_view text);

// Every block in `text`, in order.
// On success: at least one block. On failure, INVALID_ARGUMENT saying why: the input is
// over the size cap, holds no block at all, holds too many, or block N is truncated or
// its base64 does not decode.
absl::StatusOr<std::vector<PemBlock>> ReadPem(absl::string_view text,
                                              const PemOptions& options = {});

// The CERTIFICATE blocks of `text` as DER, in order; at least one. Each must parse as
// an X.509 certificate with nothing after it. Blocks of other types: see PemOptions.
absl::StatusOr<std::vector<std::string>> ReadPemCertificatesDer(
    absl::string_view text, const PemOptions& options = {});

// The same, parsed.
absl::StatusOr<std::vector<X509Ptr>> ReadPemCertificates(absl::string_view text,
                                                         const PemOptions& options = {});

struct X509CrlDeleter {
  void operator()(X509_CRL* p) const { X509_CRL_free(p); }
};
using X509CrlPtr = std::unique_ptr<X509_CRL, X509CrlDeleter>;

// The X509 CRL blocks of `text`, parsed, in order; at least one.
absl::StatusOr<std::vector<X509CrlPtr>> ReadPemCrls(absl::string_view text,
                                                    const PemOptions& options = {});

// The one private key in `text` as unencrypted PKCS#8 PrivateKeyInfo DER: a PRIVATE KEY
// block as it is, an RSA or EC PRIVATE KEY block converted. Refused: no private key
// block, more than one, ENCRYPTED PRIVATE KEY or legacy-encrypted blocks (this reader
// asks for no passphrase), a body that does not parse (for a PRIVATE KEY block: the
// PrivateKeyInfo structure; ParsePkcs8PrivateKey decodes the key itself and may still
// refuse it, e.g. an algorithm OpenSSL does not know). Every intermediate copy of the
// key is wiped.
absl::StatusOr<SecretBytes> ReadPemPrivateKey(absl::string_view text,
                                              const PemOptions& options = {});

// Parses PKCS#8 PrivateKeyInfo DER (as ReadPemPrivateKey returns) into a key.
absl::StatusOr<EvpPkeyPtr> ParsePkcs8PrivateKey(const SecretBytes& der);

}  // namespace offkey

#endif  // OFFKEY_BASE_PEM_H_
