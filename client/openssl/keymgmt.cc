// Key management: keys come from the decoder (load) or, public only, from import (so a
// certificate's key can be matched against ours). Public parameters are answered by the
// embedded public key. Nothing private is ever exported: an export that asks for the
// private key fails, so OpenSSL cannot move the key to another provider to sign.
#include <openssl/core_names.h>
#include <openssl/err.h>

#include <memory>

#include "client/openssl/provider.h"

namespace offkey::client::openssl {
namespace {

constexpr int kPublic =
    OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS;

template <KeyType kType>
void* New(void* provctx) {
  auto* key = new Key();
  key->provider = static_cast<ProviderContext*>(provctx);
  key->type = kType;
  return key;
}

void Free(void* keydata) { delete static_cast<Key*>(keydata); }

// The decoder passes a Key it made; its contents move into a new one it no longer owns.
void* Load(const void* reference, size_t size) {
  if (reference == nullptr || size != kKeyReferenceSize) return nullptr;
  Key* from = *static_cast<Key* const*>(reference);
  auto* key = new Key();
  key->provider = from->provider;
  key->type = from->type;
  key->ref = std::move(from->ref);
  key->pub = from->pub;
  from->pub = nullptr;
  return key;
}

int Has(const void* keydata, int selection) {
  const auto* key = static_cast<const Key*>(keydata);
  if (key == nullptr) return 0;
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && !key->has_private()) return 0;
  if ((selection & kPublic) != 0 && key->pub == nullptr) return 0;
  return 1;
}

int Match(const void* a, const void* b, int selection) {
  const auto* x = static_cast<const Key*>(a);
  const auto* y = static_cast<const Key*>(b);
  if (x->pub == nullptr || y->pub == nullptr) return 0;
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 &&
      x->ref.key_id() != y->ref.key_id() && x->has_private() && y->has_private()) {
    return 0;
  }
  return EVP_PKEY_eq(x->pub, y->pub) == 1 ? 1 : 0;
}

int GetParams(void* keydata, OSSL_PARAM params[]) {
  const auto* key = static_cast<const Key*>(keydata);
  if (key->pub == nullptr) return 0;
  // Only what the public key knows; a request for a private component stays unanswered.
  return EVP_PKEY_get_params(key->pub, params);
}

template <KeyType kType>
const OSSL_PARAM* GettableParams(void*) {
  static const OSSL_PARAM kCommon[] = {
      OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, nullptr),
      OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, nullptr),
      OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, nullptr),
      OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, nullptr, 0),
      OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0),
      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
      OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, nullptr, 0),
      OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, nullptr, 0),
      OSSL_PARAM_END,
  };
  return kCommon;
}

// Public parts only, so a certificate's key (from another provider) can be compared.
template <KeyType kType>
int Import(void* keydata, int selection, const OSSL_PARAM params[]) {
  auto* key = static_cast<Key*>(keydata);
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) return 0;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(key->provider->libctx(),
                                                 KeyTypeName(kType), "provider=default");
  EVP_PKEY* pub = nullptr;
  const bool ok = ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1 &&
                  EVP_PKEY_fromdata(ctx, &pub, EVP_PKEY_PUBLIC_KEY,
                                    const_cast<OSSL_PARAM*>(params)) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return 0;
  EVP_PKEY_free(key->pub);
  key->pub = pub;
  return 1;
}

// The public parameters the default provider's keymgmt of the same type knows (what
// import accepts and export gives).
template <KeyType kType>
const OSSL_PARAM* ImportTypes(int selection) {
  static const OSSL_PARAM kNone[] = {OSSL_PARAM_END};
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) return kNone;
  EVP_KEYMGMT* other = EVP_KEYMGMT_fetch(nullptr, KeyTypeName(kType), "provider=default");
  const OSSL_PARAM* types = other != nullptr
                                ? EVP_KEYMGMT_gettable_params(other)
                                : kNone;  // Stays valid: the default provider stays.
  EVP_KEYMGMT_free(other);
  return types;
}

// Refused whenever the private key is asked for (OpenSSL asks for everything when it
// wants to move a key to another provider's signature): that keeps private operations
// here. A public-only export is served from the public key.
int Export(void* keydata, int selection, OSSL_CALLBACK* callback, void* arg) {
  const auto* key = static_cast<const Key*>(keydata);
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 || key->pub == nullptr) return 0;
  OSSL_PARAM* params = nullptr;
  if (EVP_PKEY_todata(key->pub, EVP_PKEY_PUBLIC_KEY, &params) != 1) return 0;
  const int ok = callback(params, arg);
  OSSL_PARAM_free(params);
  return ok;
}

template <KeyType kType>
const char* QueryOperationName(int operation_id) {
  if (operation_id == OSSL_OP_SIGNATURE) {
    switch (kType) {
      case KeyType::kRsa:
      case KeyType::kRsaPss:
        return "RSA";
      case KeyType::kEc:
        return "ECDSA";
      case KeyType::kEd25519:
        return "ED25519";
    }
  }
  if (operation_id == OSSL_OP_ASYM_CIPHER && kType == KeyType::kRsa) return "RSA";
  return nullptr;
}

template <KeyType kType>
struct Keymgmt {
  static inline const OSSL_DISPATCH kTable[] = {
      Fn(OSSL_FUNC_KEYMGMT_NEW, New<kType>),
      Fn(OSSL_FUNC_KEYMGMT_FREE, Free),
      Fn(OSSL_FUNC_KEYMGMT_LOAD, Load),
      Fn(OSSL_FUNC_KEYMGMT_HAS, Has),
      Fn(OSSL_FUNC_KEYMGMT_MATCH, Match),
      Fn(OSSL_FUNC_KEYMGMT_GET_PARAMS, GetParams),
      Fn(OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, GettableParams<kType>),
      Fn(OSSL_FUNC_KEYMGMT_IMPORT, Import<kType>),
      Fn(OSSL_FUNC_KEYMGMT_IMPORT_TYPES, ImportTypes<kType>),
      Fn(OSSL_FUNC_KEYMGMT_EXPORT, Export),
      Fn(OSSL_FUNC_KEYMGMT_EXPORT_TYPES, ImportTypes<kType>),
      Fn(OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, QueryOperationName<kType>),
      {0, nullptr},
  };
};

}  // namespace

const OSSL_DISPATCH* const kRsaKeymgmt = Keymgmt<KeyType::kRsa>::kTable;
const OSSL_DISPATCH* const kRsaPssKeymgmt = Keymgmt<KeyType::kRsaPss>::kTable;
const OSSL_DISPATCH* const kEcKeymgmt = Keymgmt<KeyType::kEc>::kTable;
const OSSL_DISPATCH* const kEd25519Keymgmt = Keymgmt<KeyType::kEd25519>::kTable;

}  // namespace offkey::client::openssl
