// TLS 1.2 RSA key exchange: choosing the premaster from a raw RSA decryption without a
// padding oracle.
//
// Why this exists (Bleichenbacher 1998, ROBOT 2017): if a server answers differently —
// by error, by alert, by size, or merely by how long it takes — depending on whether a
// ciphertext decrypts to a well-formed PKCS#1 v1.5 type-2 block, an attacker who can
// submit ciphertexts can decrypt any recorded ClientKeyExchange or forge signatures with
// the key, one adaptive query at a time. RFC 5246 §7.4.7.1 therefore requires the server
// to continue the handshake with a substitute premaster whenever the padding, the length
// or the version is wrong, so that the failure only surfaces as a Finished mismatch.
//
// offkey's rule (DecryptPremaster in proto/offkey/v1/key_service.proto): the HSM does raw
// RSA; this file decides between the decrypted premaster and a deterministic substitute
// in constant time; the caller ALWAYS computes the substitute first — on every call,
// whatever the ciphertext — and returns 48 bytes with an OK status either way.
#ifndef OFFKEY_SERVICE_CRYPTO_PREMASTER_H_
#define OFFKEY_SERVICE_CRYPTO_PREMASTER_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "base/secret_bytes.h"

namespace offkey::service::crypto {

// Size of a TLS 1.2 RSA premaster (RFC 5246 §7.4.7.1): 2 version bytes + 46 random.
inline constexpr size_t kPremasterSize = 48;

// Smallest raw RSA output SelectPremaster accepts (a 512-bit modulus). offkey's keys are
// 2048 bits or more; the bound only guarantees room for 0x00 0x02, at least 8 padding
// bytes, the separator and 48 bytes of message.
inline constexpr size_t kMinRsaOutputSize = 64;

// Domain-separation label that starts every SubstituteInput. v2 binds the client
// version; v1 (key id and ciphertext only) is no longer produced.
inline constexpr absl::string_view kSubstituteLabel = "offkey premaster substitute v2";

// The exact bytes MACed (with the store secret, KeyStore::HmacWithStoreSecret) to make
// the substitute premaster for `ciphertext` under the key `key_id`, sent with
// `client_version`:
//
//   "offkey premaster substitute v2" || uint16_be(client_version)
//                                    || uint32_be(len(key_id)) || key_id
//                                    || uint32_be(len(ciphertext)) || ciphertext
//
// The version is bound in because the substitute carries it in its first two bytes (as a
// real premaster does): one ciphertext sent with two versions must not give two
// substitutes that differ only there. The fixed-size version and the length prefixes
// make the encoding injective, so two different inputs never MAC the same bytes; the
// label keeps these MACs apart from any other use of the store secret. `ciphertext` is
// the modulus-sized form (DecryptPremaster left-pads shorter ones first), so every
// encoding of one integer gets one substitute. Not secret (every input is public).
// Inputs of 4 GiB or more are a programming error (the service limits key ids to 64
// bytes, ciphertexts to 512) and abort.
std::string SubstituteInput(absl::string_view key_id, uint16_t client_version,
                            absl::string_view ciphertext);

// Returns the 48-byte premaster to use for a TLS 1.2 RSA ClientKeyExchange:
//
//   - the last 48 bytes of `decrypted` if `decrypted` is a well-formed PKCS#1 v1.5
//     type-2 block carrying exactly 48 bytes: byte 0 is 0x00, byte 1 is 0x02, bytes
//     2 .. k-50 are all nonzero (the padding string, k-51 >= 13 bytes, so the "at least
//     8" rule always holds), byte k-49 is the 0x00 separator — AND the message's first
//     two bytes equal `client_version` (big-endian);
//   - otherwise the first 48 bytes of `substitute`.
//
// `decrypted` is the raw RSA output (c^d mod n) of exactly modulus size k >= 64 bytes,
// as KeyStore::RsaDecryptRaw returns it. `substitute` must hold at least 48 bytes (see
// substitute.h: ComputeSubstitute, whose first two bytes are `client_version`, so the
// result starts with the client version either way). Violating either size precondition
// is a programming error and aborts; both sizes are public, so checking them leaks
// nothing.
//
// Version rule: RFC 5246 §7.4.7.1 says the premaster carries ClientHello.client_version —
// the highest version the client offered, not the negotiated one — and that a mismatch is
// handled exactly like bad padding (substitute, no alert), since version rollback is
// otherwise detectable. RFC 5246 lets a server tolerate the negotiated version from very
// old TLS 1.0 clients; offkey does not (it would weaken the rollback check and clients
// that old are not served).
//
// Constant time: the result depends on secret data (`decrypted`, and which branch wins)
// only through masks. Every byte of `decrypted` is read on every call, no branch and no
// memory index depends on a secret byte, and the output is selected byte by byte between
// message and substitute. Because the substitute must already exist when this runs,
// callers must compute it on EVERY call, before knowing whether it will be used —
// computing it only on failure would reintroduce exactly the timing oracle this avoids.
// Callers must also not branch, log, count or time anything on whether the result equals
// the substitute.
//
// The returned buffer is secret: it wipes itself; callers must not log it. Thread-safe
// (pure function).
SecretBytes SelectPremaster(const SecretBytes& decrypted, uint16_t client_version,
                            const SecretBytes& substitute);

}  // namespace offkey::service::crypto

#endif  // OFFKEY_SERVICE_CRYPTO_PREMASTER_H_
