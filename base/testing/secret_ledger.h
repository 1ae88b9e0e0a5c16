// The secret ledger: tests record every secret they handle (premasters, master secrets,
// private keys, PINs) so that the suite-wide log scan (tools/logscan.py, run by
// tools/test.sh after every test) can prove none of them reached a log or an output.
//
// Entries go to $TEST_UNDECLARED_OUTPUTS_DIR/secrets.ledger, one "<what> <hex>" line
// each; the scanner reads the ledgers and skips them when it scans. Outside a Bazel test
// (no such variable) recording does nothing.
#ifndef OFFKEY_BASE_TESTING_SECRET_LEDGER_H_
#define OFFKEY_BASE_TESTING_SECRET_LEDGER_H_

#include <string>

#include "absl/strings/string_view.h"

namespace offkey::testing {

// The ledger's file name inside the outputs directory.
inline constexpr char kSecretLedgerName[] = "secrets.ledger";

// Records `secret` (raw bytes) under the label `what`. Secrets shorter than 8 bytes are
// too short to find without false alarms and are ignored. Thread-safe.
void RecordSecret(absl::string_view what, absl::string_view secret);

// Records the private parts of a PEM private key: the RSA private exponent and primes,
// the EC private scalar, or the Ed25519/X25519 seed. Not the whole encoding: its
// structure and public parts also appear in certificates and CSRs. A key that does not
// parse fails the calling test.
void RecordPrivateKeyPem(absl::string_view what, absl::string_view pem);
// The same for an unencrypted DER PKCS#8 key.
void RecordPrivateKeyDer(absl::string_view what, absl::string_view der);

// A path for a log or other output of this test that the scan must cover:
// $TEST_UNDECLARED_OUTPUTS_DIR/<name> (or $TEST_TMPDIR/<name> outside the outputs).
std::string OutputPath(absl::string_view name);

}  // namespace offkey::testing

#endif  // OFFKEY_BASE_TESTING_SECRET_LEDGER_H_
