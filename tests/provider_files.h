// The files a keyless terminator is given, written for tests: a server certificate and
// key reference per key, and the openssl.cnf that loads the offkey provider.
#ifndef OFFKEY_TESTS_PROVIDER_FILES_H_
#define OFFKEY_TESTS_PROVIDER_FILES_H_

#include <string>

#include "absl/strings/string_view.h"
#include "client/offkey_client.h"
#include "hsm/key_store.h"
#include "service/dev/dev_pki.h"

namespace offkey::tests {

// Writes `dir`/`name`.pem, a server certificate for `key` from `ca` naming localhost,
// and `dir`/`name`.ref, the key's reference. Nothing secret. Fails the test on error.
void WriteKeylessServerFiles(const std::string& dir, const std::string& name,
                             const hsm::KeyInfo& key, const service::dev::IssuedCert& ca);

// openssl.cnf that loads the default provider and the offkey provider (the test's
// offkey.so; `offkey_first` lists it first), with `offkey_lines` in offkey's section
// after `module` and `activate`, and default properties preferring the default provider
// (as client/openssl/README.md configures a terminator).
std::string ProviderConfig(absl::string_view offkey_lines, bool offkey_first = false);

// The provider lines that point it at offkeyd on 127.0.0.1:`port` with `files`' mTLS
// certificate, key and CA.
std::string EndpointLines(int port, const client::ClientOptions& files);

// The TLS file lines of EndpointLines alone.
std::string TlsFileLines(const client::ClientOptions& files);

}  // namespace offkey::tests

#endif  // OFFKEY_TESTS_PROVIDER_FILES_H_
