#include "hsm/testing/fake_key_store.h"

#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/pem.h"
#include "base/status_macros.h"
#include "hsm/openssl_key.h"
#include "hsm/pkcs11/key_encoding.h"
#include "hsm/right_align.h"
#include "hsm/ticket_keys.h"

namespace offkey::hsm::testing {
namespace {

using ::offkey::hsm::pkcs11::MessageDigest;
using ::offkey::hsm::pkcs11::SkiOfSpki;
using ::offkey::hsm::pkcs11::SpkiOf;

// The limits the PKCS#11 store has, so that tests against the fake meet them too.
constexpr size_t kMaxChain = 16;
constexpr size_t kMaxMetadata = 64 * 1024;
constexpr size_t kHmacKeySize = 32;

std::string Hex(absl::string_view bytes) { return absl::BytesToHexString(bytes); }

// A key pair and its public facts; never changes once made.
struct KeyMaterial {
  KeyInfo info;
  EvpPkeyPtr pkey;
  std::string modulus;  // RSA only: big-endian, exactly the modulus size.
};

// A ticket-key set: its root secret and what is recorded beside it.
struct TicketSet {
  TicketKeySetInfo info;
  SecretBytes root;
};

struct Entry {
  std::shared_ptr<const KeyMaterial> key;
  std::vector<std::string> chain;
  std::optional<std::string> metadata;
};

absl::Status NoKey(absl::string_view key_id) {
  return absl::NotFoundError(absl::StrCat("no key with id ", Hex(key_id)));
}

absl::Status NoTicketSet(absl::string_view name) {
  return absl::NotFoundError(absl::StrCat("no ticket-key set named '", name, "'"));
}

// HMAC-SHA256 of `data` under `key` into `mac` (32 bytes).
absl::Status HmacSha256(const SecretBytes& key, absl::string_view data,
                        SecretBytes& mac) {
  unsigned int len = 0;
  if (HMAC(MessageDigest(HashAlgorithm::kSha256), key.data(),
           static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(),
           &len) == nullptr ||
      len != mac.size()) {
    return OpenSslError(absl::StatusCode::kInternal, "HMAC-SHA256");
  }
  return absl::OkStatus();
}

absl::StatusOr<SecretBytes> RandomSecret(size_t n) {
  SecretBytes fresh(n);
  if (RAND_bytes(fresh.data(), static_cast<int>(fresh.size())) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "RAND_bytes");
  }
  return fresh;
}

}  // namespace

struct FakeKeyStore::Backing {
  offkey::Mutex mu;
  absl::flat_hash_map<std::string, Entry> keys ABSL_GUARDED_BY(mu);  // By key id.
  SecretBytes store_secret ABSL_GUARDED_BY(mu);  // Empty until first used.
  absl::flat_hash_map<std::string, TicketSet> ticket_sets ABSL_GUARDED_BY(mu);

  // The key `key_id`, to use outside the lock; NOT_FOUND if there is none.
  absl::StatusOr<std::shared_ptr<const KeyMaterial>> Key(absl::string_view key_id) {
    offkey::MutexLock lock(&mu);
    auto it = keys.find(key_id);
    if (it == keys.end()) return NoKey(key_id);
    return it->second.key;
  }

  bool NameTaken(absl::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (const auto& [id, entry] : keys) {
      if (entry.key->info.name == name) return true;
    }
    return false;
  }

  // Adds `pkey` under `name`: ALREADY_EXISTS when the name or the key is taken.
  absl::StatusOr<KeyInfo> Add(absl::string_view name, EvpPkeyPtr pkey) {
    auto key = std::make_shared<KeyMaterial>();
    key->info.algorithm = KeyAlgorithmOf(pkey.get());
    if (key->info.algorithm == KeyAlgorithm::kUnknown) {
      return UnsupportedKeyError(pkey.get());
    }
    OFFKEY_ASSIGN_OR_RETURN(key->info.public_key_spki, SpkiOf(pkey.get()));
    OFFKEY_ASSIGN_OR_RETURN(key->info.ski, SkiOfSpki(key->info.public_key_spki));
    key->info.key_id = key->info.ski;
    key->info.name = std::string(name);
    if (FamilyOf(key->info.algorithm) == KeyFamily::kRsa) {
      BIGNUM* n = nullptr;
      if (EVP_PKEY_get_bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_N, &n) != 1) {
        return OpenSslError(absl::StatusCode::kInvalidArgument, "RSA modulus");
      }
      BignumPtr owned(n);
      key->modulus.resize(KeyBits(key->info.algorithm) / 8);
      BN_bn2binpad(n, reinterpret_cast<unsigned char*>(key->modulus.data()),
                   static_cast<int>(key->modulus.size()));
    }
    key->pkey = std::move(pkey);
    offkey::MutexLock lock(&mu);
    if (NameTaken(name)) {
      return absl::AlreadyExistsError(absl::StrCat("a key named '", name, "' exists"));
    }
    auto it = keys.find(key->info.key_id);
    if (it != keys.end()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "this key is already in the store as '", it->second.key->info.name, "'"));
    }
    KeyInfo info = key->info;
    keys[info.key_id].key = std::move(key);
    return info;
  }
};

absl::string_view FakeKeyStore::MethodName(Method method) {
  static constexpr absl::string_view kNames[kMethodCount] = {"kGenerateKey",
                                                             "kImportKey",
                                                             "kFindKey",
                                                             "kListKeys",
                                                             "kDestroyKey",
                                                             "kPutCertificateChain",
                                                             "kGetCertificateChain",
                                                             "kPutMetadata",
                                                             "kGetMetadata",
                                                             "kSign",
                                                             "kRsaDecryptRaw",
                                                             "kHmacWithStoreSecret",
                                                             "kCreateTicketKeySet",
                                                             "kListTicketKeySets",
                                                             "kFindTicketKeySet",
                                                             "kDestroyTicketKeySet",
                                                             "kDeriveTicketEpochSecret",
                                                             "kCheckHealth"};
  return kNames[static_cast<int>(method)];
}

std::unique_ptr<FakeKeyStore> FakeKeyStore::Create() {
  return std::unique_ptr<FakeKeyStore>(new FakeKeyStore(std::make_shared<Backing>()));
}

FakeKeyStore::FakeKeyStore(std::shared_ptr<Backing> backing)
    : backing_(std::move(backing)) {}

std::unique_ptr<FakeKeyStore> FakeKeyStore::OpenAnother() const {
  return std::unique_ptr<FakeKeyStore>(new FakeKeyStore(backing_));
}

// --- Fault injection.

void FakeKeyStore::SetFault(Method method, int from_now, int to_now,
                            absl::Status status) {
  offkey::MutexLock lock(&mu_);
  const int i = static_cast<int>(method);
  const int calls = calls_[i];
  Fault& fault = faults_[i];
  fault.status = std::move(status);
  fault.first = calls + std::max(from_now, 1);
  fault.last =
      to_now == std::numeric_limits<int>::max() ? to_now : calls + std::max(to_now, 1);
}

void FakeKeyStore::Fail(Method method, absl::Status status) {
  SetFault(method, 1, std::numeric_limits<int>::max(), std::move(status));
}

void FakeKeyStore::FailFromCall(Method method, int n, absl::Status status) {
  SetFault(method, n, std::numeric_limits<int>::max(), std::move(status));
}

void FakeKeyStore::FailCall(Method method, int n, absl::Status status) {
  SetFault(method, n, n, std::move(status));
}

void FakeKeyStore::SetLatency(Method method, absl::Duration latency) {
  offkey::MutexLock lock(&mu_);
  faults_[static_cast<int>(method)].latency = latency;
}

void FakeKeyStore::Clear(Method method) {
  offkey::MutexLock lock(&mu_);
  faults_[static_cast<int>(method)] = Fault();
}

void FakeKeyStore::ClearAll() {
  offkey::MutexLock lock(&mu_);
  faults_.fill(Fault());
}

void FakeKeyStore::SetHealthy(bool healthy) {
  offkey::MutexLock lock(&mu_);
  healthy_ = healthy;
}

int FakeKeyStore::CallCount(Method method) const {
  offkey::MutexLock lock(&mu_);
  return calls_[static_cast<int>(method)];
}

absl::Status FakeKeyStore::Enter(Method method) {
  absl::Status status;
  absl::Duration latency;
  {
    offkey::MutexLock lock(&mu_);
    const int i = static_cast<int>(method);
    const int call = ++calls_[i];
    const Fault& fault = faults_[i];
    latency = fault.latency;
    if (!healthy_) {
      status = absl::UnavailableError(
          "the fake key store's token is gone (FakeKeyStore::SetHealthy(false))");
    } else if (!fault.status.ok() && call >= fault.first && call <= fault.last) {
      status = fault.status;
    }
  }
  if (latency > absl::ZeroDuration()) absl::SleepFor(latency);
  return status;
}

// --- KeyStore.

absl::StatusOr<KeyInfo> FakeKeyStore::GenerateKey(absl::string_view name,
                                                  KeyAlgorithm algorithm) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kGenerateKey));
  OFFKEY_RETURN_IF_ERROR(ValidateKeyName(name));
  if (FindKeyAlgorithm(algorithm) == nullptr) {
    return absl::InvalidArgumentError("unknown key algorithm");
  }
  {
    offkey::MutexLock lock(&backing_->mu);
    if (backing_->NameTaken(name)) {
      return absl::AlreadyExistsError(absl::StrCat("a key named '", name, "' exists"));
    }
  }
  EvpPkeyPtr pkey = GenerateOpenSslKey(algorithm);
  if (pkey == nullptr) return OpenSslError(absl::StatusCode::kInternal, "key generation");
  return backing_->Add(name, std::move(pkey));
}

absl::StatusOr<KeyInfo> FakeKeyStore::ImportKey(absl::string_view name,
                                                const SecretBytes& pkcs8_der) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kImportKey));
  OFFKEY_RETURN_IF_ERROR(ValidateKeyName(name));
  {
    offkey::MutexLock lock(&backing_->mu);
    if (backing_->NameTaken(name)) {
      return absl::AlreadyExistsError(absl::StrCat("a key named '", name, "' exists"));
    }
  }
  OFFKEY_ASSIGN_OR_RETURN(EvpPkeyPtr pkey, ParsePkcs8PrivateKey(pkcs8_der));
  return backing_->Add(name, std::move(pkey));
}

absl::StatusOr<KeyInfo> FakeKeyStore::FindKey(const KeyLookup& lookup) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kFindKey));
  if (lookup.value.empty()) return absl::InvalidArgumentError("empty key reference");
  if (lookup.by == KeyLookup::By::kName) {
    OFFKEY_RETURN_IF_ERROR(ValidateKeyName(lookup.value));
  }
  offkey::MutexLock lock(&backing_->mu);
  for (const auto& [id, entry] : backing_->keys) {
    const KeyInfo& info = entry.key->info;
    const std::string& field = lookup.by == KeyLookup::By::kName    ? info.name
                               : lookup.by == KeyLookup::By::kKeyId ? info.key_id
                                                                    : info.ski;
    if (field == lookup.value) return info;
  }
  switch (lookup.by) {
    case KeyLookup::By::kName:
      return absl::NotFoundError(absl::StrCat("no key named '", lookup.value, "'"));
    case KeyLookup::By::kKeyId:
      return NoKey(lookup.value);
    case KeyLookup::By::kSki:
      break;
  }
  return absl::NotFoundError(absl::StrCat("no key with SKI ", Hex(lookup.value)));
}

absl::StatusOr<std::vector<KeyInfo>> FakeKeyStore::ListKeys() {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kListKeys));
  std::vector<KeyInfo> keys;
  {
    offkey::MutexLock lock(&backing_->mu);
    for (const auto& [id, entry] : backing_->keys) keys.push_back(entry.key->info);
  }
  std::sort(keys.begin(), keys.end(),
            [](const KeyInfo& a, const KeyInfo& b) { return a.name < b.name; });
  return keys;
}

absl::Status FakeKeyStore::DestroyKey(absl::string_view key_id) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kDestroyKey));
  if (key_id.empty()) return absl::InvalidArgumentError("empty key id");
  offkey::MutexLock lock(&backing_->mu);
  // The chain and metadata go with the entry; the key material when its last user
  // (a Sign in flight) lets go.
  if (backing_->keys.erase(key_id) == 0) return NoKey(key_id);
  return absl::OkStatus();
}

absl::Status FakeKeyStore::PutCertificateChain(absl::string_view key_id,
                                               absl::Span<const std::string> chain_der) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kPutCertificateChain));
  if (chain_der.size() > kMaxChain) {
    return absl::InvalidArgumentError(
        absl::StrCat("a certificate chain has at most ", kMaxChain, " certificates"));
  }
  for (size_t i = 0; i < chain_der.size(); ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(chain_der[i].data());
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(chain_der[i].size())));
    if (cert == nullptr) {
      return OpenSslError(
          absl::StatusCode::kInvalidArgument,
          absl::StrCat("certificate ", i, " of the chain is not DER X.509"));
    }
  }
  offkey::MutexLock lock(&backing_->mu);
  auto it = backing_->keys.find(key_id);
  if (it == backing_->keys.end()) return NoKey(key_id);
  it->second.chain.assign(chain_der.begin(), chain_der.end());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> FakeKeyStore::GetCertificateChain(
    absl::string_view key_id) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kGetCertificateChain));
  offkey::MutexLock lock(&backing_->mu);
  auto it = backing_->keys.find(key_id);
  // As on a token: no key means no certificates beside it, not an error.
  if (it == backing_->keys.end()) return std::vector<std::string>();
  return it->second.chain;
}

absl::Status FakeKeyStore::PutMetadata(absl::string_view key_id,
                                       absl::string_view metadata) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kPutMetadata));
  if (metadata.size() > kMaxMetadata) {
    return absl::InvalidArgumentError("key metadata is limited to 64 KiB");
  }
  offkey::MutexLock lock(&backing_->mu);
  auto it = backing_->keys.find(key_id);
  if (it == backing_->keys.end()) return NoKey(key_id);
  it->second.metadata = std::string(metadata);
  return absl::OkStatus();
}

absl::StatusOr<std::string> FakeKeyStore::GetMetadata(absl::string_view key_id) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kGetMetadata));
  offkey::MutexLock lock(&backing_->mu);
  auto it = backing_->keys.find(key_id);
  if (it == backing_->keys.end() || !it->second.metadata.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("no metadata stored for key id ", Hex(key_id)));
  }
  return *it->second.metadata;
}

absl::StatusOr<std::string> FakeKeyStore::Sign(absl::string_view key_id,
                                               SignAlgorithm algorithm,
                                               absl::string_view message,
                                               const CallOptions&) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kSign));
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const KeyMaterial> key, backing_->Key(key_id));
  if (!SignAlgorithmFitsKey(algorithm, key->info.algorithm)) {
    return absl::InvalidArgumentError(absl::StrCat(
        SignatureKindName(algorithm.kind), " with ", HashName(algorithm.hash),
        " cannot be used with a ", KeyAlgorithmName(key->info.algorithm), " key"));
  }
  const EVP_MD* md = MessageDigest(algorithm.hash);  // nullptr for EdDSA.
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), &pctx, md, nullptr, key->pkey.get()) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "EVP_DigestSignInit");
  }
  if (algorithm.kind == SignatureKind::kRsaPss &&
      (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
       EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1)) {
    return OpenSslError(absl::StatusCode::kInternal, "RSA-PSS parameters");
  }
  const auto* in = reinterpret_cast<const unsigned char*>(message.data());
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, message.size()) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "EVP_DigestSign (length)");
  }
  std::string signature(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                     in, message.size()) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "EVP_DigestSign");
  }
  signature.resize(len);  // DER ECDSA signatures vary in length.
  return signature;
}

absl::StatusOr<SecretBytes> FakeKeyStore::RsaDecryptRaw(absl::string_view key_id,
                                                        absl::string_view ciphertext,
                                                        const CallOptions&) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kRsaDecryptRaw));
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const KeyMaterial> key, backing_->Key(key_id));
  if (FamilyOf(key->info.algorithm) != KeyFamily::kRsa) {
    return absl::InvalidArgumentError(
        absl::StrCat("raw RSA decryption needs an RSA key; key id ", Hex(key_id), " is ",
                     KeyAlgorithmName(key->info.algorithm)));
  }
  const size_t k = key->modulus.size();
  if (ciphertext.size() != k) {
    return absl::InvalidArgumentError(
        absl::StrCat("ciphertext has ", ciphertext.size(), " bytes; this ",
                     KeyAlgorithmName(key->info.algorithm), " key needs exactly ", k));
  }
  // Public values: an ordinary comparison leaks nothing.
  if (memcmp(ciphertext.data(), key->modulus.data(), k) >= 0) {
    return absl::InvalidArgumentError("ciphertext is not less than the RSA modulus");
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(key->pkey.get(), nullptr));
  SecretBytes plain(k);
  size_t len = k;
  if (ctx == nullptr || EVP_PKEY_decrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_NO_PADDING) != 1 ||
      EVP_PKEY_decrypt(ctx.get(), plain.data(), &len,
                       reinterpret_cast<const unsigned char*>(ciphertext.data()),
                       k) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "raw RSA decryption");
  }
  if (len > k) return absl::InternalError("raw RSA decryption longer than the modulus");
  RightAlignConstantTime(plain, len);  // As the PKCS#11 store does.
  return plain;
}

absl::StatusOr<SecretBytes> FakeKeyStore::HmacWithStoreSecret(absl::string_view data,
                                                              const CallOptions&) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kHmacWithStoreSecret));
  SecretBytes mac(32);
  offkey::MutexLock lock(&backing_->mu);
  SecretBytes& secret = backing_->store_secret;
  if (secret.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(secret, RandomSecret(kHmacKeySize));
  }
  OFFKEY_RETURN_IF_ERROR(HmacSha256(secret, data, mac));
  return mac;
}

absl::StatusOr<TicketKeySetInfo> FakeKeyStore::CreateTicketKeySet(
    absl::string_view name, absl::Duration rotation_period) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kCreateTicketKeySet));
  OFFKEY_RETURN_IF_ERROR(ValidateTicketKeySetName(name));
  OFFKEY_RETURN_IF_ERROR(ValidateTicketRotationPeriod(rotation_period));
  TicketSet set;
  OFFKEY_ASSIGN_OR_RETURN(set.root, RandomSecret(kTicketRootSecretSize));
  set.info.name = std::string(name);
  set.info.rotation_period = rotation_period;
  // Whole seconds, as the PKCS#11 store records it.
  set.info.create_time = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  offkey::MutexLock lock(&backing_->mu);
  auto [it, inserted] = backing_->ticket_sets.try_emplace(set.info.name);
  if (!inserted) {
    return absl::AlreadyExistsError(
        absl::StrCat("a ticket-key set named '", name, "' exists"));
  }
  it->second = std::move(set);
  return it->second.info;
}

absl::StatusOr<std::vector<TicketKeySetInfo>> FakeKeyStore::ListTicketKeySets() {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kListTicketKeySets));
  std::vector<TicketKeySetInfo> sets;
  {
    offkey::MutexLock lock(&backing_->mu);
    for (const auto& [name, set] : backing_->ticket_sets) sets.push_back(set.info);
  }
  std::sort(sets.begin(), sets.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return sets;
}

absl::StatusOr<TicketKeySetInfo> FakeKeyStore::FindTicketKeySet(absl::string_view name) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kFindTicketKeySet));
  OFFKEY_RETURN_IF_ERROR(ValidateTicketKeySetName(name));
  offkey::MutexLock lock(&backing_->mu);
  auto it = backing_->ticket_sets.find(name);
  if (it == backing_->ticket_sets.end()) return NoTicketSet(name);
  return it->second.info;
}

absl::Status FakeKeyStore::DestroyTicketKeySet(absl::string_view name) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kDestroyTicketKeySet));
  OFFKEY_RETURN_IF_ERROR(ValidateTicketKeySetName(name));
  offkey::MutexLock lock(&backing_->mu);
  if (backing_->ticket_sets.erase(name) == 0) return NoTicketSet(name);
  return absl::OkStatus();
}

absl::StatusOr<SecretBytes> FakeKeyStore::DeriveTicketEpochSecret(absl::string_view name,
                                                                  int64_t epoch,
                                                                  const CallOptions&) {
  OFFKEY_RETURN_IF_ERROR(Enter(Method::kDeriveTicketEpochSecret));
  OFFKEY_RETURN_IF_ERROR(ValidateTicketKeySetName(name));
  OFFKEY_RETURN_IF_ERROR(ValidateTicketEpoch(epoch));
  SecretBytes secret(kTicketEpochSecretSize);
  offkey::MutexLock lock(&backing_->mu);
  auto it = backing_->ticket_sets.find(name);
  if (it == backing_->ticket_sets.end()) return NoTicketSet(name);
  OFFKEY_RETURN_IF_ERROR(
      HmacSha256(it->second.root, TicketEpochMessage(name, epoch), secret));
  return secret;
}

absl::Status FakeKeyStore::CheckHealth() { return Enter(Method::kCheckHealth); }

}  // namespace offkey::hsm::testing
