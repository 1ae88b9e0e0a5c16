// TLS session tickets as nginx and haproxy make them with the keys `offkeyctl
// ticket-keys` writes, read back in tests: the ticket of an `openssl s_client -sess_out`
// file, and whether a ticket opens with a key offkeyd hands out.
#ifndef OFFKEY_TESTS_SESSION_TICKETS_H_
#define OFFKEY_TESTS_SESSION_TICKETS_H_

#include <string>

#include "offkey/v1/key_service.pb.h"

namespace offkey::tests {

// The ticket in an `openssl s_client -sess_out` file; empty if the file is absent, does
// not parse or holds no ticket.
std::string TicketOf(const std::string& session_file);

// Opens `ticket` with `key` as OpenSSL's ticket format lays it out (what nginx's and
// haproxy's ticket callbacks fill in): key name (16), IV (16), the session state
// encrypted with AES-256-CBC, and an HMAC-SHA256 (32) over everything before it. Empty
// when it opens to a session OpenSSL parses, else why not. The opened state is wiped.
std::string WhyNotOpened(const std::string& ticket, const offkey::v1::TicketKey& key);

}  // namespace offkey::tests

#endif  // OFFKEY_TESTS_SESSION_TICKETS_H_
