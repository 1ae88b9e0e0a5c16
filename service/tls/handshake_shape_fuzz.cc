// Fuzzes CheckHandshakeShaped. The first two bytes choose the scheme, the key, the TLS
// version and the DHE option; the rest is the message. Every refusal must be
// PERMISSION_DENIED, and every acceptance must have the layout handshake_shape.h
// promises, checked here from the RFCs' framing (lengths, fixed bytes, field values)
// without the code under test.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "hsm/key_types.h"
#include "offkey/v1/common.pb.h"
#include "service/tls/handshake_shape.h"
#include "service/tls/schemes.h"

namespace offkey::service::tls {
namespace {

constexpr hsm::KeyAlgorithm kKeys[] = {
    hsm::KeyAlgorithm::kUnknown, hsm::KeyAlgorithm::kRsa2048, hsm::KeyAlgorithm::kRsa3072,
    hsm::KeyAlgorithm::kRsa4096, hsm::KeyAlgorithm::kEcP256,  hsm::KeyAlgorithm::kEcP384,
    hsm::KeyAlgorithm::kEcP521,  hsm::KeyAlgorithm::kEd25519,
};
constexpr offkey::v1::TlsVersion kVersions[] = {
    offkey::v1::TLS_1_3, offkey::v1::TLS_1_2, offkey::v1::TLS_VERSION_UNSPECIFIED,
    static_cast<offkey::v1::TlsVersion>(0x0302),  // TLS 1.1: never accepted.
};

void Check(bool ok) {
  if (!ok) std::abort();
}

size_t Be16(absl::string_view s, size_t at) {
  return (static_cast<uint8_t>(s[at]) << 8) | static_cast<uint8_t>(s[at + 1]);
}

void CheckTls13Layout(absl::string_view m) {
  const size_t hash = m.size() - kTls13PaddingSize - kTls13ServerContext.size() - 1;
  Check(m.size() > kTls13PaddingSize + kTls13ServerContext.size() + 1);
  Check(hash == 32 || hash == 48);
  Check(m.substr(0, kTls13PaddingSize) == absl::string_view(std::string(64, ' ')));
  Check(m.substr(kTls13PaddingSize, kTls13ServerContext.size()) == kTls13ServerContext);
  Check(m[kTls13PaddingSize + kTls13ServerContext.size()] == '\0');
}

// ServerECDHParams with a named curve (RFC 8422 §5.4).
bool IsEcdhParams(absl::string_view p) {
  if (p.size() < 4 || static_cast<uint8_t>(p[0]) != 3) return false;
  size_t point = 0;
  bool nist = true;
  switch (Be16(p, 1)) {
    case 23:
      point = 65;
      break;
    case 24:
      point = 97;
      break;
    case 25:
      point = 133;
      break;
    case 29:
      point = 32;
      nist = false;
      break;
    case 30:
      point = 56;
      nist = false;
      break;
    default:
      return false;
  }
  return static_cast<uint8_t>(p[3]) == point && p.size() == 4 + point &&
         (!nist || p[4] == 0x04);
}

// ServerDHParams (RFC 5246 §7.4.3) with an RFC 7919-sized p, g = 2 and |Ys| = |p|.
bool IsDhParams(absl::string_view p, size_t modulus_bytes) {
  if (p.size() < 2) return false;
  const size_t p_len = Be16(p, 0);
  if (p_len != 256 && p_len != 384 && p_len != 512 && p_len != 768 && p_len != 1024) {
    return false;
  }
  if (p_len > modulus_bytes || p.size() != 2 + p_len + 3 + 2 + p_len) return false;
  return Be16(p, 2 + p_len) == 1 && p[2 + p_len + 2] == 0x02 &&
         Be16(p, 2 + p_len + 3) == p_len;
}

}  // namespace
}  // namespace offkey::service::tls

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace tls = offkey::service::tls;
  using offkey::hsm::KeyFamily;
  if (size < 2) return 0;
  const absl::Span<const tls::SchemeInfo> schemes = tls::AllSchemes();
  const tls::SchemeInfo& scheme = schemes[data[0] % schemes.size()];
  const offkey::hsm::KeyAlgorithm key = tls::kKeys[data[1] & 7];
  const offkey::v1::TlsVersion version = tls::kVersions[(data[1] >> 3) & 3];
  tls::HandshakeShapeOptions options;
  options.allow_rfc7919_dhe = (data[1] & 0x20) != 0;
  absl::string_view message(reinterpret_cast<const char*>(data) + 2, size - 2);

  const absl::Status status =
      tls::CheckHandshakeShaped(message, scheme, key, version, options);
  if (!status.ok()) {
    tls::Check(status.code() == absl::StatusCode::kPermissionDenied);
    return 0;
  }
  if (version == offkey::v1::TLS_1_3) {
    tls::CheckTls13Layout(message);
    return 0;
  }
  tls::Check(version == offkey::v1::TLS_1_2);
  const offkey::hsm::KeyAlgorithmInfo* info = offkey::hsm::FindKeyAlgorithm(key);
  // An unknown key is CheckScheme's to refuse (handshake_shape.h, Scope); Ed25519 is
  // refused here.
  tls::Check(info == nullptr || info->family != KeyFamily::kEd25519);
  tls::Check(scheme.family != KeyFamily::kEd25519);
  tls::Check(message.size() > tls::kTls12RandomsSize);
  absl::string_view params = message.substr(tls::kTls12RandomsSize);
  if (tls::IsEcdhParams(params)) return 0;
  tls::Check(options.allow_rfc7919_dhe && info != nullptr &&
             info->family == KeyFamily::kRsa && scheme.family == KeyFamily::kRsa);
  tls::Check(tls::IsDhParams(params, static_cast<size_t>(info->bits) / 8));
  return 0;
}
