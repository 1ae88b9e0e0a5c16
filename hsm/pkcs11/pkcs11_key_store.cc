#include "hsm/pkcs11/pkcs11_key_store.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/openssl_util.h"
#include "base/status_macros.h"
#include "hsm/openssl_key.h"
#include "hsm/pkcs11/ck_rv.h"
#include "hsm/pkcs11/key_encoding.h"
#include "hsm/pkcs11/object_io.h"

namespace offkey::hsm::pkcs11 {
namespace {

constexpr absl::string_view kHmacKeyLabel = "offkey-premaster-substitute-v1";
constexpr absl::string_view kMetadataApplication = "offkey-metadata";
constexpr size_t kMaxSignature = 1024;  // RSA-4096 is 512 bytes; P-521 r||s is 132.
constexpr size_t kMaxChain = 16;

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

// Strips leading zero bytes (PKCS#11 big integers may carry them).
absl::string_view StripZeros(absl::string_view v) {
  while (v.size() > 1 && v[0] == '\0') v.remove_prefix(1);
  return v;
}

SecretBytes BnBytes(const BIGNUM* bn, size_t pad_to = 0) {
  size_t n = std::max(static_cast<size_t>(BN_num_bytes(bn)), pad_to);
  SecretBytes out(n);
  BN_bn2binpad(bn, out.data(), static_cast<int>(n));
  return out;
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

}  // namespace

absl::StatusOr<std::unique_ptr<Pkcs11KeyStore>> Pkcs11KeyStore::Create(
    const TokenOptions& options) {
  OFFKEY_ASSIGN_OR_RETURN(std::unique_ptr<Token> token, Token::Open(options));
  std::unique_ptr<Pkcs11KeyStore> store(new Pkcs11KeyStore(std::move(token)));
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

absl::Status Pkcs11KeyStore::RunOp(
    absl::string_view operation, absl::Time deadline,
    absl::FunctionRef<CK_RV(CK_SESSION_HANDLE, int, absl::Status*)> fn,
    Token::Access access) {
  absl::Status status;
  OFFKEY_RETURN_IF_ERROR(token_->Run(
      operation, deadline,
      [&](CK_SESSION_HANDLE session, int attempt) {
        status = absl::OkStatus();
        return fn(session, attempt, &status);
      },
      access));
  return status;
}

void Pkcs11KeyStore::Forget(absl::string_view key_id) {
  absl::MutexLock lock(&mu_);
  handles_.erase(std::string(key_id));
}

CK_RV Pkcs11KeyStore::ResolveKey(CK_SESSION_HANDLE session, absl::string_view key_id,
                                 bool fresh, KeyHandle* out, absl::Status* status) {
  const uint64_t epoch = token_->epoch();
  if (!fresh) {
    absl::MutexLock lock(&mu_);
    auto it = handles_.find(key_id);
    if (it != handles_.end() && it->second.epoch == epoch) {
      *out = it->second;
      return CKR_OK;
    }
  }
  const CK_FUNCTION_LIST* fn = token_->fn();
  Template find;
  find.Ulong(CKA_CLASS, CKO_PRIVATE_KEY).Bytes(CKA_ID, key_id);
  std::vector<CK_OBJECT_HANDLE> found;
  CK_RV rv = FindObjects(fn, session, find, &found, 2);
  if (rv != CKR_OK) return rv;
  if (found.empty()) {
    // Private objects are invisible without a login: that is not "no such key".
    if (!token_->LoggedIn(session)) return CKR_USER_NOT_LOGGED_IN;
    Forget(key_id);
    *status = absl::NotFoundError(absl::StrCat("no key with id ", Hex(key_id)));
    return CKR_OK;
  }
  if (found.size() > 1) {
    *status = absl::FailedPreconditionError(
        absl::StrCat("more than one private key has id ", Hex(key_id), " on the token"));
    return CKR_OK;
  }
  KeyHandle key;
  key.object = found[0];
  key.epoch = epoch;
  CK_ULONG type = 0;
  rv = GetUlong(fn, session, key.object, CKA_KEY_TYPE, &type);
  if (rv != CKR_OK) return rv;
  const std::optional<KeyFamily> family = FamilyOfKeyType(type);
  if (family == KeyFamily::kRsa) {
    std::string modulus;
    rv = GetBytes(fn, session, key.object, CKA_MODULUS, &modulus);
    if (rv != CKR_OK) return rv;
    key.modulus = std::string(StripZeros(modulus));
    key.algorithm = RsaAlgorithmForBits(static_cast<int>(key.modulus.size() * 8));
  } else if (family.has_value()) {
    std::string params;
    rv = GetBytes(fn, session, key.object, CKA_EC_PARAMS, &params);
    if (rv != CKR_OK) return rv;
    key.algorithm = AlgorithmFromEcParams(params);
  }
  absl::MutexLock lock(&mu_);
  handles_[std::string(key_id)] = key;
  *out = std::move(key);
  return CKR_OK;
}

CK_RV Pkcs11KeyStore::ReplaceObjects(
    CK_SESSION_HANDLE session, absl::string_view key_id, Template& find,
    const std::function<CK_RV(const std::string& key_name)>& create,
    absl::Status* status) {
  const CK_FUNCTION_LIST* fn = token_->fn();
  KeyHandle key;
  CK_RV rv = ResolveKey(session, key_id, false, &key, status);
  if (rv != CKR_OK || !status->ok()) return rv;
  std::string name;
  rv = GetBytes(fn, session, key.object, CKA_LABEL, &name);
  if (rv != CKR_OK) return rv;
  std::vector<CK_OBJECT_HANDLE> old;
  rv = FindObjects(fn, session, find, &old);
  if (rv != CKR_OK) return rv;
  // New objects first, old ones after: a failure in between leaves both, never neither.
  rv = create(name);
  if (rv != CKR_OK) return rv;
  for (CK_OBJECT_HANDLE h : old) fn->C_DestroyObject(session, h);
  return CKR_OK;
}

CK_RV Pkcs11KeyStore::Describe(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                               KeyInfo* out, absl::Status* status) {
  const CK_FUNCTION_LIST* fn = token_->fn();
  std::string label, id;
  CK_ULONG type = 0;
  CK_RV rv = GetBytes(fn, session, object, CKA_LABEL, &label);
  if (rv == CKR_OK) rv = GetBytes(fn, session, object, CKA_ID, &id);
  if (rv == CKR_OK) rv = GetUlong(fn, session, object, CKA_KEY_TYPE, &type);
  if (rv != CKR_OK) return rv;
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
    if (rv != CKR_OK) return rv;
    out->algorithm = RsaAlgorithmForBits(static_cast<int>(StripZeros(n).size() * 8));
    spki = RsaSpki(n, e);
  } else if (family.has_value()) {
    std::string params, point;
    rv = GetBytes(fn, session, object, CKA_EC_PARAMS, &params);
    if (rv != CKR_OK) return rv;
    out->algorithm = AlgorithmFromEcParams(params);
    // The point lives on the public key object beside the private one.
    Template find;
    find.Ulong(CKA_CLASS, CKO_PUBLIC_KEY).Bytes(CKA_ID, id);
    std::vector<CK_OBJECT_HANDLE> pub;
    rv = FindObjects(fn, session, find, &pub, 1);
    if (rv != CKR_OK) return rv;
    if (pub.empty()) {
      spki = absl::FailedPreconditionError(
          absl::StrCat("key '", label, "' has no public key object on the token"));
    } else {
      rv = GetBytes(fn, session, pub[0], CKA_EC_POINT, &point);
      if (rv != CKR_OK) return rv;
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
  if (!spki.ok()) {
    *status = spki.status();
    return CKR_OK;
  }
  out->public_key_spki = *std::move(spki);
  absl::StatusOr<std::string> ski = SkiOfSpki(out->public_key_spki);
  if (!ski.ok()) {
    *status = ski.status();
    return CKR_OK;
  }
  out->ski = *std::move(ski);
  return CKR_OK;
}

absl::StatusOr<KeyInfo> Pkcs11KeyStore::FindKey(const KeyLookup& lookup) {
  if (lookup.value.empty()) return absl::InvalidArgumentError("empty key reference");
  if (lookup.by == KeyLookup::By::kName) {
    OFFKEY_RETURN_IF_ERROR(ValidateKeyName(lookup.value));
  }
  KeyInfo info;
  absl::Status status =
      RunOp("find key", absl::InfiniteFuture(),
            [&](CK_SESSION_HANDLE session, int, absl::Status* st) -> CK_RV {
              Template find;
              find.Ulong(CKA_CLASS, CKO_PRIVATE_KEY);
              if (lookup.by == KeyLookup::By::kName) {
                find.Bytes(CKA_LABEL, lookup.value);
              } else {
                find.Bytes(CKA_ID, lookup.value);  // offkey's ids are SKIs.
              }
              std::vector<CK_OBJECT_HANDLE> found;
              CK_RV rv = FindObjects(token_->fn(), session, find, &found, 2);
              if (rv != CKR_OK) return rv;
              if (found.size() > 1) {
                *st = absl::FailedPreconditionError(
                    "more than one private key matches; give the key id instead");
                return CKR_OK;
              }
              if (found.size() == 1) {
                rv = Describe(session, found[0], &info, st);
                if (rv == CKR_OK && st->ok() && lookup.by == KeyLookup::By::kSki &&
                    info.ski != lookup.value) {
                  found.clear();  // An id that merely looks like the SKI: scan below.
                }
                if (!found.empty() || rv != CKR_OK || !st->ok()) return rv;
              }
              *st = absl::NotFoundError("");
              return CKR_OK;
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
  OFFKEY_RETURN_IF_ERROR(
      RunOp("list keys", absl::InfiniteFuture(),
            [&](CK_SESSION_HANDLE session, int, absl::Status*) -> CK_RV {
              keys.clear();
              Template find;
              find.Ulong(CKA_CLASS, CKO_PRIVATE_KEY);
              std::vector<CK_OBJECT_HANDLE> found;
              CK_RV rv = FindObjects(token_->fn(), session, find, &found);
              if (rv != CKR_OK) return rv;
              for (CK_OBJECT_HANDLE object : found) {
                KeyInfo info;
                absl::Status described;
                rv = Describe(session, object, &info, &described);
                if (rv != CKR_OK) return rv;
                // Keys of types offkey cannot use are not offkey's to list.
                if (described.ok() && info.algorithm != KeyAlgorithm::kUnknown) {
                  keys.push_back(std::move(info));
                }
              }
              return CKR_OK;
            }));
  std::sort(keys.begin(), keys.end(),
            [](const KeyInfo& a, const KeyInfo& b) { return a.name < b.name; });
  return keys;
}

absl::StatusOr<KeyInfo> Pkcs11KeyStore::StoreKeyPair(
    absl::string_view name, KeyAlgorithm algorithm, const std::string& spki,
    absl::FunctionRef<void(Template&, Template&)> add_components) {
  OFFKEY_ASSIGN_OR_RETURN(std::string ski, SkiOfSpki(spki));
  OFFKEY_RETURN_IF_ERROR(RunOp(
      "C_CreateObject (import key)", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int, absl::Status* st) -> CK_RV {
        const CK_FUNCTION_LIST* fn = token_->fn();
        Template same_id;
        same_id.Ulong(CKA_CLASS, CKO_PRIVATE_KEY).Bytes(CKA_ID, ski);
        std::vector<CK_OBJECT_HANDLE> found;
        CK_RV rv = FindObjects(fn, session, same_id, &found, 1);
        if (rv != CKR_OK) return rv;
        if (!found.empty()) {
          std::string existing;
          GetBytes(fn, session, found[0], CKA_LABEL, &existing);
          *st = absl::AlreadyExistsError(
              absl::StrCat("this key is already on the token as '", existing, "'"));
          return CKR_OK;
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
        rv = fn->C_CreateObject(session, priv.data(), priv.size(), &priv_handle);
        if (rv != CKR_OK) return rv;
        rv = fn->C_CreateObject(session, pub.data(), pub.size(), &pub_handle);
        if (rv != CKR_OK) fn->C_DestroyObject(session, priv_handle);
        return rv;
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

  OFFKEY_ASSIGN_OR_RETURN(EvpPkeyPtr pkey, ParsePkcs8(pkcs8_der.view()));
  const KeyAlgorithm algorithm = KeyAlgorithmOf(pkey.get());
  if (algorithm == KeyAlgorithm::kUnknown) return UnsupportedKeyError(pkey.get());
  OFFKEY_ASSIGN_OR_RETURN(const std::string spki, SpkiOf(pkey.get()));

  switch (FamilyOf(algorithm)) {
    case KeyFamily::kRsa: {
      const char* names[] = {
          OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
          OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
          OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
          OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
      const CK_ATTRIBUTE_TYPE types[] = {
          CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1,
          CKA_PRIME_2, CKA_EXPONENT_1,      CKA_EXPONENT_2,       CKA_COEFFICIENT};
      std::vector<SecretBytes> parts;
      for (const char* param : names) {
        BIGNUM* bn = nullptr;
        if (EVP_PKEY_get_bn_param(pkey.get(), param, &bn) != 1) {
          return OpenSslError(absl::StatusCode::kInvalidArgument,
                              "RSA keys must carry their CRT parameters");
        }
        parts.push_back(BnBytes(bn));
        BN_clear_free(bn);
      }
      return StoreKeyPair(name, algorithm, spki, [&](Template& priv, Template& pub) {
        priv.Ulong(CKA_KEY_TYPE, Pkcs11KeyType(algorithm)).Bool(CKA_DECRYPT, true);
        for (size_t i = 0; i < parts.size(); ++i) priv.Secret(types[i], parts[i]);
        pub.Ulong(CKA_KEY_TYPE, Pkcs11KeyType(algorithm))
            .Bool(CKA_ENCRYPT, true)
            .Secret(CKA_MODULUS, parts[0])
            .Secret(CKA_PUBLIC_EXPONENT, parts[1]);
      });
    }
    case KeyFamily::kEc: {
      BIGNUM* d = nullptr;
      if (EVP_PKEY_get_bn_param(pkey.get(), OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1) {
        return OpenSslError(absl::StatusCode::kInvalidArgument, "EC private value");
      }
      SecretBytes value = BnBytes(d, (KeyBits(algorithm) + 7) / 8);
      BN_clear_free(d);
      std::string point(PublicPointLength(algorithm), '\0');
      size_t point_len = 0;
      if (EVP_PKEY_get_octet_string_param(pkey.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                          reinterpret_cast<unsigned char*>(point.data()),
                                          point.size(), &point_len) != 1 ||
          point_len != point.size()) {
        return OpenSslError(absl::StatusCode::kInvalidArgument, "EC public point");
      }
      std::string params(EcParamsFor(algorithm));
      return StoreKeyPair(name, algorithm, spki, [&](Template& priv, Template& pub) {
        priv.Ulong(CKA_KEY_TYPE, Pkcs11KeyType(algorithm))
            .Bytes(CKA_EC_PARAMS, params)
            .Secret(CKA_VALUE, value);
        pub.Ulong(CKA_KEY_TYPE, Pkcs11KeyType(algorithm))
            .Bytes(CKA_EC_PARAMS, params)
            .Bytes(CKA_EC_POINT, WrapEcPoint(point));
      });
    }
    case KeyFamily::kEd25519: {
      SecretBytes value(32);
      std::string pub_raw(32, '\0');
      size_t n = value.size(), m = pub_raw.size();
      if (EVP_PKEY_get_raw_private_key(pkey.get(), value.data(), &n) != 1 ||
          EVP_PKEY_get_raw_public_key(
              pkey.get(), reinterpret_cast<unsigned char*>(pub_raw.data()), &m) != 1) {
        return OpenSslError(absl::StatusCode::kInvalidArgument, "Ed25519 key");
      }
      std::string params(EcParamsFor(KeyAlgorithm::kEd25519));
      return StoreKeyPair(
          name, KeyAlgorithm::kEd25519, spki, [&](Template& priv, Template& pub) {
            priv.Ulong(CKA_KEY_TYPE, Pkcs11KeyType(KeyAlgorithm::kEd25519))
                .Bytes(CKA_EC_PARAMS, params)
                .Secret(CKA_VALUE, value);
            pub.Ulong(CKA_KEY_TYPE, Pkcs11KeyType(KeyAlgorithm::kEd25519))
                .Bytes(CKA_EC_PARAMS, params)
                .Bytes(CKA_EC_POINT, WrapEcPoint(pub_raw));
          });
    }
  }
  return absl::InternalError("unreachable: every key family is handled above");
}

absl::StatusOr<KeyInfo> Pkcs11KeyStore::GenerateKey(absl::string_view name,
                                                    KeyAlgorithm algorithm) {
  OFFKEY_RETURN_IF_ERROR(ValidateKeyName(name));
  if (KeyBits(algorithm) == 0) {
    return absl::InvalidArgumentError("unknown key algorithm");
  }
  OFFKEY_RETURN_IF_ERROR(CheckNameFree(name));

  // Generate under a random temporary id, then re-id both halves with the SKI, which is
  // only known once the public key exists.
  const std::string temp_id = RandomBytes(16);
  CK_OBJECT_HANDLE priv_handle = CK_INVALID_HANDLE, pub_handle = CK_INVALID_HANDLE;
  OFFKEY_RETURN_IF_ERROR(RunOp(
      absl::StrCat("C_GenerateKeyPair (", KeyAlgorithmName(algorithm), ")"),
      absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int, absl::Status*) {
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
        return token_->fn()->C_GenerateKeyPair(session, &mech, pub.data(), pub.size(),
                                               priv.data(), priv.size(), &pub_handle,
                                               &priv_handle);
      },
      Token::Access::kChange));
  KeyInfo info;
  absl::Status status = RunOp(
      "C_SetAttributeValue (key id)", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int, absl::Status* st) -> CK_RV {
        CK_RV rv = Describe(session, priv_handle, &info, st);
        if (rv != CKR_OK || !st->ok()) return rv;
        Template id;
        id.Bytes(CKA_ID, info.ski);
        rv =
            token_->fn()->C_SetAttributeValue(session, priv_handle, id.data(), id.size());
        if (rv != CKR_OK) return rv;
        return token_->fn()->C_SetAttributeValue(session, pub_handle, id.data(),
                                                 id.size());
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
  return RunOp(
      "C_DestroyObject", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int, absl::Status* st) -> CK_RV {
        const CK_FUNCTION_LIST* fn = token_->fn();
        Template find;
        find.Bytes(CKA_ID, key_id);
        std::vector<CK_OBJECT_HANDLE> found;
        CK_RV rv = FindObjects(fn, session, find, &found);
        if (rv != CKR_OK) return rv;
        Template meta;
        MetadataSelector(key_id, meta);
        std::vector<CK_OBJECT_HANDLE> meta_found;
        rv = FindObjects(fn, session, meta, &meta_found);
        if (rv != CKR_OK) return rv;
        if (found.empty()) {
          *st = absl::NotFoundError(absl::StrCat("no key with id ", Hex(key_id)));
          return CKR_OK;
        }
        found.insert(found.end(), meta_found.begin(), meta_found.end());
        for (CK_OBJECT_HANDLE h : found) {
          rv = fn->C_DestroyObject(session, h);
          if (rv != CKR_OK && !IsHandleStale(rv)) return rv;
        }
        return CKR_OK;
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
  return RunOp(
      "C_CreateObject (certificate)", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int, absl::Status* st) -> CK_RV {
        Template find;
        find.Ulong(CKA_CLASS, CKO_CERTIFICATE).Bytes(CKA_ID, key_id);
        return ReplaceObjects(
            session, key_id, find,
            [&](const std::string& name) -> CK_RV {
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
                CK_RV rv =
                    token_->fn()->C_CreateObject(session, cert.data(), cert.size(), &h);
                if (rv != CKR_OK) return rv;
              }
              return CKR_OK;
            },
            st);
      },
      Token::Access::kChange);
}

absl::StatusOr<std::vector<std::string>> Pkcs11KeyStore::GetCertificateChain(
    absl::string_view key_id) {
  std::vector<std::pair<int, std::string>> certs;
  OFFKEY_RETURN_IF_ERROR(
      RunOp("read certificates", absl::InfiniteFuture(),
            [&](CK_SESSION_HANDLE session, int, absl::Status*) -> CK_RV {
              const CK_FUNCTION_LIST* fn = token_->fn();
              certs.clear();
              Template find;
              find.Ulong(CKA_CLASS, CKO_CERTIFICATE).Bytes(CKA_ID, key_id);
              std::vector<CK_OBJECT_HANDLE> found;
              CK_RV rv = FindObjects(fn, session, find, &found, kMaxChain);
              if (rv != CKR_OK) return rv;
              for (CK_OBJECT_HANDLE h : found) {
                std::string label, value;
                rv = GetBytes(fn, session, h, CKA_LABEL, &label);
                if (rv == CKR_OK) rv = GetBytes(fn, session, h, CKA_VALUE, &value);
                if (rv != CKR_OK) return rv;
                certs.emplace_back(ChainIndex(label), std::move(value));
              }
              return CKR_OK;
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
  return RunOp(
      "C_CreateObject (metadata)", absl::InfiniteFuture(),
      [&](CK_SESSION_HANDLE session, int, absl::Status* st) -> CK_RV {
        Template find;
        MetadataSelector(key_id, find);
        return ReplaceObjects(
            session, key_id, find,
            [&](const std::string& name) -> CK_RV {
              Template data;
              MetadataSelector(key_id, data);
              data.Bool(CKA_TOKEN, true)
                  .Bool(CKA_PRIVATE, true)
                  .Bytes(CKA_LABEL, name)
                  .Bytes(CKA_VALUE, metadata);
              CK_OBJECT_HANDLE h;
              return token_->fn()->C_CreateObject(session, data.data(), data.size(), &h);
            },
            st);
      },
      Token::Access::kChange);
}

absl::StatusOr<std::string> Pkcs11KeyStore::GetMetadata(absl::string_view key_id) {
  std::string value;
  OFFKEY_RETURN_IF_ERROR(
      RunOp("read metadata", absl::InfiniteFuture(),
            [&](CK_SESSION_HANDLE session, int, absl::Status* st) -> CK_RV {
              const CK_FUNCTION_LIST* fn = token_->fn();
              Template find;
              MetadataSelector(key_id, find);
              std::vector<CK_OBJECT_HANDLE> found;
              CK_RV rv = FindObjects(fn, session, find, &found);
              if (rv != CKR_OK) return rv;
              if (found.empty()) {
                *st = absl::NotFoundError(
                    absl::StrCat("no metadata stored for key id ", Hex(key_id)));
                return CKR_OK;
              }
              // Two objects only exist while a PutMetadata is between create and destroy,
              // in this process or another; the newer handle is the one a module assigns
              // later.
              return GetBytes(fn, session, *std::max_element(found.begin(), found.end()),
                              CKA_VALUE, &value);
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
  OFFKEY_RETURN_IF_ERROR(
      RunOp(absl::StrCat("C_Sign (", SignatureKindName(algorithm.kind), ", key id ",
                         Hex(key_id), ")"),
            options.deadline,
            [&](CK_SESSION_HANDLE session, int attempt, absl::Status* st) -> CK_RV {
              KeyHandle key;
              CK_RV rv = ResolveKey(session, key_id, attempt > 0, &key, st);
              if (rv != CKR_OK || !st->ok()) return rv;
              if (!SignAlgorithmFitsKey(algorithm, key.algorithm)) {
                *st = absl::InvalidArgumentError(absl::StrCat(
                    SignatureKindName(algorithm.kind), " with ", HashName(algorithm.hash),
                    " cannot be used with a ", KeyAlgorithmName(key.algorithm), " key"));
                return CKR_OK;
              }
              rv = token_->fn()->C_SignInit(session, &mech, key.object);
              if (rv != CKR_OK) return rv;
              sig_len = sizeof(sig);
              return token_->fn()->C_Sign(
                  session, reinterpret_cast<CK_BYTE*>(const_cast<char*>(to_sign.data())),
                  to_sign.size(), sig, &sig_len);
            }));
  std::string raw(reinterpret_cast<char*>(sig), sig_len);
  if (algorithm.kind == SignatureKind::kEcdsa) return EcdsaRawToDer(raw);
  return raw;
}

absl::StatusOr<SecretBytes> Pkcs11KeyStore::RsaDecryptRaw(absl::string_view key_id,
                                                          absl::string_view ciphertext,
                                                          const CallOptions& options) {
  SecretBytes plain;
  OFFKEY_RETURN_IF_ERROR(RunOp(
      absl::StrCat("C_Decrypt (raw RSA, key id ", Hex(key_id), ")"), options.deadline,
      [&](CK_SESSION_HANDLE session, int attempt, absl::Status* st) -> CK_RV {
        KeyHandle key;
        CK_RV rv = ResolveKey(session, key_id, attempt > 0, &key, st);
        if (rv != CKR_OK || !st->ok()) return rv;
        if (FamilyOf(key.algorithm) != KeyFamily::kRsa ||
            key.algorithm == KeyAlgorithm::kUnknown) {
          *st = absl::InvalidArgumentError(
              absl::StrCat("raw RSA decryption needs an RSA key; key id ", Hex(key_id),
                           " is ", KeyAlgorithmName(key.algorithm)));
          return CKR_OK;
        }
        const size_t k = key.modulus.size();
        if (ciphertext.size() != k) {
          *st = absl::InvalidArgumentError(
              absl::StrCat("ciphertext has ", ciphertext.size(), " bytes; this ",
                           KeyAlgorithmName(key.algorithm), " key needs exactly ", k));
          return CKR_OK;
        }
        // Public values: an ordinary comparison leaks nothing.
        if (memcmp(ciphertext.data(), key.modulus.data(), k) >= 0) {
          *st = absl::InvalidArgumentError("ciphertext is not less than the RSA modulus");
          return CKR_OK;
        }
        CK_MECHANISM mech = {CKM_RSA_X_509, nullptr, 0};
        rv = token_->fn()->C_DecryptInit(session, &mech, key.object);
        if (rv != CKR_OK) return rv;
        plain = SecretBytes(k);
        CK_ULONG len = k;
        rv = token_->fn()->C_Decrypt(
            session, reinterpret_cast<CK_BYTE*>(const_cast<char*>(ciphertext.data())), k,
            plain.data(), &len);
        if (rv != CKR_OK) return rv;
        if (len < k) {
          // Some modules drop leading zero bytes: right-align to the modulus size.
          memmove(plain.data() + (k - len), plain.data(), len);
          memset(plain.data(), 0, k - len);
        }
        return CKR_OK;
      }));
  return plain;
}

CK_RV Pkcs11KeyStore::ResolveHmacKey(CK_SESSION_HANDLE session, bool fresh, bool create,
                                     CK_OBJECT_HANDLE* out) {
  const uint64_t epoch = token_->epoch();
  if (!fresh) {
    absl::MutexLock lock(&mu_);
    if (hmac_key_ != CK_INVALID_HANDLE && hmac_epoch_ == epoch) {
      *out = hmac_key_;
      return CKR_OK;
    }
  }
  const CK_FUNCTION_LIST* fn = token_->fn();
  Template find;
  find.Ulong(CKA_CLASS, CKO_SECRET_KEY).Bytes(CKA_LABEL, kHmacKeyLabel);
  std::vector<CK_OBJECT_HANDLE> found;
  CK_RV rv = FindObjects(fn, session, find, &found);
  if (rv != CKR_OK) return rv;
  if (found.empty() && !create) {
    *out = CK_INVALID_HANDLE;
    return token_->LoggedIn(session) ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
  }
  if (found.empty()) {
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
    rv = fn->C_GenerateKey(session, &mech, key.data(), key.size(), &created);
    if (rv != CKR_OK) return rv;
    rv = FindObjects(fn, session, find, &found);
    if (rv != CKR_OK) return rv;
  }
  // Two processes may have created one each at the same moment: all agree on the one
  // with the smallest CKA_ID.
  CK_OBJECT_HANDLE chosen = CK_INVALID_HANDLE;
  std::string chosen_id;
  for (CK_OBJECT_HANDLE h : found) {
    std::string id;
    rv = GetBytes(fn, session, h, CKA_ID, &id);
    if (rv != CKR_OK) return rv;
    if (chosen == CK_INVALID_HANDLE || id < chosen_id) {
      chosen = h;
      chosen_id = id;
    }
  }
  absl::MutexLock lock(&mu_);
  hmac_key_ = chosen;
  hmac_epoch_ = epoch;
  *out = chosen;
  return CKR_OK;
}

absl::StatusOr<SecretBytes> Pkcs11KeyStore::HmacWithStoreSecret(
    absl::string_view data, const CallOptions& options) {
  SecretBytes mac(32);
  OFFKEY_RETURN_IF_ERROR(
      RunOp("C_Sign (HMAC-SHA256 with the store secret)", options.deadline,
            [&](CK_SESSION_HANDLE session, int attempt, absl::Status* st) -> CK_RV {
              // Made by Create; one that vanished since is the token's storage gone,
              // not a secret to make again under calls already in flight.
              CK_OBJECT_HANDLE key;
              CK_RV rv = ResolveHmacKey(session, attempt > 0, /*create=*/false, &key);
              if (rv != CKR_OK) return rv;
              if (key == CK_INVALID_HANDLE) {
                *st = StoreSecretGone();
                return CKR_OK;
              }
              CK_MECHANISM mech = {CKM_SHA256_HMAC, nullptr, 0};
              rv = token_->fn()->C_SignInit(session, &mech, key);
              if (rv != CKR_OK) return rv;
              CK_ULONG len = mac.size();
              rv = token_->fn()->C_Sign(
                  session, reinterpret_cast<CK_BYTE*>(const_cast<char*>(data.data())),
                  data.size(), mac.data(), &len);
              return rv == CKR_OK && len != 32 ? CKR_GENERAL_ERROR : rv;
            }));
  return mac;
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
  return CheckStoreSecretVisible();
}

}  // namespace offkey::hsm::pkcs11
