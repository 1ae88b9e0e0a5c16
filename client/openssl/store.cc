// The "offkey:" store loader: `offkey:` followed by the key reference (the serialized
// KeyReference, base64url without padding), as `offkeyctl ref KEY --uri` prints it. For
// configurations that take a key URI instead of a file (`openssl s_server -key
// offkey:...`, OSSL_STORE_open). Like the PEM form it holds nothing secret, and loading
// it makes no RPC.
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/store.h>

#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/strip.h"
#include "client/key_reference.h"
#include "client/openssl/provider.h"

namespace offkey::provider {
namespace {

constexpr char kScheme[] = "offkey:";

struct StoreContext {
  std::unique_ptr<Key> key;  // Null once loaded.
};

void* Open(void* provctx, const char* uri) {
  absl::string_view text(uri);
  if (!absl::ConsumePrefix(&text, kScheme)) return nullptr;
  std::string bytes;
  if (!absl::WebSafeBase64Unescape(text, &bytes)) {
    RaiseError(absl::InvalidArgumentError(
        "an offkey: URI holds a base64url key reference (offkeyctl ref KEY --uri)"));
    return nullptr;
  }
  absl::StatusOr<v1::KeyReference> ref = client::ParseKeyReference(bytes);
  if (!ref.ok()) {
    RaiseError(ref.status());
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<Key>> key =
      KeyFromReference(static_cast<ProviderContext*>(provctx), *std::move(ref));
  if (!key.ok()) {
    RaiseError(key.status());
    return nullptr;
  }
  auto* ctx = new StoreContext();
  ctx->key = *std::move(key);
  return ctx;
}

int SetParams(void*, const OSSL_PARAM[]) { return 1; }  // Nothing to choose: one key.

const OSSL_PARAM* SettableParams(void*) {
  static const OSSL_PARAM kNone[] = {OSSL_PARAM_END};
  return kNone;
}

int Load(void* ctx, OSSL_CALLBACK* object_cb, void* object_arg, OSSL_PASSPHRASE_CALLBACK*,
         void*) {
  auto* store = static_cast<StoreContext*>(ctx);
  if (store->key == nullptr) return 0;
  std::unique_ptr<Key> key = std::move(store->key);
  Key* reference = key.get();
  int object = OSSL_OBJECT_PKEY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE,
                                       const_cast<char*>(KeyTypeName(key->type)), 0),
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &reference,
                                        kKeyReferenceSize),
      OSSL_PARAM_construct_end(),
  };
  // The keymgmt's load moves what it needs out of *reference; the rest is freed here.
  return object_cb(params, object_arg);
}

int Eof(void* ctx) { return static_cast<StoreContext*>(ctx)->key == nullptr; }

int Close(void* ctx) {
  delete static_cast<StoreContext*>(ctx);
  return 1;
}

#define OFFKEY_FN(id, fn) \
  { id, reinterpret_cast<void (*)()>(fn) }

const OSSL_DISPATCH kTable[] = {
    OFFKEY_FN(OSSL_FUNC_STORE_OPEN, Open),
    OFFKEY_FN(OSSL_FUNC_STORE_SET_CTX_PARAMS, SetParams),
    OFFKEY_FN(OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, SettableParams),
    OFFKEY_FN(OSSL_FUNC_STORE_LOAD, Load),
    OFFKEY_FN(OSSL_FUNC_STORE_EOF, Eof),
    OFFKEY_FN(OSSL_FUNC_STORE_CLOSE, Close),
    {0, nullptr},
};

#undef OFFKEY_FN

}  // namespace

const OSSL_DISPATCH* const kStore = kTable;

}  // namespace offkey::provider
