// The files of an mTLS client (CA bundle, certificate, private key), read and checked
// before a channel is made, so a user hears "expired" or "wrong key" instead of a TLS
// alert from the server.
#ifndef OFFKEY_BASE_CLIENT_TLS_H_
#define OFFKEY_BASE_CLIENT_TLS_H_

#include <string>

#include "absl/status/statusor.h"
#include "base/secret_bytes.h"

namespace offkey {

// One file and how messages name it, e.g. "'/etc/ca.pem' (--tls-ca)".
struct NamedFile {
  std::string path;
  std::string description;
};

struct ClientTlsMaterial {
  std::string ca_pem;
  std::string cert_pem;
  SecretBytes key_pem;
};

// Reads the three files and checks that each is readable, that the CA file and the
// certificate file each hold a PEM certificate, that the key file holds an unencrypted
// PEM private key belonging to the certificate, and that the certificate is within its
// validity period. On failure: FAILED_PRECONDITION naming the file by its description;
// the key's contents never appear in a message.
absl::StatusOr<ClientTlsMaterial> LoadClientTlsFiles(const NamedFile& ca,
                                                     const NamedFile& cert,
                                                     const NamedFile& key);

// The whole of a small file (a certificate, a key, a port file). NOT_FOUND with
// strerror's text on failure; callers say what the file was.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path);

}  // namespace offkey

#endif  // OFFKEY_BASE_CLIENT_TLS_H_
