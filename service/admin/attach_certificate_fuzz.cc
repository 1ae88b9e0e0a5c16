// Fuzzes the admin plane's attach-certificate input through KeyAdmin::AttachCertificate,
// the function the AttachCertificate RPC calls, over a FakeKeyStore holding a fixed key
// "web" (below) and a generated Ed25519 key "other". Input: a flags byte (bit 0: the
// rest is chain_pem, else chain_der as 16-bit big-endian length-prefixed certificates;
// bit 1: force; bit 2: the key "other", else "web"; bit 3: the key by key_id, else by
// name; bit 4: a key name that does not exist). The seeds
// (testdata/fuzz/attach_certificate, made by testdata/fuzz/make_attach_seeds.sh with
// this key) include chains that attach, so the fuzzer starts on the accepting path.
//
// Checked beyond no crash: errors are INVALID_ARGUMENT, FAILED_PRECONDITION or, for the
// missing key, NOT_FOUND; an attached chain is what was given (DER) and its leaf holds
// the key's own public key; a refused chain is not stored.
#include <openssl/pem.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/openssl_util.h"
#include "base/pem.h"
#include "base/secret_bytes.h"
#include "hsm/key_store.h"
#include "hsm/key_types.h"
#include "hsm/testing/fake_key_store.h"
#include "hsm/testing/verify.h"
#include "offkey/v1/key_admin.pb.h"
#include "service/admin/key_admin.h"
#include "service/key_catalog.h"

namespace offkey::service::admin {
namespace {

// Inside the validity of every seed certificate (make_attach_seeds.sh):
// 2027-01-01T00:00:00Z.
const absl::Time kNow = absl::FromUnixSeconds(1798761600);

// The "web" key, EC P-256: a throwaway made for this fuzzer only, kept in test data
// (testdata/fuzz/attach_certificate_web_key.pem) and embedded by the BUILD's genrule,
// because the fuzzer runs from a copy with no runfiles.
constexpr char kWebKeyPem[] =
#include "service/admin/attach_certificate_web_key.inc"
    ;

void Check(bool ok) {
  if (!ok) std::abort();
}

struct World {
  std::unique_ptr<hsm::testing::FakeKeyStore> store =
      hsm::testing::FakeKeyStore::Create();
  KeyCatalog catalog{store.get(), absl::Hours(1), absl::Hours(1)};
  KeyAdmin admin{store.get(), &catalog, [] { return kNow; }};
  hsm::KeyInfo web, other;
};

World& TheWorld() {
  static World* world = [] {
    auto* w = new World();  // Never freed.
    absl::StatusOr<SecretBytes> web_pkcs8 = ReadPemPrivateKey(kWebKeyPem);
    Check(web_pkcs8.ok());
    absl::StatusOr<hsm::KeyInfo> web = w->store->ImportKey("web", *web_pkcs8);
    absl::StatusOr<hsm::KeyInfo> other = w->store->ImportKey(
        "other", SecretBytes(hsm::testing::GeneratePkcs8(hsm::KeyAlgorithm::kEd25519)));
    Check(web.ok() && other.ok());
    w->web = *std::move(web);
    w->other = *std::move(other);
    return w;
  }();
  return *world;
}

// The next 16-bit length-prefixed field of `in`; a short one takes what is left.
std::string Field(absl::string_view& in) {
  if (in.size() < 2) {
    in = absl::string_view();
    return "";
  }
  const size_t size = (static_cast<uint8_t>(in[0]) << 8) | static_cast<uint8_t>(in[1]);
  in.remove_prefix(2);
  const absl::string_view field = in.substr(0, size);
  in.remove_prefix(field.size());
  return std::string(field);
}

// The DER SubjectPublicKeyInfo of the certificate `der`, or "" when it does not parse.
std::string LeafSpki(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr) return "";
  unsigned char* spki = nullptr;
  const int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert.get()), &spki);
  std::string out = len > 0 ? std::string(reinterpret_cast<char*>(spki), len) : "";
  OPENSSL_free(spki);
  return out;
}

}  // namespace
}  // namespace offkey::service::admin

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace admin = offkey::service::admin;
  if (size < 1) return 0;
  admin::World& world = admin::TheWorld();
  const uint8_t flags = data[0];
  absl::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  const offkey::hsm::KeyInfo& key = (flags & 4) != 0 ? world.other : world.web;
  const bool missing = (flags & 16) != 0;
  offkey::v1::AttachCertificateRequest request;
  if (missing) {
    request.mutable_key()->set_name("missing");
  } else if ((flags & 8) != 0) {
    request.mutable_key()->set_key_id(key.key_id);
  } else {
    request.mutable_key()->set_name(key.name);
  }
  request.set_force((flags & 2) != 0);
  if ((flags & 1) != 0) {
    request.set_chain_pem(std::string(in));
  } else {
    auto* der = request.mutable_chain_der();
    while (!in.empty()) der->add_certificates(admin::Field(in));
  }

  absl::StatusOr<offkey::v1::AttachCertificateResponse> response =
      world.admin.AttachCertificate(request);
  absl::StatusOr<std::vector<std::string>> stored =
      world.store->GetCertificateChain(key.key_id);
  admin::Check(stored.ok());
  admin::Check(response.ok() || stored->empty());
  // Every input leaves the keys without certificates, as it found them, so inputs do not
  // depend on each other (AttachCertificate reloads the catalog from the store first).
  admin::Check(world.store->PutCertificateChain(key.key_id, {}).ok());
  if (!response.ok()) {
    const absl::StatusCode code = response.status().code();
    admin::Check(code == absl::StatusCode::kInvalidArgument ||
                 code == absl::StatusCode::kFailedPrecondition ||
                 (code == absl::StatusCode::kNotFound && missing));
    return 0;
  }
  admin::Check(!missing);
  admin::Check(!stored->empty() && stored->size() <= 10);
  admin::Check(admin::LeafSpki((*stored)[0]) == key.public_key_spki);
  if ((flags & 1) == 0) {
    admin::Check(*stored ==
                 std::vector<std::string>(request.chain_der().certificates().begin(),
                                          request.chain_der().certificates().end()));
  } else {
    offkey::PemOptions options;
    options.max_input_bytes = size_t{1} << 20;  // key_admin.proto's limit.
    absl::StatusOr<std::vector<std::string>> given =
        offkey::ReadPemCertificatesDer(request.chain_pem(), options);
    admin::Check(given.ok() && *given == *stored);
  }
  admin::Check(response->key().key_id() == key.key_id);
  return 0;
}
