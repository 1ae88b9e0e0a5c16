#include "hsm/pkcs11/pkcs11_key_store.h"

#include <openssl/rand.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/big_endian.h"
#include "base/openssl_util.h"
#include "base/status_macros.h"
#include "hsm/openssl_key.h"
#include "hsm/pkcs11/ck_rv.h"
#include "hsm/pkcs11/key_encoding.h"
#include "hsm/pkcs11/object_io.h"
#include "hsm/right_align.h"
#include "hsm/ticket_keys.h"

namespace offkey::hsm::pkcs11 {
namespace {

constexpr absl::string_view kHmacKeyLabel = "offkey-premaster-substitute-v1";
constexpr absl::string_view kMetadataApplication = "offkey-metadata";
constexpr size_t kMaxSignature = 1024;  // RSA-4096 is 512 bytes; P-521 r||s is 132.
constexpr size_t kMaxChain = 16;
constexpr absl::string_view kTicketLabelPrefix = "offkey-ticket-keys/";
constexpr absl::string_view kTicketApplication = "offkey-ticket-key-set";
constexpr size_t kTicketRootIdSize = 16;
constexpr char kTicketRecordVersion = 1;

std::string Hex(absl::string_view bytes) { return absl::BytesToHexString(bytes); }

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n));
  return out;
}

// RSA-PSS parameters with salt = hash length, as TLS requires.
CK_RSA_PKCS_PSS_PARAMS PssParams(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha1:
      return {CKM_SHA_1, CKG_MGF1_SHA1, HashLength(hash)};
    case HashAlgorithm::kSha384:
      return {CKM_SHA384, CKG_MGF1_SHA384, HashLength(hash)};
    case HashAlgorithm::kSha512:
      return {CKM_SHA512, CKG_MGF1_SHA512, HashLength(hash)};
    case HashAlgorithm::kSha256:
    case HashAlgorithm::kNone:  // Refused before use (SignAlgorithmFitsKey).
      break;
  }
  return {CKM_SHA256, CKG_MGF1_SHA256, HashLength(HashAlgorithm::kSha256)};
}

// Selects the metadata object(s) of `key_id`. Data objects have no CKA_ID, so the id
// goes in CKA_OBJECT_ID under offkey's application name.
void MetadataSelector(absl::string_view key_id, Template& tmpl) {
  tmpl.Ulong(CKA_CLASS, CKO_DATA)
      .Bytes(CKA_APPLICATION, kMetadataApplication)
      .Bytes(CKA_OBJECT_ID, key_id);
}

// The same for modules that refuse CKA_OBJECT_ID on data objects (opencryptoki 3.8
// answers CKR_TEMPLATE_INCONSISTENT): the id goes in the application name instead.
// Readers look for both forms, so a token written either way reads the same.
void MetadataSelectorByApplication(absl::string_view key_id, Template& tmpl) {
  tmpl.Ulong(CKA_CLASS, CKO_DATA)
      .Bytes(CKA_APPLICATION, absl::StrCat(kMetadataApplication, "/", Hex(key_id)));
}

// Whether a C_CreateObject refusal means the module does not take CKA_OBJECT_ID there.
bool RefusesObjectId(CK_RV rv) {
  return rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
         rv == CKR_ATTRIBUTE_VALUE_INVALID;
}

// The metadata objects of `key_id` in either form.
CK_RV FindMetadata(const CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                   absl::string_view key_id, std::vector<CK_OBJECT_HANDLE>* found) {
  Template by_id, by_application;
  MetadataSelector(key_id, by_id);
  MetadataSelectorByApplication(key_id, by_application);
  std::vector<CK_OBJECT_HANDLE> more;
  CK_RV rv = FindObjects(fn, session, by_id, found);
  if (rv == CKR_OK) rv = FindObjects(fn, session, by_application, &more);
  found->insert(found->end(), more.begin(), more.end());
  return rv;
}

// Strips leading zero bytes (PKCS#11 big integers may carry them).
absl::string_view StripZeros(absl::string_view v) {
  while (v.size() > 1 && v[0] == '\0') v.remove_prefix(1);
  return v;
}

// Index of a chain certificate from its label: 0 for "name", i for "name/i".
int ChainIndex(absl::string_view label) {
  size_t slash = label.rfind('/');
  int index = 0;
  if (slash == absl::string_view::npos ||
      !absl::SimpleAtoi(label.substr(slash + 1), &index)) {
    return 0;
  }
  return index;
}

// HMAC-SHA256 (CKM_SHA256_HMAC) of `data` under the secret key `key`, computed in the
// token into `mac`, which holds 32 bytes. Errors: CkRvStatus, or INTERNAL if the module
// returns another size.
absl::Status HmacSha256InToken(const CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
                               CK_OBJECT_HANDLE key, absl::string_view data,
                               SecretBytes* mac) {
  CK_MECHANISM mech = {CKM_SHA256_HMAC, nullptr, 0};
  OFFKEY_RETURN_IF_ERROR(CkRvStatus(fn->C_SignInit(session, &mech, key), "C_SignInit"));
  CK_ULONG len = mac->size();
  CK_RV rv =
      fn->C_Sign(session, reinterpret_cast<CK_BYTE*>(const_cast<char*>(data.data())),
                 data.size(), mac->data(), &len);
  if (rv == CKR_OK && len != mac->size()) {
    return absl::InternalError(
        absl::StrCat("C_Sign returned a ", len, "-byte HMAC-SHA256"));
  }
  return CkRvStatus(rv, "C_Sign");
}

std::string TicketLabel(absl::string_view name) {
  return absl::StrCat(kTicketLabelPrefix, name);
}

// The record beside a set's root (see the class comment).
std::string EncodeTicketRecord(absl::string_view root_id, const TicketKeySetInfo& info) {
  std::string out(1, kTicketRecordVersion);
  out.append(root_id.data(), root_id.size());
  AppendBigEndian64(absl::ToInt64Seconds(info.rotation_period), &out);
  AppendBigEndian64(absl::ToUnixSeconds(info.create_time), &out);
  return out;
}

// False for a record offkey did not write (another version, another size).
bool DecodeTicketRecord(absl::string_view record, std::string* root_id,
                        TicketKeySetInfo* info) {
  if (record.size() != 1 + kTicketRootIdSize + 16 || record[0] != kTicketRecordVersion) {
    return false;
  }
  record.remove_prefix(1);
  *root_id = std::string(record.substr(0, kTicketRootIdSize));
  record.remove_prefix(kTicketRootIdSize);
  const auto period = static_cast<int64_t>(ReadBigEndian64(record.substr(0, 8)));
  const auto created = static_cast<int64_t>(ReadBigEndian64(record.substr(8, 8)));
  if (period <= 0) return false;
  info->rotation_period = absl::Seconds(period);
  info->create_time = absl::FromUnixSeconds(created);
  return true;
}

absl::Status NoTicketSet(absl::string_view name) {
  return absl::NotFoundError(absl::StrCat("no ticket-key set named '", name, "'"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Pkcs11KeyStore>> Pkcs11KeyStore::Create(
    const TokenOptions& options) {
  OFFKEY_ASSIGN_OR_RETURN(std::unique_ptr<Token> token, Token::Open(options));
  std::optional<Capabilities> capabilities;
  OFFKEY_RETURN_IF_ERROR(token->Run("read the mechanism list", absl::InfiniteFuture(),
                                    [&](CK_SESSION_HANDLE, int) -> absl::Status {
                                      OFFKEY_ASSIGN_OR_RETURN(
                                          capabilities,
                                          Capabilities::Read(token->fn(), token->slot()));
                                      return absl::OkStatus();
                                    }));
  OFFKEY_RETURN_IF_ERROR(
      capabilities->CanUseStoreSecret(/*generate=*/false, kHmacKeyLabel));
  std::unique_ptr<Pkcs11KeyStore> store(
      new Pkcs11KeyStore(std::move(token), *std::move(capabilities)));
  // Make (or find) the store secret now: the first premaster should not pay for it, and
  // health checks rely on it being there.
  OFFKEY_RETURN_IF_ERROR(store->token_->Run(
      "create the store secret", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int attempt) {
        CK_OBJECT_HANDLE key;
        return store->ResolveHmacKey(session, attempt > 0, /*create=*/true, &key);
      },
      Token::Access::kChange));
  return store;
}

void Pkcs11KeyStore::Forget(absl::string_view key_id) {
  offkey::MutexLock lock(&mu_);
  handles_.erase(std::string(key_id));
}

absl::Status Pkcs11KeyStore::ResolveKey(CK_SESSION_HANDLE session,
                                        absl::string_view key_id, bool fresh,
                                        KeyHandle* out) {
  const uint64_t epoch = token_->epoch();
  if (!fresh) {
    std::optional<KeyHandle> cached;
    {
      offkey::MutexLock lock(&mu_);
      auto it = handles_.find(key_id);
      if (it != handles_.end() && it->second.epoch == epoch) cached = it->second;
    }
    // Another process may have destroyed the key and a module that reuses handles
    // given its handle to a new object: use the handle only while it names this key.
    if (cached.has_value() && (!token_->may_reuse_object_handles() ||
                               StillNames(session, cached->object, key_id))) {
      *out = *std::move(cached);
      return absl::OkStatus();
    }
  }
  const CK_FUNCTION_LIST* fn = token_->fn();
  Template find;
  find.Ulong(CKA_CLASS, CKO_PRIVATE_KEY).Bytes(CKA_ID, key_id);
  std::vector<CK_OBJECT_HANDLE> found;
  OFFKEY_RETURN_IF_ERROR(
      CkRvStatus(FindObjects(fn, session, find, &found, 2), "C_FindObjects (key)"));
  if (found.empty()) {
    // Private objects are invisible without a login: that is not "no such key".
    if (!token_->LoggedIn(session)) {
      return CkRvStatus(CKR_USER_NOT_LOGGED_IN, "no private key found while logged out");
    }
    Forget(key_id);
    return absl::NotFoundError(absl::StrCat("no key with id ", Hex(key_id)));
  }
  if (found.size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("more than one private key has id ", Hex(key_id), " on the token"));
  }
  KeyHandle key;
  key.object = found[0];
  key.epoch = epoch;
  CK_ULONG type = 0;
  OFFKEY_RETURN_IF_ERROR(
      CkRvStatus(GetUlong(fn, session, key.object, CKA_KEY_TYPE, &type),
                 "C_GetAttributeValue (CKA_KEY_TYPE)"));
  const std::optional<KeyFamily> family = FamilyOfKeyType(type);
  if (family == KeyFamily::kRsa) {
    std::string modulus;
    OFFKEY_RETURN_IF_ERROR(
        CkRvStatus(GetBytes(fn, session, key.object, CKA_MODULUS, &modulus),
                   "C_GetAttributeValue (CKA_MODULUS)"));
    key.modulus = std::string(StripZeros(modulus));
    key.algorithm = RsaAlgorithmForBits(static_cast<int>(key.modulus.size() * 8));
  } else if (family.has_value()) {
    std::string params;
    OFFKEY_RETURN_IF_ERROR(
        CkRvStatus(GetBytes(fn, session, key.object, CKA_EC_PARAMS, &params),
                   "C_GetAttributeValue (CKA_EC_PARAMS)"));
    key.algorithm = AlgorithmFromEcParams(params);
  }
  offkey::MutexLock lock(&mu_);
  handles_[std::string(key_id)] = key;
  *out = std::move(key);
  return absl::OkStatus();
}

bool Pkcs11KeyStore::StillNames(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                absl::string_view key_id) {
  // One call on the signing path: an id of another length does not fit (or comes back
  // shorter), so the buffer is exactly the expected id's size.
  std::string id(key_id.size(), '\0');
  CK_ATTRIBUTE attr = {CKA_ID, id.data(), static_cast<CK_ULONG>(id.size())};
  return token_->fn()->C_GetAttributeValue(session, object, &attr, 1) == CKR_OK &&
         attr.ulValueLen == key_id.size() && id == key_id;
}

absl::Status Pkcs11KeyStore::ReplaceObjects(
    CK_SESSION_HANDLE session, absl::string_view key_id, Template& find,
    const std::function<absl::Status(const std::string& key_name)>& create,
    Template* also_find) {
  const CK_FUNCTION_LIST* fn = token_->fn();
  KeyHandle key;
  OFFKEY_RETURN_IF_ERROR(ResolveKey(session, key_id, false, &key));
  std::string name;
  OFFKEY_RETURN_IF_ERROR(CkRvStatus(GetBytes(fn, session, key.object, CKA_LABEL, &name),
                                    "C_GetAttributeValue (CKA_LABEL)"));
  std::vector<CK_OBJECT_HANDLE> old;
  OFFKEY_RETURN_IF_ERROR(
      CkRvStatus(FindObjects(fn, session, find, &old), "C_FindObjects (old objects)"));
  if (also_find != nullptr) {
    std::vector<CK_OBJECT_HANDLE> more;
    OFFKEY_RETURN_IF_ERROR(CkRvStatus(FindObjects(fn, session, *also_find, &more),
                                      "C_FindObjects (old objects)"));
    old.insert(old.end(), more.begin(), more.end());
  }
  // New objects first, old ones after: a failure in between leaves both, never neither.
  OFFKEY_RETURN_IF_ERROR(create(name));
  for (CK_OBJECT_HANDLE h : old) fn->C_DestroyObject(session, h);
  return absl::OkStatus();
}

absl::Status Pkcs11KeyStore::Describe(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                                      KeyInfo* out) {
  const CK_FUNCTION_LIST* fn = token_->fn();
  std::string label, id;
  CK_ULONG type = 0;
  CK_RV rv = GetBytes(fn, session, object, CKA_LABEL, &label);
  if (rv == CKR_OK) rv = GetBytes(fn, session, object, CKA_ID, &id);
  if (rv == CKR_OK) rv = GetUlong(fn, session, object, CKA_KEY_TYPE, &type);
  OFFKEY_RETURN_IF_ERROR(CkRvStatus(rv, "C_GetAttributeValue (key label, id, type)"));
  out->name = label;
  out->key_id = id;
  out->algorithm = KeyAlgorithm::kUnknown;
  absl::StatusOr<std::string> spki = absl::UnimplementedError(
      absl::StrCat("key '", label, "' has a key type offkey does not use"));
  const std::optional<KeyFamily> family = FamilyOfKeyType(type);
  if (family == KeyFamily::kRsa) {
    std::string n, e;
    rv = GetBytes(fn, session, object, CKA_MODULUS, &n);
    if (rv == CKR_OK) rv = GetBytes(fn, session, object, CKA_PUBLIC_EXPONENT, &e);
    OFFKEY_RETURN_IF_ERROR(CkRvStatus(rv, "C_GetAttributeValue (RSA public key)"));
    out->algorithm = RsaAlgorithmForBits(static_cast<int>(StripZeros(n).size() * 8));
    spki = RsaSpki(n, e);
  } else if (family.has_value()) {
    std::string params, point;
    OFFKEY_RETURN_IF_ERROR(
        CkRvStatus(GetBytes(fn, session, object, CKA_EC_PARAMS, &params),
                   "C_GetAttributeValue (CKA_EC_PARAMS)"));
    out->algorithm = AlgorithmFromEcParams(params);
    // The point lives on the public key object beside the private one.
    Template find;
    find.Ulong(CKA_CLASS, CKO_PUBLIC_KEY).Bytes(CKA_ID, id);
    std::vector<CK_OBJECT_HANDLE> pub;
    OFFKEY_RETURN_IF_ERROR(CkRvStatus(FindObjects(fn, session, find, &pub, 1),
                                      "C_FindObjects (public key)"));
    if (pub.empty()) {
      spki = absl::FailedPreconditionError(
          absl::StrCat("key '", label, "' has no public key object on the token"));
    } else {
      OFFKEY_RETURN_IF_ERROR(
          CkRvStatus(GetBytes(fn, session, pub[0], CKA_EC_POINT, &point),
                     "C_GetAttributeValue (CKA_EC_POINT)"));
      absl::StatusOr<std::string> bare = UnwrapEcPoint(point, out->algorithm);
      if (!bare.ok()) {
        spki = bare.status();
      } else if (out->algorithm == KeyAlgorithm::kEd25519) {
        spki = Ed25519Spki(*bare);
      } else {
        spki = EcSpki(out->algorithm, *bare);
      }
    }
  }
  // On a module that reuses handles, the object may have been destroyed and its handle
  // given to another between the reads above: then it is gone, as if never found.
  if (token_->may_reuse_object_handles() && !StillNames(session, object, id)) {
    return CkRvStatus(CKR_OBJECT_HANDLE_INVALID, "the key changed while it was read");
  }
  if (!spki.ok()) return spki.status();
  out->public_key_spki = *std::move(spki);
  OFFKEY_ASSIGN_OR_RETURN(out->ski, SkiOfSpki(out->public_key_spki));
  return absl::OkStatus();
}

absl::StatusOr<KeyInfo> Pkcs11KeyStore::FindKey(const KeyLookup& lookup) {
  if (lookup.value.empty()) return absl::InvalidArgumentError("empty key reference");
  if (lookup.by == KeyLookup::By::kName) {
    OFFKEY_RETURN_IF_ERROR(ValidateKeyName(lookup.value));
  }
  KeyInfo info;
  absl::Status status = token_->Run(
      "find key", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) -> absl::Status {
        Template find;
        find.Ulong(CKA_CLASS, CKO_PRIVATE_KEY);
        if (lookup.by == KeyLookup::By::kName) {
          find.Bytes(CKA_LABEL, lookup.value);
        } else {
          find.Bytes(CKA_ID, lookup.value);  // offkey's ids are SKIs.
        }
        std::vector<CK_OBJECT_HANDLE> found;
        OFFKEY_RETURN_IF_ERROR(CkRvStatus(
            FindObjects(token_->fn(), session, find, &found, 2), "C_FindObjects"));
        if (found.size() > 1) {
          return absl::FailedPreconditionError(
              "more than one private key matches; give the key id instead");
        }
        if (found.size() == 1) {
          OFFKEY_RETURN_IF_ERROR(Describe(session, found[0], &info));
          // An id that merely looks like the SKI is not a match: scan below.
          if (lookup.by != KeyLookup::By::kSki || info.ski == lookup.value) {
            return absl::OkStatus();
          }
        }
        return absl::NotFoundError("");
      });
  if (absl::IsNotFound(status) && lookup.by == KeyLookup::By::kSki) {
    // Keys made by other tools may carry other ids: compare computed SKIs.
    OFFKEY_ASSIGN_OR_RETURN(std::vector<KeyInfo> all, ListKeys());
    for (KeyInfo& key : all) {
      if (key.ski == lookup.value) return std::move(key);
    }
  }
  if (absl::IsNotFound(status)) {
    switch (lookup.by) {
      case KeyLookup::By::kName:
        return absl::NotFoundError(absl::StrCat("no key named '", lookup.value, "'"));
      case KeyLookup::By::kKeyId:
        return absl::NotFoundError(absl::StrCat("no key with id ", Hex(lookup.value)));
      case KeyLookup::By::kSki:
        return absl::NotFoundError(absl::StrCat("no key with SKI ", Hex(lookup.value)));
    }
  }
  if (!status.ok()) return status;
  return info;
}

absl::StatusOr<std::vector<KeyInfo>> Pkcs11KeyStore::ListKeys() {
  std::vector<KeyInfo> keys;
  OFFKEY_RETURN_IF_ERROR(token_->Run(
      "list keys", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) -> absl::Status {
        keys.clear();
        Template find;
        find.Ulong(CKA_CLASS, CKO_PRIVATE_KEY);
        std::vector<CK_OBJECT_HANDLE> found;
        OFFKEY_RETURN_IF_ERROR(CkRvStatus(
            FindObjects(token_->fn(), session, find, &found), "C_FindObjects"));
        for (CK_OBJECT_HANDLE object : found) {
          KeyInfo info;
          absl::Status described = Describe(session, object, &info);
          const std::optional<CK_RV> rv = CkRvOf(described);
          // A key destroyed since the search is not listed; a stale handle that means
          // a lost login, and the token's other failures, end the listing (and may be
          // recovered from).
          if (rv.has_value() && IsHandleStale(*rv) && token_->LoggedIn(session)) continue;
          if (rv.has_value()) return described;
          // Keys of types offkey cannot use are not offkey's to list.
          if (described.ok() && info.algorithm != KeyAlgorithm::kUnknown) {
            keys.push_back(std::move(info));
          }
        }
        return absl::OkStatus();
      }));
  std::sort(keys.begin(), keys.end(),
            [](const KeyInfo& a, const KeyInfo& b) { return a.name < b.name; });
  return keys;
}

absl::StatusOr<KeyInfo> Pkcs11KeyStore::StoreKeyPair(
    absl::string_view name, KeyAlgorithm algorithm, const std::string& spki,
    absl::FunctionRef<void(Template&, Template&)> add_components) {
  OFFKEY_ASSIGN_OR_RETURN(std::string ski, SkiOfSpki(spki));
  OFFKEY_RETURN_IF_ERROR(token_->Run(
      "C_CreateObject (import key)", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) -> absl::Status {
        const CK_FUNCTION_LIST* fn = token_->fn();
        Template same_id;
        same_id.Ulong(CKA_CLASS, CKO_PRIVATE_KEY).Bytes(CKA_ID, ski);
        std::vector<CK_OBJECT_HANDLE> found;
        OFFKEY_RETURN_IF_ERROR(
            CkRvStatus(FindObjects(fn, session, same_id, &found, 1), "C_FindObjects"));
        if (!found.empty()) {
          std::string existing;
          GetBytes(fn, session, found[0], CKA_LABEL, &existing);
          return absl::AlreadyExistsError(
              absl::StrCat("this key is already on the token as '", existing, "'"));
        }
        Template priv, pub;
        priv.Ulong(CKA_CLASS, CKO_PRIVATE_KEY)
            .Bool(CKA_TOKEN, true)
            .Bool(CKA_PRIVATE, true)
            .Bool(CKA_SENSITIVE, true)
            .Bool(CKA_EXTRACTABLE, false)
            .Bool(CKA_SIGN, true)
            .Bytes(CKA_LABEL, name)
            .Bytes(CKA_ID, ski);
        pub.Ulong(CKA_CLASS, CKO_PUBLIC_KEY)
            .Bool(CKA_TOKEN, true)
            .Bool(CKA_PRIVATE, false)
            .Bool(CKA_VERIFY, true)
            .Bytes(CKA_LABEL, name)
            .Bytes(CKA_ID, ski);
        add_components(priv, pub);
        CK_OBJECT_HANDLE priv_handle = CK_INVALID_HANDLE;
        CK_OBJECT_HANDLE pub_handle = CK_INVALID_HANDLE;
        OFFKEY_RETURN_IF_ERROR(CkRvStatus(
            fn->C_CreateObject(session, priv.data(), priv.size(), &priv_handle),
            "C_CreateObject (private key)"));
        CK_RV rv = fn->C_CreateObject(session, pub.data(), pub.size(), &pub_handle);
        if (rv != CKR_OK) fn->C_DestroyObject(session, priv_handle);
        return CkRvStatus(rv, "C_CreateObject (public key)");
      },
      Token::Access::kChange));
  KeyInfo info;
  info.name = std::string(name);
  info.key_id = ski;
  info.ski = ski;
  info.algorithm = algorithm;
  info.public_key_spki = spki;
  return info;
}

absl::Status Pkcs11KeyStore::CheckNameFree(absl::string_view name) {
  absl::StatusOr<KeyInfo> existing = FindKey(KeyLookup::Name(name));
  if (existing.ok()) {
    return absl::AlreadyExistsError(absl::StrCat("a key named '", name, "' exists"));
  }
  return absl::IsNotFound(existing.status()) ? absl::OkStatus() : existing.status();
}

absl::StatusOr<KeyInfo> Pkcs11KeyStore::ImportKey(absl::string_view name,
                                                  const SecretBytes& pkcs8_der) {
  OFFKEY_RETURN_IF_ERROR(ValidateKeyName(name));
  OFFKEY_RETURN_IF_ERROR(CheckNameFree(name));

  OFFKEY_ASSIGN_OR_RETURN(ImportedKey key, ImportedKeyFromPkcs8(pkcs8_der));
  OFFKEY_RETURN_IF_ERROR(capabilities_.CanImport(key.algorithm));
  return StoreKeyPair(name, key.algorithm, key.spki, [&](Template& priv, Template& pub) {
    priv.Ulong(CKA_KEY_TYPE, key.key_type);
    pub.Ulong(CKA_KEY_TYPE, key.key_type);
    if (FamilyOf(key.algorithm) == KeyFamily::kRsa) {
      priv.Bool(CKA_DECRYPT, true);
      pub.Bool(CKA_ENCRYPT, true);
    }
    for (const KeyAttribute& a : key.private_attributes) priv.Secret(a.type, a.value);
    for (const KeyAttribute& a : key.public_attributes) pub.Secret(a.type, a.value);
  });
}

absl::StatusOr<KeyInfo> Pkcs11KeyStore::GenerateKey(absl::string_view name,
                                                    KeyAlgorithm algorithm) {
  OFFKEY_RETURN_IF_ERROR(ValidateKeyName(name));
  if (KeyBits(algorithm) == 0) {
    return absl::InvalidArgumentError("unknown key algorithm");
  }
  OFFKEY_RETURN_IF_ERROR(capabilities_.CanGenerate(algorithm));
  OFFKEY_RETURN_IF_ERROR(CheckNameFree(name));

  // Generate under a random temporary id, then re-id both halves with the SKI, which is
  // only known once the public key exists.
  const std::string temp_id = RandomBytes(16);
  CK_OBJECT_HANDLE priv_handle = CK_INVALID_HANDLE, pub_handle = CK_INVALID_HANDLE;
  OFFKEY_RETURN_IF_ERROR(token_->Run(
      absl::StrCat("C_GenerateKeyPair (", KeyAlgorithmName(algorithm), ")"),
      absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) {
        Template priv, pub;
        priv.Bool(CKA_TOKEN, true)
            .Bool(CKA_PRIVATE, true)
            .Bool(CKA_SENSITIVE, true)
            .Bool(CKA_EXTRACTABLE, false)
            .Bool(CKA_SIGN, true)
            .Bytes(CKA_LABEL, name)
            .Bytes(CKA_ID, temp_id);
        pub.Bool(CKA_TOKEN, true)
            .Bool(CKA_PRIVATE, false)
            .Bool(CKA_VERIFY, true)
            .Bytes(CKA_LABEL, name)
            .Bytes(CKA_ID, temp_id);
        CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
        switch (FamilyOf(algorithm)) {
          case KeyFamily::kRsa:
            priv.Bool(CKA_DECRYPT, true);
            pub.Bool(CKA_ENCRYPT, true)
                .Ulong(CKA_MODULUS_BITS, KeyBits(algorithm))
                .Bytes(CKA_PUBLIC_EXPONENT, std::string("\x01\x00\x01", 3));
            break;
          case KeyFamily::kEc:
            mech.mechanism = CKM_EC_KEY_PAIR_GEN;
            pub.Bytes(CKA_EC_PARAMS, EcParamsFor(algorithm));
            break;
          case KeyFamily::kEd25519:
            mech.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
            pub.Bytes(CKA_EC_PARAMS, EcParamsFor(algorithm));
            break;
        }
        return CkRvStatus(token_->fn()->C_GenerateKeyPair(
                              session, &mech, pub.data(), pub.size(), priv.data(),
                              priv.size(), &pub_handle, &priv_handle),
                          "C_GenerateKeyPair");
      },
      Token::Access::kChange));
  KeyInfo info;
  absl::Status status = token_->Run(
      "C_SetAttributeValue (key id)", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) -> absl::Status {
        OFFKEY_RETURN_IF_ERROR(Describe(session, priv_handle, &info));
        Template id;
        id.Bytes(CKA_ID, info.ski);
        OFFKEY_RETURN_IF_ERROR(CkRvStatus(
            token_->fn()->C_SetAttributeValue(session, priv_handle, id.data(), id.size()),
            "C_SetAttributeValue (private key)"));
        return CkRvStatus(
            token_->fn()->C_SetAttributeValue(session, pub_handle, id.data(), id.size()),
            "C_SetAttributeValue (public key)");
      },
      Token::Access::kChange);
  if (!status.ok()) {
    DestroyKey(temp_id).IgnoreError();  // Do not leave a half-made key behind.
    return status;
  }
  info.key_id = info.ski;
  return info;
}

absl::Status Pkcs11KeyStore::DestroyKey(absl::string_view key_id) {
  if (key_id.empty()) return absl::InvalidArgumentError("empty key id");
  Forget(key_id);
  return token_->Run(
      "C_DestroyObject", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) -> absl::Status {
        const CK_FUNCTION_LIST* fn = token_->fn();
        Template find;
        find.Bytes(CKA_ID, key_id);
        std::vector<CK_OBJECT_HANDLE> found;
        OFFKEY_RETURN_IF_ERROR(
            CkRvStatus(FindObjects(fn, session, find, &found), "C_FindObjects (key)"));
        std::vector<CK_OBJECT_HANDLE> meta_found;
        OFFKEY_RETURN_IF_ERROR(CkRvStatus(FindMetadata(fn, session, key_id, &meta_found),
                                          "C_FindObjects (metadata)"));
        if (found.empty()) {
          return absl::NotFoundError(absl::StrCat("no key with id ", Hex(key_id)));
        }
        found.insert(found.end(), meta_found.begin(), meta_found.end());
        for (CK_OBJECT_HANDLE h : found) {
          CK_RV rv = fn->C_DestroyObject(session, h);
          if (!IsHandleStale(rv)) {
            OFFKEY_RETURN_IF_ERROR(CkRvStatus(rv, "C_DestroyObject"));
          }
        }
        return absl::OkStatus();
      },
      Token::Access::kChange);
}

absl::Status Pkcs11KeyStore::PutCertificateChain(
    absl::string_view key_id, absl::Span<const std::string> chain_der) {
  if (chain_der.size() > kMaxChain) {
    return absl::InvalidArgumentError(
        absl::StrCat("a certificate chain has at most ", kMaxChain, " certificates"));
  }
  // Subjects are required by PKCS#11 for X.509 certificate objects.
  std::vector<std::string> subjects;
  for (const std::string& der : chain_der) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    if (cert == nullptr) {
      return OpenSslError(absl::StatusCode::kInvalidArgument,
                          absl::StrCat("certificate ", subjects.size(),
                                       " of the chain is not DER X.509"));
    }
    unsigned char* subject = nullptr;
    int len = i2d_X509_NAME(X509_get_subject_name(cert.get()), &subject);
    subjects.emplace_back(reinterpret_cast<char*>(subject), len > 0 ? len : 0);
    OPENSSL_free(subject);
  }
  return token_->Run(
      "C_CreateObject (certificate)", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) {
        Template find;
        find.Ulong(CKA_CLASS, CKO_CERTIFICATE).Bytes(CKA_ID, key_id);
        return ReplaceObjects(
            session, key_id, find, [&](const std::string& name) -> absl::Status {
              for (size_t i = 0; i < chain_der.size(); ++i) {
                Template cert;
                cert.Ulong(CKA_CLASS, CKO_CERTIFICATE)
                    .Ulong(CKA_CERTIFICATE_TYPE, CKC_X_509)
                    .Bool(CKA_TOKEN, true)
                    .Bool(CKA_PRIVATE, false)
                    .Bytes(CKA_LABEL, i == 0 ? name : absl::StrCat(name, "/", i))
                    .Bytes(CKA_ID, key_id)
                    .Bytes(CKA_SUBJECT, subjects[i])
                    .Bytes(CKA_VALUE, chain_der[i]);
                CK_OBJECT_HANDLE h;
                OFFKEY_RETURN_IF_ERROR(CkRvStatus(
                    token_->fn()->C_CreateObject(session, cert.data(), cert.size(), &h),
                    "C_CreateObject"));
              }
              return absl::OkStatus();
            });
      },
      Token::Access::kChange);
}

absl::StatusOr<std::vector<std::string>> Pkcs11KeyStore::GetCertificateChain(
    absl::string_view key_id) {
  std::vector<std::pair<int, std::string>> certs;
  OFFKEY_RETURN_IF_ERROR(token_->Run(
      "read certificates", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) -> absl::Status {
        const CK_FUNCTION_LIST* fn = token_->fn();
        certs.clear();
        Template find;
        find.Ulong(CKA_CLASS, CKO_CERTIFICATE).Bytes(CKA_ID, key_id);
        std::vector<CK_OBJECT_HANDLE> found;
        OFFKEY_RETURN_IF_ERROR(CkRvStatus(
            FindObjects(fn, session, find, &found, kMaxChain), "C_FindObjects"));
        for (CK_OBJECT_HANDLE h : found) {
          std::string label, value;
          CK_RV rv = GetBytes(fn, session, h, CKA_LABEL, &label);
          if (rv == CKR_OK) rv = GetBytes(fn, session, h, CKA_VALUE, &value);
          OFFKEY_RETURN_IF_ERROR(CkRvStatus(rv, "C_GetAttributeValue"));
          certs.emplace_back(ChainIndex(label), std::move(value));
        }
        return absl::OkStatus();
      }));
  std::stable_sort(certs.begin(), certs.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> chain;
  for (auto& [index, der] : certs) chain.push_back(std::move(der));
  return chain;
}

absl::Status Pkcs11KeyStore::PutMetadata(absl::string_view key_id,
                                         absl::string_view metadata) {
  if (metadata.size() > 64 * 1024) {
    return absl::InvalidArgumentError("key metadata is limited to 64 KiB");
  }
  return token_->Run(
      "C_CreateObject (metadata)", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) {
        Template find, find_by_application;
        MetadataSelector(key_id, find);
        MetadataSelectorByApplication(key_id, find_by_application);
        auto create = [&](const std::string& name, bool by_application) {
          Template data;
          if (by_application) {
            MetadataSelectorByApplication(key_id, data);
          } else {
            MetadataSelector(key_id, data);
          }
          data.Bool(CKA_TOKEN, true)
              .Bool(CKA_PRIVATE, true)
              .Bytes(CKA_LABEL, name)
              .Bytes(CKA_VALUE, metadata);
          CK_OBJECT_HANDLE h;
          return token_->fn()->C_CreateObject(session, data.data(), data.size(), &h);
        };
        return ReplaceObjects(
            session, key_id, find,
            [&](const std::string& name) -> absl::Status {
              if (!metadata_by_application_.load()) {
                CK_RV rv = create(name, false);
                if (!RefusesObjectId(rv)) return CkRvStatus(rv, "C_CreateObject");
              }
              CK_RV rv = create(name, true);
              if (rv == CKR_OK) metadata_by_application_ = true;
              return CkRvStatus(rv, "C_CreateObject");
            },
            &find_by_application);
      },
      Token::Access::kChange);
}

absl::StatusOr<std::string> Pkcs11KeyStore::GetMetadata(absl::string_view key_id) {
  std::string value;
  OFFKEY_RETURN_IF_ERROR(token_->Run(
      "read metadata", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) -> absl::Status {
        const CK_FUNCTION_LIST* fn = token_->fn();
        std::vector<CK_OBJECT_HANDLE> found;
        OFFKEY_RETURN_IF_ERROR(
            CkRvStatus(FindMetadata(fn, session, key_id, &found), "C_FindObjects"));
        if (found.empty()) {
          return absl::NotFoundError(
              absl::StrCat("no metadata stored for key id ", Hex(key_id)));
        }
        // Two objects only exist while a PutMetadata is between create and destroy,
        // in this process or another; the newer handle is the one a module assigns
        // later.
        return CkRvStatus(
            GetBytes(fn, session, *std::max_element(found.begin(), found.end()),
                     CKA_VALUE, &value),
            "C_GetAttributeValue");
      }));
  return value;
}

absl::StatusOr<std::string> Pkcs11KeyStore::Sign(absl::string_view key_id,
                                                 SignAlgorithm algorithm,
                                                 absl::string_view message,
                                                 const CallOptions& options) {
  // Hash outside the HSM: the module then sees a short, fixed-size input.
  std::string input;
  if (algorithm.kind != SignatureKind::kEdDsa) {
    OFFKEY_ASSIGN_OR_RETURN(input, Digest(algorithm.hash, message));
    if (algorithm.kind == SignatureKind::kRsaPkcs1) {
      OFFKEY_ASSIGN_OR_RETURN(input, DigestInfo(algorithm.hash, input));
    }
  }
  absl::string_view to_sign =
      algorithm.kind == SignatureKind::kEdDsa ? message : absl::string_view(input);
  CK_RSA_PKCS_PSS_PARAMS pss = PssParams(algorithm.hash);
  CK_MECHANISM mech = {CKM_RSA_PKCS, nullptr, 0};
  switch (algorithm.kind) {
    case SignatureKind::kRsaPkcs1:
      break;
    case SignatureKind::kRsaPss:
      mech = {CKM_RSA_PKCS_PSS, &pss, sizeof(pss)};
      break;
    case SignatureKind::kEcdsa:
      mech.mechanism = CKM_ECDSA;
      break;
    case SignatureKind::kEdDsa:
      mech.mechanism = CKM_EDDSA;
      break;
  }
  unsigned char sig[kMaxSignature];
  CK_ULONG sig_len = sizeof(sig);
  OFFKEY_RETURN_IF_ERROR(token_->Run(
      absl::StrCat("C_Sign (", SignatureKindName(algorithm.kind), ", key id ",
                   Hex(key_id), ")"),
      options.deadline, [&](CK_SESSION_HANDLE session, int attempt) -> absl::Status {
        KeyHandle key;
        OFFKEY_RETURN_IF_ERROR(ResolveKey(session, key_id, attempt > 0, &key));
        if (!SignAlgorithmFitsKey(algorithm, key.algorithm)) {
          return absl::InvalidArgumentError(absl::StrCat(
              SignatureKindName(algorithm.kind), " with ", HashName(algorithm.hash),
              " cannot be used with a ", KeyAlgorithmName(key.algorithm), " key"));
        }
        OFFKEY_RETURN_IF_ERROR(CkRvStatus(
            token_->fn()->C_SignInit(session, &mech, key.object), "C_SignInit"));
        sig_len = sizeof(sig);
        return CkRvStatus(
            token_->fn()->C_Sign(
                session, reinterpret_cast<CK_BYTE*>(const_cast<char*>(to_sign.data())),
                to_sign.size(), sig, &sig_len),
            "C_Sign");
      }));
  std::string raw(reinterpret_cast<char*>(sig), sig_len);
  if (algorithm.kind == SignatureKind::kEcdsa) return EcdsaRawToDer(raw);
  return raw;
}

absl::StatusOr<SecretBytes> Pkcs11KeyStore::RsaDecryptRaw(absl::string_view key_id,
                                                          absl::string_view ciphertext,
                                                          const CallOptions& options) {
  SecretBytes plain;
  OFFKEY_RETURN_IF_ERROR(token_->Run(
      absl::StrCat("C_Decrypt (raw RSA, key id ", Hex(key_id), ")"), options.deadline,
      [&](CK_SESSION_HANDLE session, int attempt) -> absl::Status {
        KeyHandle key;
        OFFKEY_RETURN_IF_ERROR(ResolveKey(session, key_id, attempt > 0, &key));
        if (FamilyOf(key.algorithm) != KeyFamily::kRsa ||
            key.algorithm == KeyAlgorithm::kUnknown) {
          return absl::InvalidArgumentError(
              absl::StrCat("raw RSA decryption needs an RSA key; key id ", Hex(key_id),
                           " is ", KeyAlgorithmName(key.algorithm)));
        }
        const size_t k = key.modulus.size();
        if (ciphertext.size() != k) {
          return absl::InvalidArgumentError(
              absl::StrCat("ciphertext has ", ciphertext.size(), " bytes; this ",
                           KeyAlgorithmName(key.algorithm), " key needs exactly ", k));
        }
        // Public values: an ordinary comparison leaks nothing.
        if (memcmp(ciphertext.data(), key.modulus.data(), k) >= 0) {
          return absl::InvalidArgumentError(
              "ciphertext is not less than the RSA modulus");
        }
        OFFKEY_RETURN_IF_ERROR(capabilities_.CanDecryptRaw(key.algorithm));
        CK_MECHANISM mech = {CKM_RSA_X_509, nullptr, 0};
        OFFKEY_RETURN_IF_ERROR(CkRvStatus(
            token_->fn()->C_DecryptInit(session, &mech, key.object), "C_DecryptInit"));
        plain = SecretBytes(k);
        CK_ULONG len = k;
        OFFKEY_RETURN_IF_ERROR(CkRvStatus(
            token_->fn()->C_Decrypt(
                session, reinterpret_cast<CK_BYTE*>(const_cast<char*>(ciphertext.data())),
                k, plain.data(), &len),
            "C_Decrypt"));
        if (len > k) {  // Never from a working module; nothing secret to hide then.
          return absl::InternalError(absl::StrCat("C_Decrypt (raw RSA) returned ", len,
                                                  " bytes for a ", k, "-byte modulus"));
        }
        // Some modules drop leading zero bytes, so `len` can reveal how many the
        // plaintext starts with: right-align to the modulus size in time independent of
        // it.
        RightAlignConstantTime(plain, len);
        return absl::OkStatus();
      }));
  return plain;
}

absl::Status Pkcs11KeyStore::ResolveHmacKey(CK_SESSION_HANDLE session, bool fresh,
                                            bool create, CK_OBJECT_HANDLE* out) {
  const uint64_t epoch = token_->epoch();
  if (!fresh) {
    offkey::MutexLock lock(&mu_);
    if (hmac_key_ != CK_INVALID_HANDLE && hmac_epoch_ == epoch) {
      *out = hmac_key_;
      return absl::OkStatus();
    }
  }
  const CK_FUNCTION_LIST* fn = token_->fn();
  Template find;
  find.Ulong(CKA_CLASS, CKO_SECRET_KEY).Bytes(CKA_LABEL, kHmacKeyLabel);
  std::vector<CK_OBJECT_HANDLE> found;
  OFFKEY_RETURN_IF_ERROR(
      CkRvStatus(FindObjects(fn, session, find, &found), "C_FindObjects (store secret)"));
  if (found.empty() && !create) {
    *out = CK_INVALID_HANDLE;
    if (token_->LoggedIn(session)) return absl::OkStatus();
    return CkRvStatus(CKR_USER_NOT_LOGGED_IN, "no store secret found while logged out");
  }
  if (found.empty()) {
    OFFKEY_RETURN_IF_ERROR(
        capabilities_.CanUseStoreSecret(/*generate=*/true, kHmacKeyLabel));
    Template key;
    key.Ulong(CKA_CLASS, CKO_SECRET_KEY)
        .Ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .Ulong(CKA_VALUE_LEN, 32)
        .Bool(CKA_TOKEN, true)
        .Bool(CKA_PRIVATE, true)
        .Bool(CKA_SENSITIVE, true)
        .Bool(CKA_EXTRACTABLE, false)
        .Bool(CKA_SIGN, true)
        .Bytes(CKA_LABEL, kHmacKeyLabel)
        .Bytes(CKA_ID, RandomBytes(16));
    CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, nullptr, 0};
    CK_OBJECT_HANDLE created;
    OFFKEY_RETURN_IF_ERROR(
        CkRvStatus(fn->C_GenerateKey(session, &mech, key.data(), key.size(), &created),
                   "C_GenerateKey (store secret)"));
    OFFKEY_RETURN_IF_ERROR(CkRvStatus(FindObjects(fn, session, find, &found),
                                      "C_FindObjects (store secret)"));
  }
  // Two processes may have created one each at the same moment: all agree on the one
  // with the smallest CKA_ID.
  CK_OBJECT_HANDLE chosen = CK_INVALID_HANDLE;
  std::string chosen_id;
  for (CK_OBJECT_HANDLE h : found) {
    std::string id;
    OFFKEY_RETURN_IF_ERROR(CkRvStatus(GetBytes(fn, session, h, CKA_ID, &id),
                                      "C_GetAttributeValue (CKA_ID)"));
    if (chosen == CK_INVALID_HANDLE || id < chosen_id) {
      chosen = h;
      chosen_id = id;
    }
  }
  offkey::MutexLock lock(&mu_);
  hmac_key_ = chosen;
  hmac_epoch_ = epoch;
  *out = chosen;
  return absl::OkStatus();
}

absl::StatusOr<SecretBytes> Pkcs11KeyStore::HmacWithStoreSecret(
    absl::string_view data, const CallOptions& options) {
  SecretBytes mac(32);
  OFFKEY_RETURN_IF_ERROR(
      token_->Run("C_Sign (HMAC-SHA256 with the store secret)", options.deadline,
                  [&](CK_SESSION_HANDLE session, int attempt) -> absl::Status {
                    // Made by Create; one that vanished since is the token's storage
                    // gone, not a secret to make again under calls already in flight.
                    CK_OBJECT_HANDLE key;
                    OFFKEY_RETURN_IF_ERROR(
                        ResolveHmacKey(session, attempt > 0, /*create=*/false, &key));
                    if (key == CK_INVALID_HANDLE) return StoreSecretGone();
                    return HmacSha256InToken(token_->fn(), session, key, data, &mac);
                  }));
  return mac;
}

void Pkcs11KeyStore::ForgetTicketRoot(absl::string_view name) {
  offkey::MutexLock lock(&mu_);
  ticket_roots_.erase(std::string(name));
}

absl::Status Pkcs11KeyStore::FindTicketSets(CK_SESSION_HANDLE session,
                                            absl::string_view name,
                                            std::vector<TicketSetObjects>* sets,
                                            std::vector<CK_OBJECT_HANDLE>* parts) {
  const CK_FUNCTION_LIST* fn = token_->fn();
  sets->clear();
  if (parts != nullptr) parts->clear();
  Template roots_find, records_find;
  roots_find.Ulong(CKA_CLASS, CKO_SECRET_KEY);
  records_find.Ulong(CKA_CLASS, CKO_DATA).Bytes(CKA_APPLICATION, kTicketApplication);
  if (!name.empty()) {
    roots_find.Bytes(CKA_LABEL, TicketLabel(name));
    records_find.Bytes(CKA_LABEL, TicketLabel(name));
  }
  std::vector<CK_OBJECT_HANDLE> roots, records;
  OFFKEY_RETURN_IF_ERROR(CkRvStatus(FindObjects(fn, session, roots_find, &roots),
                                    "C_FindObjects (ticket-key roots)"));
  OFFKEY_RETURN_IF_ERROR(CkRvStatus(FindObjects(fn, session, records_find, &records),
                                    "C_FindObjects (ticket-key records)"));
  // An object destroyed since the search is skipped, unless its handle went stale
  // because the login was lost (Run recovers from that).
  auto read = [&](CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, std::string* out,
                  bool* skip) -> absl::Status {
    CK_RV rv = GetBytes(fn, session, h, type, out);
    *skip = IsHandleStale(rv) && token_->LoggedIn(session);
    if (*skip) return absl::OkStatus();
    return CkRvStatus(rv, "C_GetAttributeValue (ticket-key set)");
  };
  // By (label, root id): the root's handle.
  absl::flat_hash_map<std::pair<std::string, std::string>, CK_OBJECT_HANDLE> by_id;
  for (CK_OBJECT_HANDLE h : roots) {
    std::string label, id;
    bool skip = false;
    OFFKEY_RETURN_IF_ERROR(read(h, CKA_LABEL, &label, &skip));
    if (skip || !absl::StartsWith(label, kTicketLabelPrefix)) continue;
    OFFKEY_RETURN_IF_ERROR(read(h, CKA_ID, &id, &skip));
    if (skip) continue;
    by_id[{std::move(label), std::move(id)}] = h;
    if (parts != nullptr) parts->push_back(h);
  }
  absl::flat_hash_map<std::string, TicketSetObjects> chosen;  // By name.
  for (CK_OBJECT_HANDLE h : records) {
    std::string label, value, root_id;
    bool skip = false;
    OFFKEY_RETURN_IF_ERROR(read(h, CKA_LABEL, &label, &skip));
    if (skip || !absl::StartsWith(label, kTicketLabelPrefix)) continue;
    if (parts != nullptr) parts->push_back(h);
    OFFKEY_RETURN_IF_ERROR(read(h, CKA_VALUE, &value, &skip));
    TicketSetObjects set;
    if (skip || !DecodeTicketRecord(value, &root_id, &set.info)) continue;
    auto root = by_id.find(std::make_pair(label, root_id));
    // A record whose root is not (or no longer) there is no set.
    if (root == by_id.end()) continue;
    set.info.name = label.substr(kTicketLabelPrefix.size());
    set.root = root->second;
    set.root_id = std::move(root_id);
    auto [it, inserted] = chosen.try_emplace(set.info.name);
    if (inserted || std::tie(set.info.create_time, set.root_id) <
                        std::tie(it->second.info.create_time, it->second.root_id)) {
      it->second = std::move(set);
    }
  }
  for (auto& [set_name, set] : chosen) sets->push_back(std::move(set));
  std::sort(sets->begin(), sets->end(),
            [](const auto& a, const auto& b) { return a.info.name < b.info.name; });
  return absl::OkStatus();
}

absl::Status Pkcs11KeyStore::FindTicketSet(CK_SESSION_HANDLE session,
                                           absl::string_view name,
                                           TicketSetObjects* out) {
  std::vector<TicketSetObjects> sets;
  OFFKEY_RETURN_IF_ERROR(FindTicketSets(session, name, &sets));
  if (sets.empty()) {
    // Private objects are invisible without a login: that is not "no such set".
    if (!token_->LoggedIn(session)) {
      return CkRvStatus(CKR_USER_NOT_LOGGED_IN,
                        "no ticket-key set found while logged out");
    }
    ForgetTicketRoot(name);
    return NoTicketSet(name);
  }
  *out = std::move(sets[0]);
  return absl::OkStatus();
}

absl::Status Pkcs11KeyStore::ResolveTicketRoot(CK_SESSION_HANDLE session,
                                               absl::string_view name, bool fresh,
                                               TicketRootHandle* out) {
  const uint64_t epoch = token_->epoch();
  if (!fresh) {
    std::optional<TicketRootHandle> cached;
    {
      offkey::MutexLock lock(&mu_);
      auto it = ticket_roots_.find(name);
      if (it != ticket_roots_.end() && it->second.epoch == epoch) cached = it->second;
    }
    // As for keys: on a module that reuses handles, only while it names this root.
    if (cached.has_value() && (!token_->may_reuse_object_handles() ||
                               StillNames(session, cached->object, cached->id))) {
      *out = *std::move(cached);
      return absl::OkStatus();
    }
  }
  TicketSetObjects set;
  OFFKEY_RETURN_IF_ERROR(FindTicketSet(session, name, &set));
  TicketRootHandle root{set.root, std::move(set.root_id), epoch};
  offkey::MutexLock lock(&mu_);
  ticket_roots_[std::string(name)] = root;
  *out = std::move(root);
  return absl::OkStatus();
}

absl::StatusOr<TicketKeySetInfo> Pkcs11KeyStore::CreateTicketKeySet(
    absl::string_view name, absl::Duration rotation_period) {
  OFFKEY_RETURN_IF_ERROR(ValidateTicketKeySetName(name));
  OFFKEY_RETURN_IF_ERROR(ValidateTicketRotationPeriod(rotation_period));
  OFFKEY_RETURN_IF_ERROR(capabilities_.CanMakeTicketKeySets());
  TicketKeySetInfo info;
  info.name = std::string(name);
  info.rotation_period = rotation_period;
  info.create_time = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  const std::string label = TicketLabel(name);
  // The root this call made, across attempts: a retried attempt that finds it made
  // it, and does not report its own set as taken.
  std::string made_id;
  OFFKEY_RETURN_IF_ERROR(token_->Run(
      absl::StrCat("create ticket-key set '", name, "'"), absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) -> absl::Status {
        const CK_FUNCTION_LIST* fn = token_->fn();
        std::vector<TicketSetObjects> existing;
        OFFKEY_RETURN_IF_ERROR(FindTicketSets(session, name, &existing));
        if (!existing.empty()) {
          if (!made_id.empty() && existing[0].root_id == made_id) {
            info = existing[0].info;
            return absl::OkStatus();
          }
          return absl::AlreadyExistsError(
              absl::StrCat("a ticket-key set named '", name, "' exists"));
        }
        const std::string id = RandomBytes(kTicketRootIdSize);
        Template record;
        record.Ulong(CKA_CLASS, CKO_DATA)
            .Bool(CKA_TOKEN, true)
            .Bool(CKA_PRIVATE, true)
            .Bytes(CKA_APPLICATION, kTicketApplication)
            .Bytes(CKA_LABEL, label)
            .Bytes(CKA_VALUE, EncodeTicketRecord(id, info));
        CK_OBJECT_HANDLE record_handle = CK_INVALID_HANDLE;
        OFFKEY_RETURN_IF_ERROR(CkRvStatus(
            fn->C_CreateObject(session, record.data(), record.size(), &record_handle),
            "C_CreateObject (ticket-key record)"));
        Template root;
        root.Ulong(CKA_CLASS, CKO_SECRET_KEY)
            .Ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
            .Ulong(CKA_VALUE_LEN, kTicketRootSecretSize)
            .Bool(CKA_TOKEN, true)
            .Bool(CKA_PRIVATE, true)
            .Bool(CKA_SENSITIVE, true)
            .Bool(CKA_EXTRACTABLE, false)
            .Bool(CKA_SIGN, true)
            // Sign only: modules default some of these to true (SoftHSM2: encrypt,
            // decrypt, wrap, unwrap, verify).
            .Bool(CKA_VERIFY, false)
            .Bool(CKA_DERIVE, false)
            .Bool(CKA_ENCRYPT, false)
            .Bool(CKA_DECRYPT, false)
            .Bool(CKA_WRAP, false)
            .Bool(CKA_UNWRAP, false)
            .Bytes(CKA_LABEL, label)
            .Bytes(CKA_ID, id);
        CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, nullptr, 0};
        CK_OBJECT_HANDLE root_handle = CK_INVALID_HANDLE;
        CK_RV rv =
            fn->C_GenerateKey(session, &mech, root.data(), root.size(), &root_handle);
        if (rv != CKR_OK) {
          fn->C_DestroyObject(session, record_handle);
          return CkRvStatus(rv, "C_GenerateKey (ticket-key root)");
        }
        made_id = id;
        // Another process may have made one at the same moment: all use one of them.
        OFFKEY_RETURN_IF_ERROR(FindTicketSets(session, name, &existing));
        if (!existing.empty() && existing[0].root_id != id) {
          fn->C_DestroyObject(session, root_handle);
          fn->C_DestroyObject(session, record_handle);
          made_id.clear();
          return absl::AlreadyExistsError(absl::StrCat(
              "a ticket-key set named '", name, "' was made at the same time elsewhere"));
        }
        return absl::OkStatus();
      },
      Token::Access::kChange));
  ForgetTicketRoot(name);
  return info;
}

absl::StatusOr<std::vector<TicketKeySetInfo>> Pkcs11KeyStore::ListTicketKeySets() {
  std::vector<TicketKeySetInfo> out;
  OFFKEY_RETURN_IF_ERROR(token_->Run("list ticket-key sets", absl::InfiniteFuture(),
                                     [&](CK_SESSION_HANDLE session, int) -> absl::Status {
                                       std::vector<TicketSetObjects> sets;
                                       OFFKEY_RETURN_IF_ERROR(
                                           FindTicketSets(session, "", &sets));
                                       out.clear();
                                       for (TicketSetObjects& set : sets) {
                                         out.push_back(std::move(set.info));
                                       }
                                       return absl::OkStatus();
                                     }));
  return out;
}

absl::StatusOr<TicketKeySetInfo> Pkcs11KeyStore::FindTicketKeySet(
    absl::string_view name) {
  OFFKEY_RETURN_IF_ERROR(ValidateTicketKeySetName(name));
  TicketSetObjects set;
  OFFKEY_RETURN_IF_ERROR(token_->Run("find ticket-key set", absl::InfiniteFuture(),
                                     [&](CK_SESSION_HANDLE session, int) {
                                       return FindTicketSet(session, name, &set);
                                     }));
  return set.info;
}

absl::Status Pkcs11KeyStore::DestroyTicketKeySet(absl::string_view name) {
  OFFKEY_RETURN_IF_ERROR(ValidateTicketKeySetName(name));
  ForgetTicketRoot(name);
  absl::Status status = token_->Run(
      absl::StrCat("destroy ticket-key set '", name, "'"), absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int) -> absl::Status {
        std::vector<TicketSetObjects> sets;
        std::vector<CK_OBJECT_HANDLE> parts;
        OFFKEY_RETURN_IF_ERROR(FindTicketSets(session, name, &sets, &parts));
        if (sets.empty() && !token_->LoggedIn(session)) {
          return CkRvStatus(CKR_USER_NOT_LOGGED_IN,
                            "no ticket-key set found while logged out");
        }
        // Roots first: once a root is gone its set is gone, whatever happens next.
        for (CK_OBJECT_HANDLE h : parts) {
          CK_RV rv = token_->fn()->C_DestroyObject(session, h);
          if (!IsHandleStale(rv)) {
            OFFKEY_RETURN_IF_ERROR(CkRvStatus(rv, "C_DestroyObject (ticket-key set)"));
          }
        }
        return sets.empty() ? NoTicketSet(name) : absl::OkStatus();
      },
      Token::Access::kChange);
  ForgetTicketRoot(name);
  return status;
}

absl::StatusOr<SecretBytes> Pkcs11KeyStore::DeriveTicketEpochSecret(
    absl::string_view name, int64_t epoch, const CallOptions& options) {
  OFFKEY_RETURN_IF_ERROR(ValidateTicketKeySetName(name));
  OFFKEY_RETURN_IF_ERROR(ValidateTicketEpoch(epoch));
  const std::string message = TicketEpochMessage(name, epoch);
  SecretBytes secret(kTicketEpochSecretSize);
  OFFKEY_RETURN_IF_ERROR(token_->Run(
      absl::StrCat("C_Sign (HMAC-SHA256 with ticket-key set '", name, "')"),
      options.deadline, [&](CK_SESSION_HANDLE session, int attempt) -> absl::Status {
        TicketRootHandle root;
        OFFKEY_RETURN_IF_ERROR(ResolveTicketRoot(session, name, attempt > 0, &root));
        return HmacSha256InToken(token_->fn(), session, root.object, message, &secret);
      }));
  return secret;
}

absl::Status Pkcs11KeyStore::StoreSecretGone() const {
  return absl::UnavailableError(absl::StrCat(
      "HSM token ", token_->uri().ToString(),
      " no longer shows offkey's objects (its storage is gone or was replaced)"));
}

absl::Status Pkcs11KeyStore::CheckStoreSecretVisible() {
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  OFFKEY_RETURN_IF_ERROR(token_->Run(
      "find the store secret", absl::Now() + absl::Seconds(2),
      [&](CK_SESSION_HANDLE session, int) {
        return ResolveHmacKey(session, /*fresh=*/true, /*create=*/false, &key);
      }));
  if (key == CK_INVALID_HANDLE) return StoreSecretGone();
  return absl::OkStatus();
}

absl::Status Pkcs11KeyStore::CheckHealth() {
  OFFKEY_RETURN_IF_ERROR(token_->CheckHealth());
  absl::Status visible = CheckStoreSecretVisible();
  // On modules whose object changes run alone, a slow one (RSA key generation takes
  // seconds on opencryptoki) keeps the lookup out past its deadline. The session check
  // above has just shown that the token answers: busy is not unavailable.
  if (absl::IsDeadlineExceeded(visible) && token_->ObjectChangeUnderWay()) {
    return absl::OkStatus();
  }
  return visible;
}

}  // namespace offkey::hsm::pkcs11
