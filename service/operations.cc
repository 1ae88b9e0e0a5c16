#include "service/operations.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "hsm/ticket_keys.h"
#include "service/crypto/premaster.h"
#include "service/crypto/substitute.h"
#include "service/crypto/tls_prf.h"
#include "service/secret_fields.h"
#include "service/tickets/ticket_crypto.h"
#include "service/tls/handshake_shape.h"
#include "service/tls/schemes.h"

namespace offkey::service {
namespace {

using offkey::v1::Operation;

constexpr size_t kMaxMessage = 64 * 1024;
constexpr size_t kMaxHandshakeId = 64;
constexpr size_t kMaxSni = 255;

absl::Status ValidateContext(const offkey::v1::TlsContext& context) {
  if (context.handshake_id().size() > kMaxHandshakeId) {
    return absl::InvalidArgumentError(
        absl::StrCat("context.handshake_id: at most ", kMaxHandshakeId, " bytes"));
  }
  if (context.sni().size() > kMaxSni) {
    return absl::InvalidArgumentError(
        absl::StrCat("context.sni: at most ", kMaxSni, " bytes"));
  }
  switch (context.version()) {
    case offkey::v1::TLS_VERSION_UNSPECIFIED:
    case offkey::v1::TLS_1_2:
    case offkey::v1::TLS_1_3:
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "context.version: unknown TLS version 0x", absl::Hex(context.version()),
          " (use TLS_1_2 = 0x0303 or TLS_1_3 = 0x0304)"));
  }
}

// The labels a key may carry (key_catalog.h): anything larger selects nothing and only
// costs work.
absl::Status ValidateLabelSelector(
    const google::protobuf::Map<std::string, std::string>& selector) {
  if (selector.size() > kMaxLabels) {
    return absl::InvalidArgumentError(absl::StrCat("label_selector: at most ", kMaxLabels,
                                                   " entries; got ", selector.size()));
  }
  for (const auto& [key, value] : selector) {
    if (key.size() > kMaxLabelKeyBytes || value.size() > kMaxLabelValueBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("label_selector: label keys are at most ", kMaxLabelKeyBytes,
                       " bytes and values at most ", kMaxLabelValueBytes, "; got a ",
                       key.size(), "-byte key with a ", value.size(), "-byte value"));
    }
  }
  return absl::OkStatus();
}

hsm::CallOptions Options(absl::Time deadline) {
  hsm::CallOptions options;
  options.deadline = deadline;
  return options;
}

// Times the key store calls of one operation: records from construction to Stop(), or
// to destruction when an error returns early, as that operation's time in the HSM.
class HsmTimer {
 public:
  HsmTimer(metrics::Metrics* metrics, offkey::v1::Operation op)
      : metrics_(metrics), op_(op), start_(absl::Now()) {}
  ~HsmTimer() { Stop(); }
  HsmTimer(const HsmTimer&) = delete;
  HsmTimer& operator=(const HsmTimer&) = delete;

  void Stop() {
    if (metrics_ == nullptr) return;
    metrics_->RecordHsmCall(op_, absl::Now() - start_);
    metrics_ = nullptr;
  }

 private:
  metrics::Metrics* metrics_;
  const offkey::v1::Operation op_;
  const absl::Time start_;
};

// The time one ticket operation spent in key store calls, recorded when it ends, if
// the cache had to call the store at all.
class TicketStoreTime {
 public:
  TicketStoreTime(metrics::Metrics* metrics, offkey::v1::Operation op)
      : metrics_(metrics), op_(op) {}
  ~TicketStoreTime() {
    if (metrics_ != nullptr && total_ > absl::ZeroDuration()) {
      metrics_->RecordHsmCall(op_, total_);
    }
  }
  TicketStoreTime(const TicketStoreTime&) = delete;
  TicketStoreTime& operator=(const TicketStoreTime&) = delete;

  absl::Duration* total() { return &total_; }

 private:
  metrics::Metrics* const metrics_;
  const offkey::v1::Operation op_;
  absl::Duration total_;
};

config::KeyFacts FactsOf(const KeyRecord& key) {
  config::KeyFacts facts;
  facts.name = key.info.name;
  for (const auto& [k, v] : key.metadata.labels()) facts.labels[k] = v;
  return facts;
}

}  // namespace

Operations::Operations(hsm::KeyStore* store, KeyCatalog* catalog,
                       std::shared_ptr<const config::Policy> policy,
                       metrics::Metrics* metrics)
    : store_(store),
      catalog_(catalog),
      metrics_(metrics),
      ticket_key_sets_(store),
      policy_(std::move(policy)),
      // No bundles: every VerifyClient gets NOT_FOUND naming its bundle.
      trust_(*clientverify::TrustStore::Load({})) {}

void Operations::SetPolicy(std::shared_ptr<const config::Policy> policy) {
  offkey::MutexLock lock(&mu_);
  policy_ = std::move(policy);
}

void Operations::SetTrustStore(std::shared_ptr<const clientverify::TrustStore> trust) {
  offkey::MutexLock lock(&mu_);
  trust_ = std::move(trust);
}

void Operations::SetHandshakeShapeOptions(const tls::HandshakeShapeOptions& options) {
  offkey::MutexLock lock(&mu_);
  shape_options_ = options;
}

std::shared_ptr<const config::Policy> Operations::policy() const {
  offkey::MutexLock lock(&mu_);
  return policy_;
}

absl::StatusOr<std::shared_ptr<const KeyRecord>> Operations::Authorize(
    const Caller& caller, Operation op, const offkey::v1::KeyRef& ref) {
  if (ref.ref_case() == offkey::v1::KeyRef::REF_NOT_SET) {
    return absl::InvalidArgumentError("key: set one of name, key_id, ski or cert_sha256");
  }
  // One message for "no such key" and "not yours" (in any state): the data plane does
  // not reveal which keys exist to callers without a grant. The catalog answers a miss
  // from memory, as a hit, so neither timing nor an HSM outage tells them apart. What a
  // caller can learn is only about keys its grants select: those get their state
  // (FAILED_PRECONDITION) and the store's errors, since the grant already names them.
  // Built only when refused: an allowed call (every handshake) does not pay for the
  // message and its hex key reference.
  const auto denied = [&] {
    return absl::PermissionDeniedError(absl::StrCat(
        "caller '", caller.identity, "' has no grant for ", OperationName(op), " on key ",
        KeyRefText(ref), ", or no such key exists; ask the operator for a grant"));
  };
  // A caller with no grant for `op` on any key is turned away before the lookup, so its
  // answer never depends on the store (an outage must not tell it which keys exist) and
  // it cannot make the catalog reload.
  const std::shared_ptr<const config::Policy> current = policy();
  if (!current->AllowsKeyless(caller.identity, op)) return denied();
  absl::StatusOr<std::shared_ptr<const KeyRecord>> key = catalog_->Find(ref);
  if (absl::IsNotFound(key.status())) return denied();
  if (!key.ok()) return key.status();
  if (!current->Allows(caller.identity, op, FactsOf(**key))) return denied();
  switch ((*key)->metadata.state()) {
    case offkey::v1::ENABLED:
      return key;
    case offkey::v1::PENDING_DESTRUCTION:
      return absl::FailedPreconditionError(
          absl::StrCat("key '", (*key)->info.name,
                       "' is scheduled for destruction and cannot be used"));
    default:
      return absl::FailedPreconditionError(
          absl::StrCat("key '", (*key)->info.name, "' is disabled"));
  }
}

absl::StatusOr<offkey::v1::SignResponse> Operations::Sign(
    const Caller& caller, const offkey::v1::SignRequest& request, absl::Time deadline) {
  OFFKEY_RETURN_IF_ERROR(ValidateContext(request.context()));
  const tls::SchemeInfo* scheme = tls::FindScheme(request.scheme());
  if (scheme == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("scheme: unknown signature scheme 0x", absl::Hex(request.scheme()),
                     "; use a TLS SignatureScheme code point such as "
                     "ecdsa_secp256r1_sha256 (0x0403)"));
  }
  if (request.message().empty() || request.message().size() > kMaxMessage) {
    return absl::InvalidArgumentError(absl::StrCat(
        "message: must be 1 to ", kMaxMessage, " bytes, got ", request.message().size()));
  }
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const KeyRecord> key,
                          Authorize(caller, offkey::v1::SIGN, request.key()));
  OFFKEY_RETURN_IF_ERROR(tls::CheckScheme(request.scheme(), key->info.algorithm,
                                          request.context().version()));
  if (key->metadata.usage() != offkey::v1::GENERAL_SIGNING) {
    tls::HandshakeShapeOptions shape_options;
    {
      offkey::MutexLock lock(&mu_);
      shape_options = shape_options_;
    }
    OFFKEY_RETURN_IF_ERROR(
        tls::CheckHandshakeShaped(request.message(), *scheme, key->info.algorithm,
                                  request.context().version(), shape_options));
  }
  HsmTimer hsm_timer(metrics_, offkey::v1::SIGN);
  OFFKEY_ASSIGN_OR_RETURN(std::string signature,
                          store_->Sign(key->info.key_id, scheme->algorithm,
                                       request.message(), Options(deadline)));
  hsm_timer.Stop();
  offkey::v1::SignResponse response;
  response.set_signature(std::move(signature));
  response.set_key_id(key->info.key_id);
  return response;
}

absl::StatusOr<SecretBytes> Operations::Premaster(const Caller& caller, Operation op,
                                                  const offkey::v1::KeyRef& ref,
                                                  const offkey::v1::TlsContext& context,
                                                  const std::string& ciphertext,
                                                  uint32_t client_version,
                                                  absl::Time deadline) {
  OFFKEY_RETURN_IF_ERROR(ValidateContext(context));
  if (context.version() == offkey::v1::TLS_1_3) {
    return absl::InvalidArgumentError(
        "context.version: TLS 1.3 has no RSA key exchange; premaster decryption is for "
        "TLS 1.2");
  }
  if (client_version > 0xffff) {
    return absl::InvalidArgumentError(
        "client_version: a 16-bit ClientHello.client_version, e.g. 0x0303");
  }
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const KeyRecord> key,
                          Authorize(caller, op, ref));
  if (key->rsa_modulus_bytes == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key '", key->info.name, "' is ", hsm::KeyAlgorithmName(key->info.algorithm),
        "; TLS 1.2 RSA key exchange needs an RSA key"));
  }
  if (key->metadata.usage() != offkey::v1::TLS_SERVER) {
    return absl::PermissionDeniedError(
        absl::StrCat("key '", key->info.name,
                     "' is not a tls-server key; it cannot decrypt premasters"));
  }
  const size_t k = key->rsa_modulus_bytes;
  if (ciphertext.size() > k) {
    return absl::InvalidArgumentError(
        absl::StrCat("ciphertext: ", ciphertext.size(), " bytes; key '", key->info.name,
                     "' takes at most ", k, " (the modulus size)"));
  }
  // The ciphertext is a big-endian integer (RFC 8017 §7.2.2 step 2a is OS2IP); a shorter
  // encoding, even an empty one (zero), is the same integer as its zero-padded form, and
  // OpenSSL with a local key decrypts it so. Padding here (a public length) gives both
  // forms one decryption and one substitute, so a keyless server answers them as a
  // local-key server does: at Finished, with bad_record_mac.
  const std::string padded = ciphertext.size() == k
                                 ? ciphertext
                                 : std::string(k - ciphertext.size(), '\0') + ciphertext;
  // Both the substitute and the decryption run on every call, whatever the ciphertext
  // holds; SelectPremaster picks between them in constant time.
  const uint16_t version = static_cast<uint16_t>(client_version);
  HsmTimer hsm_timer(metrics_, op);
  OFFKEY_ASSIGN_OR_RETURN(SecretBytes substitute,
                          crypto::ComputeSubstitute(*store_, key->info.key_id, version,
                                                    padded, Options(deadline)));
  OFFKEY_ASSIGN_OR_RETURN(
      SecretBytes decrypted,
      store_->RsaDecryptRaw(key->info.key_id, padded, Options(deadline)));
  hsm_timer.Stop();
  return crypto::SelectPremaster(decrypted, version, substitute);
}

absl::StatusOr<offkey::v1::DecryptPremasterResponse> Operations::DecryptPremaster(
    const Caller& caller, const offkey::v1::DecryptPremasterRequest& request,
    absl::Time deadline) {
  OFFKEY_ASSIGN_OR_RETURN(
      SecretBytes premaster,
      Premaster(caller, offkey::v1::DECRYPT_PREMASTER, request.key(), request.context(),
                request.ciphertext(), request.client_version(), deadline));
  offkey::v1::DecryptPremasterResponse response;
  response.set_premaster(premaster.view().data(), premaster.size());
  return response;
}

absl::StatusOr<offkey::v1::DeriveMasterSecretResponse> Operations::DeriveMasterSecret(
    const Caller& caller, const offkey::v1::DeriveMasterSecretRequest& request,
    absl::Time deadline) {
  hsm::HashAlgorithm hash;
  switch (request.prf_hash()) {
    case offkey::v1::PRF_SHA256:
      hash = hsm::HashAlgorithm::kSha256;
      break;
    case offkey::v1::PRF_SHA384:
      hash = hsm::HashAlgorithm::kSha384;
      break;
    default:
      return absl::InvalidArgumentError(
          "prf_hash: set PRF_SHA256 or PRF_SHA384 (the cipher suite's PRF hash)");
  }
  switch (request.seed_case()) {
    case offkey::v1::DeriveMasterSecretRequest::kRandoms:
      if (request.randoms().client_random().size() != 32 ||
          request.randoms().server_random().size() != 32) {
        return absl::InvalidArgumentError(
            "randoms: client_random and server_random must be 32 bytes each");
      }
      break;
    case offkey::v1::DeriveMasterSecretRequest::kSessionHash:
      if (request.session_hash().size() != hsm::HashLength(hash)) {
        return absl::InvalidArgumentError(
            absl::StrCat("session_hash: ", request.session_hash().size(), " bytes; the ",
                         hsm::HashName(hash), " PRF needs ", hsm::HashLength(hash)));
      }
      break;
    case offkey::v1::DeriveMasterSecretRequest::SEED_NOT_SET:
      return absl::InvalidArgumentError(
          "seed: set randoms (master secret) or session_hash (extended master secret)");
  }
  OFFKEY_ASSIGN_OR_RETURN(
      SecretBytes premaster,
      Premaster(caller, offkey::v1::DERIVE_MASTER_SECRET, request.key(),
                request.context(), request.ciphertext(), request.client_version(),
                deadline));
  absl::StatusOr<SecretBytes> master =
      request.seed_case() == offkey::v1::DeriveMasterSecretRequest::kRandoms
          ? crypto::MasterSecret(hash, premaster, request.randoms().client_random(),
                                 request.randoms().server_random())
          : crypto::ExtendedMasterSecret(hash, premaster, request.session_hash());
  premaster.Clear();
  if (!master.ok()) return master.status();
  offkey::v1::DeriveMasterSecretResponse response;
  response.set_master_secret(master->view().data(), master->size());
  return response;
}

absl::StatusOr<offkey::v1::VerifyClientResponse> Operations::VerifyClient(
    const Caller& caller, const offkey::v1::VerifyClientRequest& request, absl::Time) {
  OFFKEY_RETURN_IF_ERROR(ValidateContext(request.context()));
  std::shared_ptr<const clientverify::TrustStore> trust;
  {
    offkey::MutexLock lock(&mu_);
    if (caller.identity.empty() ||
        !policy_->AllowsKeyless(caller.identity, offkey::v1::VERIFY_CLIENT)) {
      return absl::PermissionDeniedError(
          absl::StrCat("caller '", caller.identity,
                       "' has no grant for verify-client; ask the operator for a grant"));
    }
    trust = trust_;
  }
  return trust->Verify(request, absl::Now());
}

absl::StatusOr<offkey::v1::GetCertificateResponse> Operations::GetCertificate(
    const Caller& caller, const offkey::v1::GetCertificateRequest& request, absl::Time) {
  OFFKEY_RETURN_IF_ERROR(ValidateContext(request.context()));
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const KeyRecord> key,
                          Authorize(caller, offkey::v1::GET_CERTIFICATE, request.key()));
  offkey::v1::GetCertificateResponse response;
  response.set_key_id(key->info.key_id);
  for (const std::string& der : key->chain) response.add_certificate_chain(der);
  // The schemes Sign would accept for this key in context.version (any, when unset).
  for (offkey::v1::SignatureScheme s : tls::SchemesForKey(key->info.algorithm)) {
    if (tls::CheckScheme(s, key->info.algorithm, request.context().version()).ok()) {
      response.add_schemes(s);
    }
  }
  response.set_algorithm(ToProtoAlgorithm(key->info.algorithm));
  return response;
}

absl::StatusOr<offkey::v1::ListKeysResponse> Operations::ListKeys(
    const Caller& caller, const offkey::v1::ListKeysRequest& request, absl::Time) {
  OFFKEY_RETURN_IF_ERROR(ValidateLabelSelector(request.label_selector()));
  OFFKEY_ASSIGN_OR_RETURN(auto keys, catalog_->All());
  std::shared_ptr<const config::Policy> current = policy();
  offkey::v1::ListKeysResponse response;
  for (const auto& key : keys) {
    config::KeyFacts facts = FactsOf(*key);
    if (caller.identity.empty() ||
        !current->Allows(caller.identity, offkey::v1::LIST_KEYS, facts)) {
      continue;
    }
    bool selected = true;
    for (const auto& [k, v] : request.label_selector()) {
      auto it = facts.labels.find(k);
      if (it == facts.labels.end() || it->second != v) selected = false;
    }
    if (!selected) continue;
    *response.add_keys() = ToProtoKeyInfo(*key);
  }
  return response;
}

absl::StatusOr<hsm::TicketKeySetInfo> Operations::AuthorizeTicketKeySet(
    const Caller& caller, Operation op, const std::string& name, absl::Time deadline,
    absl::Duration* store_time) {
  if (name.empty()) {
    return absl::InvalidArgumentError("ticket_key_set: required; name a ticket-key set");
  }
  if (absl::Status valid = hsm::ValidateTicketKeySetName(name); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("ticket_key_set: ", valid.message()));
  }
  // As for keys: one message for "no such set" and "not yours", and a caller without
  // the grant is turned away before the store is asked.
  const auto denied = [&] {
    return absl::PermissionDeniedError(
        absl::StrCat("caller '", caller.identity, "' has no grant for ",
                     OperationName(op), " on ticket-key set '", name,
                     "', or no such set exists; ask the operator for a grant"));
  };
  if (!policy()->AllowsTicketKeySet(caller.identity, op, name)) return denied();
  absl::StatusOr<hsm::TicketKeySetInfo> info =
      ticket_key_sets_.Find(name, Options(deadline), store_time);
  if (absl::IsNotFound(info.status())) return denied();
  return info;
}

absl::StatusOr<offkey::v1::GetTicketKeysResponse> Operations::GetTicketKeys(
    const Caller& caller, const offkey::v1::GetTicketKeysRequest& request,
    absl::Time deadline) {
  TicketStoreTime store_time(metrics_, offkey::v1::GET_TICKET_KEYS);
  OFFKEY_ASSIGN_OR_RETURN(
      hsm::TicketKeySetInfo set,
      AuthorizeTicketKeySet(caller, offkey::v1::GET_TICKET_KEYS, request.ticket_key_set(),
                            deadline, store_time.total()));
  const absl::Time now = ticket_key_sets_.Now();
  const int64_t current = tickets::EpochAt(now, set.rotation_period);
  offkey::v1::GetTicketKeysResponse response;
  response.set_rotation_period_seconds(absl::ToInt64Seconds(set.rotation_period));
  response.set_server_time(absl::ToUnixSeconds(now));
  const auto fill = [&](int64_t epoch, offkey::v1::TicketKey* key) -> absl::Status {
    OFFKEY_ASSIGN_OR_RETURN(
        std::shared_ptr<const tickets::EpochMaterial> material,
        ticket_key_sets_.Material(set, epoch, Options(deadline), store_time.total()));
    key->set_epoch(epoch);
    key->set_name(std::string(material->name()));
    key->set_aes_key(std::string(material->aes_key()));
    key->set_hmac_key(std::string(material->hmac_key()));
    key->set_not_before(
        absl::ToUnixSeconds(tickets::EpochStart(epoch, set.rotation_period)));
    key->set_not_after(
        absl::ToUnixSeconds(tickets::EpochEnd(epoch, set.rotation_period)));
    return absl::OkStatus();
  };
  absl::Status filled = fill(current - 1, response.mutable_previous());
  if (filled.ok()) filled = fill(current, response.mutable_current());
  if (filled.ok()) filled = fill(current + 1, response.mutable_next());
  if (!filled.ok()) {
    WipeSecrets(&response);
    return filled;
  }
  return response;
}

absl::StatusOr<offkey::v1::SealTicketResponse> Operations::SealTicket(
    const Caller& caller, const offkey::v1::SealTicketRequest& request,
    absl::Time deadline) {
  OFFKEY_RETURN_IF_ERROR(ValidateContext(request.context()));
  if (request.plaintext().size() > tickets::kMaxPlaintextBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("plaintext: ", request.plaintext().size(), " bytes; at most ",
                     tickets::kMaxPlaintextBytes, " bytes of session state"));
  }
  if (request.plaintext().empty()) {
    return absl::InvalidArgumentError("plaintext: required; the session state to seal");
  }
  TicketStoreTime store_time(metrics_, offkey::v1::SEAL_TICKET);
  OFFKEY_ASSIGN_OR_RETURN(
      hsm::TicketKeySetInfo set,
      AuthorizeTicketKeySet(caller, offkey::v1::SEAL_TICKET, request.ticket_key_set(),
                            deadline, store_time.total()));
  const int64_t current = tickets::EpochAt(ticket_key_sets_.Now(), set.rotation_period);
  absl::StatusOr<std::shared_ptr<const tickets::EpochMaterial>> material =
      ticket_key_sets_.Material(set, current, Options(deadline), store_time.total());
  if (!material.ok()) return material.status();
  OFFKEY_ASSIGN_OR_RETURN(std::string sealed,
                          tickets::Seal(**material, set.name, request.plaintext()));
  offkey::v1::SealTicketResponse response;
  response.set_sealed(std::move(sealed));
  response.set_epoch(current);
  return response;
}

absl::StatusOr<offkey::v1::UnsealTicketResponse> Operations::UnsealTicket(
    const Caller& caller, const offkey::v1::UnsealTicketRequest& request,
    absl::Time deadline) {
  OFFKEY_RETURN_IF_ERROR(ValidateContext(request.context()));
  if (request.sealed().size() > tickets::kMaxSealedBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("sealed: ", request.sealed().size(), " bytes; at most ",
                     tickets::kMaxSealedBytes, " (what SealTicket makes at most)"));
  }
  if (request.sealed().empty()) {
    return absl::InvalidArgumentError("sealed: required; a ticket from SealTicket");
  }
  TicketStoreTime store_time(metrics_, offkey::v1::UNSEAL_TICKET);
  OFFKEY_ASSIGN_OR_RETURN(
      hsm::TicketKeySetInfo set,
      AuthorizeTicketKeySet(caller, offkey::v1::UNSEAL_TICKET, request.ticket_key_set(),
                            deadline, store_time.total()));
  const int64_t current = tickets::EpochAt(ticket_key_sets_.Now(), set.rotation_period);
  absl::StatusOr<tickets::Unsealed> unsealed =
      tickets::Unseal(set.name, request.sealed(), current, [&](int64_t epoch) {
        return ticket_key_sets_.Material(set, epoch, Options(deadline),
                                         store_time.total());
      });
  if (!unsealed.ok()) return unsealed.status();
  offkey::v1::UnsealTicketResponse response;
  if (unsealed->epoch.has_value()) response.set_epoch(*unsealed->epoch);
  switch (unsealed->result) {
    case tickets::Unsealed::Result::kOpened:
      response.set_result(offkey::v1::UnsealTicketResponse::OPENED);
      response.set_plaintext(unsealed->plaintext.view().data(),
                             unsealed->plaintext.size());
      response.set_renew(unsealed->renew);
      break;
    case tickets::Unsealed::Result::kExpired:
      response.set_result(offkey::v1::UnsealTicketResponse::EXPIRED);
      break;
    case tickets::Unsealed::Result::kInvalid:
      response.set_result(offkey::v1::UnsealTicketResponse::INVALID);
      break;
  }
  return response;
}

}  // namespace offkey::service
