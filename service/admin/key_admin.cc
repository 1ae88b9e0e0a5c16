#include "service/admin/key_admin.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/pem.h"
#include "base/status_macros.h"
#include "hsm/ticket_keys.h"
#include "service/admin/csr.h"
#include "service/admin/private_key_import.h"
#include "service/proto_convert.h"
#include "service/tickets/ticket_crypto.h"
#include "service/tls/schemes.h"

namespace offkey::service::admin {
namespace {

constexpr int kMetadataFormat = 1;
constexpr int64_t kDefaultPendingSeconds = 7 * 24 * 3600;
// Shorter windows need the request's force.
constexpr int64_t kMinPendingSeconds = 24 * 3600;
constexpr int64_t kMaxPendingSeconds = 90 * 24 * 3600;
constexpr size_t kMaxChainCerts = 10;
constexpr size_t kMaxCertBytes = 64 * 1024;
constexpr size_t kMaxChainPem = 1024 * 1024;
// CreateTicketKeySetRequest.rotation_period_seconds.
constexpr int64_t kDefaultRotationSeconds = 3600;
constexpr int64_t kMinRotationSeconds = 10;
constexpr int64_t kMaxRotationSeconds = 7 * 24 * 3600;

absl::Status CheckUsage(v1::KeyUsage usage) {
  if (usage == v1::KEY_USAGE_UNSPECIFIED || usage == v1::TLS_SERVER ||
      usage == v1::GENERAL_SIGNING) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("usage: ", static_cast<int>(usage),
                   " is not a KeyUsage (TLS_SERVER or GENERAL_SIGNING)"));
}

std::string PublicKeyPem(const std::string& spki) {
  EvpPkeyPtr key;
  if (!ParseSpki(spki, &key).ok()) return "";
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), key.get());
  return BioContents(bio.get());
}

// One certificate of the chain, `where` naming it in errors. It must be DER exactly as
// OpenSSL writes it back: the chain is stored re-encoded (and served so by
// GetCertificate), and an encoding that does not survive that would be attached
// altered.
absl::StatusOr<X509Ptr> ParseCertificateDer(const std::string& der,
                                            absl::string_view where) {
  if (der.size() > kMaxCertBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": at most ", kMaxCertBytes, " bytes"));
  }
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr ||
      p != reinterpret_cast<const unsigned char*>(der.data()) + der.size() ||
      CertificateDer(cert.get()) != der) {
    DrainOpenSslErrors();
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": not a DER X.509 certificate"));
  }
  return cert;
}

// Parses the request's chain into certificates, leaf first.
absl::StatusOr<std::vector<X509Ptr>> ParseChain(
    const v1::AttachCertificateRequest& request) {
  std::vector<X509Ptr> chain;
  switch (request.chain_case()) {
    case v1::AttachCertificateRequest::kChainDer:
      for (int i = 0; i < request.chain_der().certificates_size(); ++i) {
        OFFKEY_ASSIGN_OR_RETURN(
            X509Ptr cert,
            ParseCertificateDer(request.chain_der().certificates(i),
                                absl::StrCat("chain_der.certificates[", i, "]")));
        chain.push_back(std::move(cert));
      }
      break;
    case v1::AttachCertificateRequest::kChainPem: {
      PemOptions options;
      options.max_input_bytes = kMaxChainPem;
      absl::StatusOr<std::vector<std::string>> ders =
          ReadPemCertificatesDer(request.chain_pem(), options);
      if (!ders.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("chain_pem: ", ders.status().message()));
      }
      for (size_t i = 0; i < ders->size(); ++i) {
        OFFKEY_ASSIGN_OR_RETURN(
            X509Ptr cert,
            ParseCertificateDer((*ders)[i],
                                absl::StrCat("chain_pem: certificate ", i + 1)));
        chain.push_back(std::move(cert));
      }
      break;
    }
    case v1::AttachCertificateRequest::CHAIN_NOT_SET:
      break;
  }
  if (chain.empty() || chain.size() > kMaxChainCerts) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chain: 1..", kMaxChainCerts, " certificates, leaf first; got ", chain.size()));
  }
  return chain;
}

std::string Subject(X509* cert) {
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof(buf));
  return buf;
}

}  // namespace

absl::Status CheckKeyName(absl::string_view name) {
  const bool ok = !name.empty() && name.size() <= 64 && absl::ascii_isalnum(name[0]) &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
                  });
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("name: '", name.substr(0, 80),
                   "' must be 1..64 characters of A-Z a-z 0-9 . _ -, starting with a "
                   "letter or digit"));
}

absl::Status CheckLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels: at most ", kMaxLabels, "; got ", labels.size()));
  }
  for (const auto& [key, value] : labels) {
    const bool key_ok =
        !key.empty() && key.size() <= kMaxLabelKeyBytes && absl::ascii_islower(key[0]) &&
        std::all_of(key.begin(), key.end(), [](char c) {
          return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' || c == '-';
        });
    if (!key_ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "labels: key '", key.substr(0, 80), "' must be 1..", kMaxLabelKeyBytes,
          " characters of a-z 0-9 _ -, starting with a letter"));
    }
    // UTF-8 is the wire's to enforce: protobuf refuses a proto3 string that is not.
    if (value.size() > kMaxLabelValueBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("labels[", key, "]: the value must be at most ",
                       kMaxLabelValueBytes, " bytes of UTF-8"));
    }
  }
  return absl::OkStatus();
}

KeyAdmin::KeyAdmin(hsm::KeyStore* store, KeyCatalog* catalog, Clock clock)
    : store_(store), catalog_(catalog), clock_(std::move(clock)) {}

absl::StatusOr<std::shared_ptr<const KeyRecord>> KeyAdmin::Fresh(const v1::KeyRef& ref) {
  OFFKEY_RETURN_IF_ERROR(catalog_->Refresh());
  return catalog_->Find(ref);
}

void KeyAdmin::Publish() {
  // If the token cannot be read right now, the next lookup reloads instead.
  if (!catalog_->Refresh().ok()) catalog_->Invalidate();
}

absl::StatusOr<v1::KeyInfo> KeyAdmin::Store(const KeyRecord& key,
                                            const v1::KeyMetadata& metadata) {
  OFFKEY_RETURN_IF_ERROR(
      store_->PutMetadata(key.info.key_id, metadata.SerializeAsString()));
  KeyRecord updated = key;
  updated.metadata = metadata;
  Publish();
  return ToProtoKeyInfo(updated);
}

absl::StatusOr<v1::KeyInfo> KeyAdmin::AddKey(
    const std::string& name, v1::KeyUsage usage,
    const google::protobuf::Map<std::string, std::string>& labels,
    const std::function<absl::StatusOr<hsm::KeyInfo>()>& make) {
  OFFKEY_RETURN_IF_ERROR(CheckKeyName(name));
  OFFKEY_RETURN_IF_ERROR(CheckUsage(usage));
  OFFKEY_RETURN_IF_ERROR(CheckLabels(labels));
  offkey::MutexLock lock(&write_mu_);
  absl::StatusOr<hsm::KeyInfo> made = make();
  if (absl::IsUnimplemented(made.status())) {
    return absl::InvalidArgumentError(made.status().message());
  }
  OFFKEY_RETURN_IF_ERROR(made.status());
  KeyRecord record;
  record.info = *std::move(made);
  record.metadata.set_format_version(kMetadataFormat);
  record.metadata.set_usage(usage == v1::KEY_USAGE_UNSPECIFIED ? v1::TLS_SERVER : usage);
  record.metadata.set_state(v1::ENABLED);
  *record.metadata.mutable_labels() = labels;
  record.metadata.set_create_time(absl::ToUnixSeconds(clock_()));
  absl::StatusOr<v1::KeyInfo> stored = Store(record, record.metadata);
  if (!stored.ok()) {
    // No half-made key: without its metadata it would read as ENABLED TLS_SERVER.
    (void)store_->DestroyKey(record.info.key_id);
    Publish();
  }
  return stored;
}

absl::StatusOr<v1::CreateKeyResponse> KeyAdmin::CreateKey(
    const v1::CreateKeyRequest& request) {
  const hsm::KeyAlgorithm algorithm = FromProtoAlgorithm(request.algorithm());
  if (algorithm == hsm::KeyAlgorithm::kUnknown) {
    return absl::InvalidArgumentError(
        "algorithm: required; one of RSA_2048, RSA_3072, RSA_4096, EC_P256, EC_P384, "
        "EC_P521, ED25519_KEY");
  }
  v1::CreateKeyResponse response;
  OFFKEY_ASSIGN_OR_RETURN(*response.mutable_key(),
                          AddKey(request.name(), request.usage(), request.labels(), [&] {
                            return store_->GenerateKey(request.name(), algorithm);
                          }));
  return response;
}

absl::StatusOr<v1::ImportKeyResponse> KeyAdmin::ImportKey(
    const v1::ImportKeyRequest& request) {
  const SecretBytes input(request.private_key());
  const SecretBytes passphrase(request.passphrase());
  OFFKEY_ASSIGN_OR_RETURN(SecretBytes pkcs8, NormalizePrivateKey(input, passphrase));
  v1::ImportKeyResponse response;
  OFFKEY_ASSIGN_OR_RETURN(*response.mutable_key(),
                          AddKey(request.name(), request.usage(), request.labels(), [&] {
                            return store_->ImportKey(request.name(), pkcs8);
                          }));
  return response;
}

absl::StatusOr<v1::AdminListKeysResponse> KeyAdmin::ListKeys(
    const v1::AdminListKeysRequest& request) {
  if (request.label_selector_size() > 64) {
    return absl::InvalidArgumentError("label_selector: at most 64 entries");
  }
  OFFKEY_RETURN_IF_ERROR(catalog_->Refresh());
  OFFKEY_ASSIGN_OR_RETURN(auto keys, catalog_->All());
  v1::AdminListKeysResponse response;
  for (const auto& key : keys) {
    if (request.state() != v1::KEY_STATE_UNSPECIFIED &&
        key->metadata.state() != request.state()) {
      continue;
    }
    if (request.algorithm() != v1::KEY_ALGORITHM_UNSPECIFIED &&
        ToProtoAlgorithm(key->info.algorithm) != request.algorithm()) {
      continue;
    }
    bool match = true;
    for (const auto& [label, value] : request.label_selector()) {
      auto it = key->metadata.labels().find(label);
      if (it == key->metadata.labels().end() || it->second != value) match = false;
    }
    if (match) *response.add_keys() = ToProtoKeyInfo(*key);
  }
  return response;
}

absl::StatusOr<v1::GetKeyResponse> KeyAdmin::GetKey(const v1::GetKeyRequest& request) {
  OFFKEY_ASSIGN_OR_RETURN(auto key, Fresh(request.key()));
  v1::GetKeyResponse response;
  v1::KeyDetails* details = response.mutable_key();
  *details->mutable_info() = ToProtoKeyInfo(*key);
  details->set_public_key_pem(PublicKeyPem(key->info.public_key_spki));
  for (const std::string& der : key->chain) details->add_certificate_chain(der);
  return response;
}

absl::StatusOr<v1::UpdateKeyResponse> KeyAdmin::UpdateKey(
    const v1::UpdateKeyRequest& request) {
  OFFKEY_RETURN_IF_ERROR(CheckUsage(request.usage()));
  if (request.replace_labels() && request.remove_labels_size() > 0) {
    return absl::InvalidArgumentError(
        "remove_labels cannot be combined with replace_labels (replace_labels already "
        "drops every label not given)");
  }
  for (const std::string& label : request.remove_labels()) {
    if (request.labels().contains(label)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "label '", label, "' is both in labels and in remove_labels; pick one"));
    }
  }
  offkey::MutexLock lock(&write_mu_);
  OFFKEY_ASSIGN_OR_RETURN(auto key, Fresh(request.key()));
  v1::KeyMetadata metadata = key->metadata;
  if (request.replace_labels()) metadata.clear_labels();
  for (const auto& [label, value] : request.labels()) {
    (*metadata.mutable_labels())[label] = value;
  }
  for (const std::string& label : request.remove_labels()) {
    metadata.mutable_labels()->erase(label);
  }
  OFFKEY_RETURN_IF_ERROR(CheckLabels(metadata.labels()));
  if (request.usage() != v1::KEY_USAGE_UNSPECIFIED) metadata.set_usage(request.usage());
  v1::UpdateKeyResponse response;
  OFFKEY_ASSIGN_OR_RETURN(*response.mutable_key(), Store(*key, metadata));
  return response;
}

absl::StatusOr<v1::KeyInfo> KeyAdmin::SetState(const v1::KeyRef& ref, v1::KeyState to) {
  offkey::MutexLock lock(&write_mu_);
  OFFKEY_ASSIGN_OR_RETURN(auto key, Fresh(ref));
  if (key->metadata.state() == v1::PENDING_DESTRUCTION) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key '", key->info.name,
        "' is pending destruction; cancel the destruction first (CancelKeyDestruction)"));
  }
  if (key->metadata.state() == to) return ToProtoKeyInfo(*key);  // Idempotent.
  v1::KeyMetadata metadata = key->metadata;
  metadata.set_state(to);
  return Store(*key, metadata);
}

absl::StatusOr<v1::EnableKeyResponse> KeyAdmin::EnableKey(
    const v1::EnableKeyRequest& request) {
  v1::EnableKeyResponse response;
  OFFKEY_ASSIGN_OR_RETURN(*response.mutable_key(), SetState(request.key(), v1::ENABLED));
  return response;
}

absl::StatusOr<v1::DisableKeyResponse> KeyAdmin::DisableKey(
    const v1::DisableKeyRequest& request) {
  v1::DisableKeyResponse response;
  OFFKEY_ASSIGN_OR_RETURN(*response.mutable_key(), SetState(request.key(), v1::DISABLED));
  return response;
}

absl::StatusOr<v1::ScheduleKeyDestructionResponse> KeyAdmin::ScheduleKeyDestruction(
    const v1::ScheduleKeyDestructionRequest& request) {
  int64_t window = request.pending_window_seconds();
  if (window == 0) window = kDefaultPendingSeconds;
  if (window < 1 || window > kMaxPendingSeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat("pending_window_seconds: ", kMinPendingSeconds, " (24 hours)..",
                     kMaxPendingSeconds, " (90 days), or 0 for 7 days; got ",
                     request.pending_window_seconds()));
  }
  if (window < kMinPendingSeconds && !request.force()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pending_window_seconds: ", window, " is shorter than 24 hours (",
        kMinPendingSeconds,
        "), too little time to notice a mistake; set force to schedule it anyway"));
  }
  offkey::MutexLock lock(&write_mu_);
  OFFKEY_ASSIGN_OR_RETURN(auto key, Fresh(request.key()));
  if (key->metadata.state() == v1::PENDING_DESTRUCTION) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key '", key->info.name, "' is already pending destruction (at ",
        absl::FormatTime(absl::FromUnixSeconds(key->metadata.destroy_time())), ")"));
  }
  v1::KeyMetadata metadata = key->metadata;
  metadata.set_state(v1::PENDING_DESTRUCTION);
  metadata.set_destroy_time(absl::ToUnixSeconds(clock_()) + window);
  v1::ScheduleKeyDestructionResponse response;
  OFFKEY_ASSIGN_OR_RETURN(*response.mutable_key(), Store(*key, metadata));
  return response;
}

absl::StatusOr<v1::CancelKeyDestructionResponse> KeyAdmin::CancelKeyDestruction(
    const v1::CancelKeyDestructionRequest& request) {
  offkey::MutexLock lock(&write_mu_);
  OFFKEY_ASSIGN_OR_RETURN(auto key, Fresh(request.key()));
  if (key->metadata.state() != v1::PENDING_DESTRUCTION) {
    return absl::FailedPreconditionError(
        absl::StrCat("key '", key->info.name, "' is not pending destruction"));
  }
  v1::KeyMetadata metadata = key->metadata;
  metadata.set_state(v1::DISABLED);
  metadata.clear_destroy_time();
  v1::CancelKeyDestructionResponse response;
  OFFKEY_ASSIGN_OR_RETURN(*response.mutable_key(), Store(*key, metadata));
  return response;
}

absl::StatusOr<v1::DestroyKeyResponse> KeyAdmin::DestroyKey(
    const v1::DestroyKeyRequest& request) {
  if (!request.force()) {
    return absl::InvalidArgumentError(
        "force: destroying a key now is irreversible and needs force = true; "
        "ScheduleKeyDestruction is the safe path");
  }
  offkey::MutexLock lock(&write_mu_);
  OFFKEY_ASSIGN_OR_RETURN(auto key, Fresh(request.key()));
  OFFKEY_RETURN_IF_ERROR(store_->DestroyKey(key->info.key_id));
  Publish();
  v1::DestroyKeyResponse response;
  response.set_name(key->info.name);
  response.set_key_id(key->info.key_id);
  return response;
}

absl::StatusOr<std::vector<std::string>> KeyAdmin::DestroyDue() {
  offkey::MutexLock lock(&write_mu_);
  const int64_t now = absl::ToUnixSeconds(clock_());
  auto due = [now](const v1::KeyMetadata& metadata) {
    return metadata.state() == v1::PENDING_DESTRUCTION && metadata.destroy_time() <= now;
  };
  // The catalog's snapshot (at most its TTL old) is recent enough to tell which keys
  // may be due; a forced reload every interval would cost a token walk.
  OFFKEY_ASSIGN_OR_RETURN(auto keys, catalog_->All());
  std::vector<std::string> destroyed;
  bool changed = false;
  for (const auto& key : keys) {
    if (!due(key->metadata)) continue;
    changed = true;
    // But destruction is irreversible, so it follows the token as it is now, read just
    // before destroying: another replica may have cancelled since the snapshot, or
    // while this pass destroyed an earlier key.
    absl::StatusOr<std::string> blob = store_->GetMetadata(key->info.key_id);
    if (absl::IsNotFound(blob.status())) continue;  // Another replica may have won.
    OFFKEY_RETURN_IF_ERROR(blob.status());
    absl::StatusOr<v1::KeyMetadata> current = ParseKeyMetadata(*blob);
    if (!current.ok() || !due(*current)) continue;  // Unreadable state destroys nothing.
    absl::Status s = store_->DestroyKey(key->info.key_id);
    if (absl::IsNotFound(s)) continue;
    OFFKEY_RETURN_IF_ERROR(s);
    destroyed.push_back(key->info.name);
  }
  if (changed) Publish();
  return destroyed;
}

absl::StatusOr<v1::CreateCsrResponse> KeyAdmin::CreateCsr(
    const v1::CreateCsrRequest& request) {
  OFFKEY_ASSIGN_OR_RETURN(auto key, Fresh(request.key()));
  if (key->metadata.state() != v1::ENABLED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key '", key->info.name, "' is not ENABLED; enable it to make a CSR"));
  }
  CsrSpec spec;
  spec.subject = request.subject();
  spec.dns_names.assign(request.dns_names().begin(), request.dns_names().end());
  spec.ip_addresses.assign(request.ip_addresses().begin(), request.ip_addresses().end());
  spec.uris.assign(request.uris().begin(), request.uris().end());
  spec.public_key_spki = key->info.public_key_spki;
  spec.scheme = request.scheme();
  if (spec.scheme == v1::SIGNATURE_SCHEME_UNSPECIFIED) {
    spec.scheme = tls::DefaultCsrScheme(key->info.algorithm);
    if (spec.scheme == v1::SIGNATURE_SCHEME_UNSPECIFIED) {
      return absl::FailedPreconditionError("the key's algorithm is unknown");
    }
  }
  OFFKEY_RETURN_IF_ERROR(
      tls::CheckScheme(spec.scheme, key->info.algorithm, v1::TLS_VERSION_UNSPECIFIED));
  const std::string key_id = key->info.key_id;
  OFFKEY_ASSIGN_OR_RETURN(
      Csr csr, MakeCsr(spec, [&](v1::SignatureScheme scheme, absl::string_view info) {
        return store_->Sign(key_id, tls::FindScheme(scheme)->algorithm, info, {});
      }));
  v1::CreateCsrResponse response;
  response.set_csr_pem(csr.pem);
  response.set_csr_der(csr.der);
  return response;
}

absl::StatusOr<v1::AttachCertificateResponse> KeyAdmin::AttachCertificate(
    const v1::AttachCertificateRequest& request) {
  OFFKEY_ASSIGN_OR_RETURN(std::vector<X509Ptr> chain, ParseChain(request));
  offkey::MutexLock lock(&write_mu_);
  OFFKEY_ASSIGN_OR_RETURN(auto key, Fresh(request.key()));
  unsigned char* spki = nullptr;
  const int spki_len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(chain[0].get()), &spki);
  const bool matches = spki_len > 0 && std::string(reinterpret_cast<char*>(spki),
                                                   spki_len) == key->info.public_key_spki;
  OPENSSL_free(spki);
  if (!matches) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the leaf certificate (", Subject(chain[0].get()), ") is for another key, not '",
        key->info.name, "'; attach the certificate issued for this key's CSR"));
  }
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    EVP_PKEY* issuer_key = X509_get0_pubkey(chain[i + 1].get());
    if (X509_check_issued(chain[i + 1].get(), chain[i].get()) != X509_V_OK ||
        issuer_key == nullptr || X509_verify(chain[i].get(), issuer_key) != 1) {
      DrainOpenSslErrors();
      return absl::InvalidArgumentError(absl::StrCat(
          "chain: certificate ", i + 1, " (", Subject(chain[i].get()),
          ") is not issued and signed by certificate ", i + 2, " (",
          Subject(chain[i + 1].get()), "); give the chain leaf first, in issuing order"));
    }
  }
  if (!request.force()) {
    const time_t now = absl::ToTimeT(clock_());
    for (size_t i = 0; i < chain.size(); ++i) {
      time_t t = now;
      const bool not_yet = X509_cmp_time(X509_get0_notBefore(chain[i].get()), &t) > 0;
      const bool expired = X509_cmp_time(X509_get0_notAfter(chain[i].get()), &t) < 0;
      if (not_yet || expired) {
        return absl::FailedPreconditionError(absl::StrCat(
            "chain: certificate ", i + 1, " (", Subject(chain[i].get()), ") is ",
            expired ? "expired" : "not yet valid", "; set force to attach it anyway"));
      }
    }
  }
  std::vector<std::string> der;
  for (const X509Ptr& cert : chain) der.push_back(CertificateDer(cert.get()));
  OFFKEY_RETURN_IF_ERROR(store_->PutCertificateChain(key->info.key_id, der));
  Publish();
  v1::KeyRef by_id;
  by_id.set_key_id(key->info.key_id);
  OFFKEY_ASSIGN_OR_RETURN(auto updated, catalog_->Find(by_id));
  v1::AttachCertificateResponse response;
  *response.mutable_key() = ToProtoKeyInfo(*updated);
  return response;
}

v1::TicketKeySetInfo KeyAdmin::ToProto(const hsm::TicketKeySetInfo& info) const {
  v1::TicketKeySetInfo out;
  out.set_name(info.name);
  out.set_rotation_period_seconds(absl::ToInt64Seconds(info.rotation_period));
  out.set_create_time(absl::ToUnixSeconds(info.create_time));
  const int64_t current = tickets::EpochAt(clock_(), info.rotation_period);
  out.set_current_epoch(current);
  out.set_next_rotation_time(
      absl::ToUnixSeconds(tickets::EpochEnd(current, info.rotation_period)));
  return out;
}

absl::StatusOr<v1::CreateTicketKeySetResponse> KeyAdmin::CreateTicketKeySet(
    const v1::CreateTicketKeySetRequest& request) {
  if (absl::Status valid = hsm::ValidateTicketKeySetName(request.name()); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("name: ", valid.message()));
  }
  int64_t period = request.rotation_period_seconds();
  if (period == 0) period = kDefaultRotationSeconds;
  if (period < kMinRotationSeconds || period > kMaxRotationSeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat("rotation_period_seconds: ", request.rotation_period_seconds(),
                     "; use 0 (", kDefaultRotationSeconds, ", one hour) or ",
                     kMinRotationSeconds, "..", kMaxRotationSeconds, " (one week)"));
  }
  offkey::MutexLock lock(&write_mu_);
  OFFKEY_ASSIGN_OR_RETURN(
      hsm::TicketKeySetInfo info,
      store_->CreateTicketKeySet(request.name(), absl::Seconds(period)));
  v1::CreateTicketKeySetResponse response;
  *response.mutable_ticket_key_set() = ToProto(info);
  return response;
}

absl::StatusOr<v1::ListTicketKeySetsResponse> KeyAdmin::ListTicketKeySets(
    const v1::ListTicketKeySetsRequest&) {
  OFFKEY_ASSIGN_OR_RETURN(std::vector<hsm::TicketKeySetInfo> sets,
                          store_->ListTicketKeySets());
  std::sort(sets.begin(), sets.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  v1::ListTicketKeySetsResponse response;
  for (const hsm::TicketKeySetInfo& info : sets) {
    *response.add_ticket_key_sets() = ToProto(info);
  }
  return response;
}

absl::StatusOr<v1::GetTicketKeySetResponse> KeyAdmin::GetTicketKeySet(
    const v1::GetTicketKeySetRequest& request) {
  if (request.name().empty()) {
    return absl::InvalidArgumentError("name: required; the ticket-key set's name");
  }
  OFFKEY_ASSIGN_OR_RETURN(hsm::TicketKeySetInfo info,
                          store_->FindTicketKeySet(request.name()));
  v1::GetTicketKeySetResponse response;
  *response.mutable_ticket_key_set() = ToProto(info);
  return response;
}

absl::StatusOr<v1::DestroyTicketKeySetResponse> KeyAdmin::DestroyTicketKeySet(
    const v1::DestroyTicketKeySetRequest& request) {
  if (request.name().empty()) {
    return absl::InvalidArgumentError("name: required; the ticket-key set's name");
  }
  if (!request.force()) {
    return absl::InvalidArgumentError(
        "force: destroying a ticket-key set is irreversible (every ticket it sealed and "
        "every key it derived stops resuming sessions) and needs force = true");
  }
  offkey::MutexLock lock(&write_mu_);
  OFFKEY_RETURN_IF_ERROR(store_->DestroyTicketKeySet(request.name()));
  if (ticket_key_set_destroyed_) ticket_key_set_destroyed_(request.name());
  v1::DestroyTicketKeySetResponse response;
  response.set_name(request.name());
  return response;
}

}  // namespace offkey::service::admin
