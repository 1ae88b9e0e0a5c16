// The files TLS terminators read session-ticket keys from, made from the keys of a
// ticket-key set (KeyService.GetTicketKeys), and writing them so a reader never sees a
// partial file.
//
// Layouts (checked against the servers' session tickets by
// tests/offkeyctl_ticket_keys_test.cc):
//   nginx 1.22 `ssl_session_ticket_key FILE`: 80 raw bytes, name 16 | HMAC key 32 |
//     AES key 32. One key per file; the first directive's key encrypts, all decrypt.
//   haproxy 2.6 `tls-ticket-keys FILE`: one base64 line per 80-byte key, name 16 | AES
//     key 32 | HMAC key 32. Of the last three lines the second-to-last encrypts, so the
//     file lists previous, current, next.
#ifndef OFFKEY_CLIENT_CLI_TICKET_KEY_FILES_H_
#define OFFKEY_CLIENT_CLI_TICKET_KEY_FILES_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/secret_bytes.h"
#include "offkey/v1/key_service.pb.h"

namespace offkey::client::cli {

// The 80 bytes of nginx's ssl_session_ticket_key file for `key`. DATA_LOSS when a part
// of `key` has the wrong size (offkeyd sent something else than the contract says).
absl::StatusOr<SecretBytes> NginxTicketKeyFile(const offkey::v1::TicketKey& key);

// One haproxy tls-ticket-keys entry for `key`: base64 of the 80 bytes, no newline (also
// what haproxy's `set ssl tls-key` takes). DATA_LOSS as above.
absl::StatusOr<SecretBytes> HaproxyTicketKey(const offkey::v1::TicketKey& key);

// haproxy's tls-ticket-keys file: the entries of previous, current and next, one line
// each, in that order (so current encrypts). DATA_LOSS as above, or when an epoch is
// missing.
absl::StatusOr<SecretBytes> HaproxyTicketKeysFile(
    const offkey::v1::GetTicketKeysResponse& keys);

// Replaces `path` with `data` atomically: writes a temporary file in the same directory
// with `mode`, syncs it, renames it over `path` and syncs the directory. A reader sees
// the old file or the new one, never a part. On failure `path` is unchanged and the
// temporary file is gone; the message names the path and the system error.
absl::Status ReplaceFileAtomically(const std::string& path, absl::string_view data,
                                   mode_t mode);

}  // namespace offkey::client::cli

#endif  // OFFKEY_CLIENT_CLI_TICKET_KEY_FILES_H_
