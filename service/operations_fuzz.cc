// Fuzzes the data-plane request handlers (Operations) over a FakeKeyStore. Input: byte 0
// picks the caller (mod 5: the edge, the stranger, the verifier, an empty identity, an
// identity without grants); the rest is a PipelineRequest (the pipelined stream's item,
// which holds any one operation's request) in protobuf wire form, and its op is passed
// to that operation's handler; an item without an op calls ListKeys. The keys (made at
// start-up): "rsa", "p256", "ed" (TLS_SERVER), "general" (GENERAL_SIGNING) and "off"
// (disabled), all labelled tier=edge, and "public" and "secret" without labels. The
// policy is operations_test.cc's; VerifyClient has one bundle, "clients", over a CA made
// at start-up (so no chain can verify).
//
// Checked beyond no crash, from the fuzzer's own table of keys and grants (not the
// catalog's or the policy's code): an operation answers OK only for a caller granted
// it on an enabled key, found by the KeyRef's name, key_id or ski; Sign's signature
// verifies with OpenSSL under that key; DecryptPremaster is always 48 bytes and
// DeriveMasterSecret 48 bytes, on the RSA key only; VerifyClient never says VERIFIED;
// ListKeys lists only keys the caller may list. Errors are only the codes
// key_service.proto documents for bad input, authorization and key state.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/secret_bytes.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/text_format.h"
#include "hsm/key_store.h"
#include "hsm/key_types.h"
#include "hsm/testing/fake_key_store.h"
#include "hsm/testing/verify.h"
#include "offkey/v1/config.pb.h"
#include "offkey/v1/key_service.pb.h"
#include "offkey/v1/metadata.pb.h"
#include "service/clientverify/client_verifier.h"
#include "service/config/policy.h"
#include "service/dev/dev_pki.h"
#include "service/key_catalog.h"
#include "service/operations.h"
#include "service/tls/schemes.h"

namespace offkey::service {
namespace {

using offkey::v1::Operation;

constexpr char kPolicy[] = R"pb(
  grants {
    identities: "spiffe://example.org/edge"
    operations: [
      SIGN,
      DECRYPT_PREMASTER,
      DERIVE_MASTER_SECRET,
      GET_CERTIFICATE,
      LIST_KEYS
    ]
    keys { labels { key: "tier" value: "edge" } }
  }
  grants {
    identities: "spiffe://example.org/stranger"
    operations: [ GET_CERTIFICATE ]
    keys { names: "public" }
  }
  grants {
    identities: "spiffe://example.org/verifier"
    operations: [ VERIFY_CLIENT ]
    keys { all_keys: true }
  }
)pb";

constexpr const char* kCallers[] = {
    "spiffe://example.org/edge", "spiffe://example.org/stranger",
    "spiffe://example.org/verifier", "", "spiffe://example.org/nobody"};
enum CallerIndex { kEdge, kStranger, kVerifier, kAnonymous, kNobody };

void Check(bool ok) {
  if (!ok) std::abort();
}

struct KeySpec {
  const char* name;
  hsm::KeyAlgorithm algorithm;
  offkey::v1::KeyUsage usage;
  offkey::v1::KeyState state;
  bool edge;  // Labelled tier=edge.
};
constexpr KeySpec kKeys[] = {
    {"rsa", hsm::KeyAlgorithm::kRsa2048, offkey::v1::TLS_SERVER, offkey::v1::ENABLED,
     true},
    {"p256", hsm::KeyAlgorithm::kEcP256, offkey::v1::TLS_SERVER, offkey::v1::ENABLED,
     true},
    {"ed", hsm::KeyAlgorithm::kEd25519, offkey::v1::TLS_SERVER, offkey::v1::ENABLED,
     true},
    {"general", hsm::KeyAlgorithm::kEcP256, offkey::v1::GENERAL_SIGNING,
     offkey::v1::ENABLED, true},
    {"off", hsm::KeyAlgorithm::kEcP256, offkey::v1::TLS_SERVER, offkey::v1::DISABLED,
     true},
    {"public", hsm::KeyAlgorithm::kEcP256, offkey::v1::TLS_SERVER, offkey::v1::ENABLED,
     false},
    {"secret", hsm::KeyAlgorithm::kEcP256, offkey::v1::TLS_SERVER, offkey::v1::ENABLED,
     false},
};

struct World {
  std::unique_ptr<hsm::testing::FakeKeyStore> store =
      hsm::testing::FakeKeyStore::Create();
  std::unique_ptr<KeyCatalog> catalog;
  std::unique_ptr<Operations> operations;
  std::map<std::string, hsm::KeyInfo> keys;  // By name.
};

World& TheWorld() {
  static World* world = [] {
    // Parsing refuses strings that are not UTF-8 (as gRPC's would); without the log
    // line protobuf writes for each.
    google::protobuf::SetLogHandler(nullptr);
    auto* w = new World();  // Never freed.
    for (const KeySpec& spec : kKeys) {
      absl::StatusOr<hsm::KeyInfo> info = w->store->ImportKey(
          spec.name, SecretBytes(hsm::testing::GeneratePkcs8(spec.algorithm)));
      Check(info.ok());
      offkey::v1::KeyMetadata metadata;
      metadata.set_format_version(1);
      metadata.set_usage(spec.usage);
      metadata.set_state(spec.state);
      if (spec.edge) (*metadata.mutable_labels())["tier"] = "edge";
      Check(w->store->PutMetadata(info->key_id, metadata.SerializeAsString()).ok());
      w->keys[spec.name] = *std::move(info);
    }
    w->catalog = std::make_unique<KeyCatalog>(w->store.get(), absl::Hours(1),
                                              /*min_miss_reload=*/absl::Hours(1));
    offkey::v1::PolicyConfig config;
    Check(google::protobuf::TextFormat::ParseFromString(kPolicy, &config));
    absl::StatusOr<config::Policy> policy =
        config::Policy::Create(config, google::protobuf::RepeatedPtrField<std::string>());
    Check(policy.ok());
    w->operations = std::make_unique<Operations>(
        w->store.get(), w->catalog.get(),
        std::make_shared<const config::Policy>(*std::move(policy)));

    absl::StatusOr<dev::IssuedCert> ca = dev::MakeCa("offkey operations fuzz CA");
    Check(ca.ok());
    char dir_template[] = "/tmp/offkey-operations-fuzz.XXXXXX";
    const char* dir = mkdtemp(dir_template);
    Check(dir != nullptr);
    const std::string path = std::string(dir) + "/ca.pem";
    std::ofstream(path, std::ios::binary) << ca->cert_pem;
    google::protobuf::RepeatedPtrField<offkey::v1::TrustBundle> bundles;
    bundles.Add()->set_name("clients");
    bundles.Mutable(0)->set_ca_file(path);
    absl::StatusOr<std::shared_ptr<const clientverify::TrustStore>> trust =
        clientverify::TrustStore::Load(bundles);
    unlink(path.c_str());
    rmdir(dir);
    Check(trust.ok());
    w->operations->SetTrustStore(*std::move(trust));
    return w;
  }();
  return *world;
}

const KeySpec* SpecOf(absl::string_view name) {
  for (const KeySpec& spec : kKeys) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

// The key `ref` names by name, key_id or ski (no certificates are attached, so never by
// cert_sha256), or nullptr.
const hsm::KeyInfo* Resolve(const World& world, const offkey::v1::KeyRef& ref) {
  for (const auto& [name, info] : world.keys) {
    switch (ref.ref_case()) {
      case offkey::v1::KeyRef::kName:
        if (ref.name() == info.name) return &info;
        break;
      case offkey::v1::KeyRef::kKeyId:
        if (ref.key_id() == info.key_id) return &info;
        break;
      case offkey::v1::KeyRef::kSki:
        if (ref.ski() == info.ski) return &info;
        break;
      default:
        break;
    }
  }
  return nullptr;
}

// Whether `caller` may perform `op` on the key `name` (and the key is usable).
bool Granted(int caller, Operation op, const std::string& name) {
  const KeySpec* spec = SpecOf(name);
  if (spec == nullptr || spec->state != offkey::v1::ENABLED) return false;
  switch (caller) {
    case kEdge:
      return spec->edge &&
             (op == offkey::v1::SIGN || op == offkey::v1::DECRYPT_PREMASTER ||
              op == offkey::v1::DERIVE_MASTER_SECRET ||
              op == offkey::v1::GET_CERTIFICATE || op == offkey::v1::LIST_KEYS);
    case kStranger:
      return op == offkey::v1::GET_CERTIFICATE && name == "public";
    default:
      return false;
  }
}

// The key `ref` names, which `caller` must be granted `op` on for an OK answer.
const hsm::KeyInfo& MustBeGranted(const World& world, int caller, Operation op,
                                  const offkey::v1::KeyRef& ref) {
  const hsm::KeyInfo* key = Resolve(world, ref);
  Check(key != nullptr && Granted(caller, op, key->name));
  return *key;
}

void CheckError(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
      return;
    default:
      std::abort();
  }
}

}  // namespace
}  // namespace offkey::service

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace s = offkey::service;
  namespace v1 = offkey::v1;
  if (size < 1) return 0;
  s::World& world = s::TheWorld();
  const int caller_index = data[0] % 5;
  const s::Caller caller{s::kCallers[caller_index]};
  v1::PipelineRequest item;
  if (!item.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  const absl::Time deadline = absl::Now() + absl::Hours(1);
  s::Operations& ops = *world.operations;

  switch (item.op_case()) {
    case v1::PipelineRequest::kSign: {
      absl::StatusOr<v1::SignResponse> r = ops.Sign(caller, item.sign(), deadline);
      if (!r.ok()) return s::CheckError(r.status()), 0;
      const offkey::hsm::KeyInfo& key =
          s::MustBeGranted(world, caller_index, v1::SIGN, item.sign().key());
      s::Check(r->key_id() == key.key_id);
      const offkey::service::tls::SchemeInfo* scheme =
          offkey::service::tls::FindScheme(item.sign().scheme());
      s::Check(scheme != nullptr);
      s::Check(
          offkey::hsm::testing::VerifyWithOpenSsl(key.public_key_spki, scheme->algorithm,
                                                  item.sign().message(), r->signature())
              .ok());
      break;
    }
    case v1::PipelineRequest::kDecryptPremaster: {
      absl::StatusOr<v1::DecryptPremasterResponse> r =
          ops.DecryptPremaster(caller, item.decrypt_premaster(), deadline);
      if (!r.ok()) return s::CheckError(r.status()), 0;
      const offkey::hsm::KeyInfo& key = s::MustBeGranted(
          world, caller_index, v1::DECRYPT_PREMASTER, item.decrypt_premaster().key());
      s::Check(key.name == "rsa");
      s::Check(r->premaster().size() == 48);
      const uint32_t version = item.decrypt_premaster().client_version();
      s::Check(static_cast<uint8_t>(r->premaster()[0]) == (version >> 8) &&
               static_cast<uint8_t>(r->premaster()[1]) == (version & 0xff));
      break;
    }
    case v1::PipelineRequest::kDeriveMasterSecret: {
      absl::StatusOr<v1::DeriveMasterSecretResponse> r =
          ops.DeriveMasterSecret(caller, item.derive_master_secret(), deadline);
      if (!r.ok()) return s::CheckError(r.status()), 0;
      const offkey::hsm::KeyInfo& key =
          s::MustBeGranted(world, caller_index, v1::DERIVE_MASTER_SECRET,
                           item.derive_master_secret().key());
      s::Check(key.name == "rsa");
      s::Check(r->master_secret().size() == 48);
      break;
    }
    case v1::PipelineRequest::kVerifyClient: {
      absl::StatusOr<v1::VerifyClientResponse> r =
          ops.VerifyClient(caller, item.verify_client(), deadline);
      if (!r.ok()) {
        // NOT_FOUND (an unknown bundle) only after authorization.
        if (r.status().code() == absl::StatusCode::kNotFound) {
          s::Check(caller_index == s::kVerifier);
          return 0;
        }
        return s::CheckError(r.status()), 0;
      }
      s::Check(caller_index == s::kVerifier);
      s::Check(r->result() != v1::VERIFIED &&
               r->result() != v1::VERIFY_RESULT_UNSPECIFIED);
      break;
    }
    case v1::PipelineRequest::kGetCertificate: {
      absl::StatusOr<v1::GetCertificateResponse> r =
          ops.GetCertificate(caller, item.get_certificate(), deadline);
      if (!r.ok()) return s::CheckError(r.status()), 0;
      const offkey::hsm::KeyInfo& key = s::MustBeGranted(
          world, caller_index, v1::GET_CERTIFICATE, item.get_certificate().key());
      s::Check(r->key_id() == key.key_id);
      s::Check(r->certificate_chain_size() == 0);
      break;
    }
    case v1::PipelineRequest::OP_NOT_SET: {
      v1::ListKeysRequest request;
      absl::StatusOr<v1::ListKeysResponse> r = ops.ListKeys(caller, request, deadline);
      s::Check(r.ok());
      for (const v1::KeyInfo& key : r->keys()) {
        s::Check(caller_index == s::kEdge && s::SpecOf(key.name()) != nullptr &&
                 s::SpecOf(key.name())->edge);
      }
      break;
    }
  }
  return 0;
}
