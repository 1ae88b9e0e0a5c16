// The "offkey:" store loader: `offkey:` followed by the key reference (the serialized
// KeyReference, base64url without padding), as `offkeyctl ref KEY --uri` prints it. For
// configurations that take a key URI instead of a file (`openssl s_server -key
// offkey:...`, OSSL_STORE_open). Like the PEM form it holds nothing secret, and loading
// it makes no RPC.
#include <openssl/core_names.h>
#include <openssl/store.h>

#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/strip.h"
#include "client/key_reference.h"
#include "client/openssl/provider.h"

namespace offkey::client::openssl {
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
  return PassKey(std::move(store->key), object_cb, object_arg);
}

int Eof(void* ctx) { return static_cast<StoreContext*>(ctx)->key == nullptr; }

int Close(void* ctx) {
  delete static_cast<StoreContext*>(ctx);
  return 1;
}

const OSSL_DISPATCH kTable[] = {
    Fn(OSSL_FUNC_STORE_OPEN, Open),
    Fn(OSSL_FUNC_STORE_SET_CTX_PARAMS, SetParams),
    Fn(OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, SettableParams),
    Fn(OSSL_FUNC_STORE_LOAD, Load),
    Fn(OSSL_FUNC_STORE_EOF, Eof),
    Fn(OSSL_FUNC_STORE_CLOSE, Close),
    {0, nullptr},
};

}  // namespace

const OSSL_DISPATCH* const kStore = kTable;

}  // namespace offkey::client::openssl
