// Handshake-shaped signing: what a tls-server key agrees to sign.
//
// Why: a terminator sends offkey the unhashed message. If a tls-server key signed any
// message, a compromised edge node could use offkey as a general signing oracle (sign a
// CSR, a code-signing blob, a client CertificateVerify to impersonate the server as a
// client). Refusing everything that is not the input of a server handshake signature
// bounds what a stolen edge can do to "complete handshakes as this server while it is
// compromised", which it can do anyway.
//
// Accepted shapes:
//   TLS 1.3 (RFC 8446 §4.4.3): 64 bytes of 0x20, "TLS 1.3, server CertificateVerify",
//     0x00, then the transcript hash. The transcript hash is made with the negotiated
//     cipher suite's hash (§4.4.1), which TLS 1.3 does not tie to the signature scheme:
//     OpenSSL's default handshake with a P-256 key is TLS_AES_256_GCM_SHA384 (48-byte
//     transcript hash) signed with ecdsa_secp256r1_sha256. So every scheme accepts the
//     lengths of the TLS 1.3 cipher-suite hashes: 32 (SHA-256 suites) and 48 (SHA-384
//     suites); no TLS 1.3 suite uses SHA-512. The client context string is refused: a
//     server key does not sign client authentication.
//   TLS 1.2 (RFC 5246 §7.4.3, RFC 8422 §5.4), RSA and ECDSA keys only: client_random
//     (32) || server_random (32) || ServerECDHParams or ServerDHParams, with nothing
//     after the params:
//     - ServerECDHParams: curve_type named_curve (3), a NamedCurve among secp256r1 (23),
//       secp384r1 (24), secp521r1 (25), x25519 (29), x448 (30), a 1-byte length and a
//       public key of exactly the curve's size: for the NIST curves the uncompressed
//       point 0x04 || X || Y (65, 97, 133 bytes), which must decode to a point on the
//       curve with coordinates below the field prime; for x25519/x448 the 32/56-byte
//       u-coordinate, where every string is a valid key (RFC 7748), so length is all.
//     - ServerDHParams, only with options.allow_rfc7919_dhe and an RSA key: dh_p equal
//       byte for byte to an RFC 7919 prime (ffdhe2048..ffdhe8192, taken from OpenSSL)
//       no longer than the key's modulus, dh_g the single byte 0x02, dh_Ys exactly as
//       long as dh_p with 1 < Ys < p - 1.
//     Ed25519 keys are refused in TLS 1.2: their signature covers the message itself
//     and their 44-byte SubjectPublicKeyInfo fits in the 64 random bytes, so a
//     ServerKeyExchange input can be laid out as a CSR for the key.
//   Why nothing else can be read from these bytes: service/tls/README.md.
//   TLS_VERSION_UNSPECIFIED and any other version: refused.
//
// Scope: shape only. Whether `scheme` fits the key and the version is CheckScheme's job;
// call it first.
//
// Thread-safe (a pure function).
#ifndef OFFKEY_SERVICE_TLS_HANDSHAKE_SHAPE_H_
#define OFFKEY_SERVICE_TLS_HANDSHAKE_SHAPE_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "hsm/key_types.h"
#include "offkey/v1/common.pb.h"
#include "service/tls/schemes.h"

namespace offkey::service::tls {

// The TLS 1.3 CertificateVerify context strings (RFC 8446 §4.4.3), without the 0x00.
inline constexpr absl::string_view kTls13ServerContext =
    "TLS 1.3, server CertificateVerify";
inline constexpr absl::string_view kTls13ClientContext =
    "TLS 1.3, client CertificateVerify";
inline constexpr size_t kTls13PaddingSize = 64;
inline constexpr size_t kTls12RandomsSize = 64;  // client_random || server_random.
inline constexpr size_t kMaxDhFieldSize = 1024;  // 8192-bit groups.

// What the server configuration (ServerConfig.handshake) lets a tls-server key sign.
struct HandshakeShapeOptions {
  // TLS 1.2 DHE ServerKeyExchange with an RFC 7919 group. Default off.
  bool allow_rfc7919_dhe = false;
};

// Whether `message` is the input of a server handshake signature for `version` (see
// above) that a `key` key may make with `scheme` under `options`.
// On success: OK. On failure: PERMISSION_DENIED whose message says which shape was
// expected and which part of `message` did not fit (offsets, lengths, field names);
// it never contains bytes of `message`.
absl::Status CheckHandshakeShaped(absl::string_view message, const SchemeInfo& scheme,
                                  hsm::KeyAlgorithm key, offkey::v1::TlsVersion version,
                                  const HandshakeShapeOptions& options);

}  // namespace offkey::service::tls

#endif  // OFFKEY_SERVICE_TLS_HANDSHAKE_SHAPE_H_
