// RSA decryption for TLS 1.2 RSA key exchange: the ClientKeyExchange ciphertext goes to
// offkeyd's DecryptPremaster, which never fails on bad padding (it answers a
// deterministic substitute, as RFC 5246 7.4.7.1 requires), so neither does this. Only
// OpenSSL's TLS padding mode is served: a raw RSA decryption oracle is not offered.
#include <openssl/core_names.h>
#include <openssl/rsa.h>

#include <cstring>

#include "base/secret_bytes.h"
#include "client/openssl/provider.h"

namespace offkey::client::openssl {
namespace {

constexpr size_t kPremasterSize = 48;

struct DecryptContext {
  ProviderContext* provider = nullptr;
  const Key* key = nullptr;
  int padding = RSA_PKCS1_WITH_TLS_PADDING;
  unsigned int client_version = 0;
};

void* NewContext(void* provctx) {
  auto* c = new DecryptContext();
  c->provider = static_cast<ProviderContext*>(provctx);
  return c;
}

void FreeContext(void* ctx) { delete static_cast<DecryptContext*>(ctx); }

int SetParams(void* ctx, const OSSL_PARAM params[]) {
  auto* c = static_cast<DecryptContext*>(ctx);
  if (params == nullptr) return 1;
  const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE);
  if (p != nullptr) {
    if (p->data_type == OSSL_PARAM_UTF8_STRING) return 0;  // No named mode is served.
    if (!OSSL_PARAM_get_int(p, &c->padding)) return 0;
  }
  p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION);
  if (p != nullptr && !OSSL_PARAM_get_uint(p, &c->client_version)) return 0;
  // tls-negotiated-version (the rollback-bug workaround) is deliberately ignored:
  // offkeyd checks the premaster's version against the ClientHello's only.
  return 1;
}

const OSSL_PARAM* SettableParams(void*, void*) {
  static const OSSL_PARAM kParams[] = {
      OSSL_PARAM_int(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, nullptr),
      OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, nullptr),
      OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, nullptr),
      OSSL_PARAM_END,
  };
  return kParams;
}

int DecryptInit(void* ctx, void* provkey, const OSSL_PARAM params[]) {
  auto* c = static_cast<DecryptContext*>(ctx);
  c->key = static_cast<const Key*>(provkey);
  if (c->key == nullptr || !c->key->has_private() || c->key->type != KeyType::kRsa) {
    RaiseError(absl::InvalidArgumentError("not an offkey RSA private key"));
    return 0;
  }
  c->padding = RSA_PKCS1_WITH_TLS_PADDING;
  c->client_version = 0;
  return SetParams(ctx, params);
}

int Decrypt(void* ctx, unsigned char* out, size_t* outlen, size_t outsize,
            const unsigned char* in, size_t inlen) {
  auto* c = static_cast<DecryptContext*>(ctx);
  if (c->padding != RSA_PKCS1_WITH_TLS_PADDING || c->client_version == 0) {
    RaiseError(absl::FailedPreconditionError(
        "offkey decrypts only TLS 1.2 premasters (TLS padding with the client version)"));
    return 0;
  }
  if (out == nullptr) {
    *outlen = kPremasterSize;
    return 1;
  }
  if (outsize < kPremasterSize) return 0;
  v1::DecryptPremasterRequest request;
  request.mutable_key()->set_key_id(c->key->ref.key_id());
  request.mutable_context()->set_version(v1::TLS_1_2);
  request.set_ciphertext(reinterpret_cast<const char*>(in), inlen);
  request.set_client_version(c->client_version);
  absl::StatusOr<v1::DecryptPremasterResponse> answer =
      c->provider->Call<v1::DecryptPremasterResponse>(
          [&request](client::Client* client) {
            return client->DecryptPremaster(request);
          },
          [request](client::Client* client,
                    client::Callback<v1::DecryptPremasterResponse> done) {
            client->DecryptPremasterAsync(request, {}, std::move(done));
          });
  if (!answer.ok()) {
    RaiseError(answer.status());  // Transport or policy: never a padding verdict.
    return 0;
  }
  std::string* premaster = answer->mutable_premaster();
  if (premaster->size() != kPremasterSize) {
    WipeString(premaster);
    RaiseError(absl::InternalError("offkeyd answered a premaster of the wrong size"));
    return 0;
  }
  memcpy(out, premaster->data(), kPremasterSize);
  WipeString(premaster);
  *outlen = kPremasterSize;
  return 1;
}

const OSSL_DISPATCH kTable[] = {
    Fn(OSSL_FUNC_ASYM_CIPHER_NEWCTX, NewContext),
    Fn(OSSL_FUNC_ASYM_CIPHER_FREECTX, FreeContext),
    Fn(OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, DecryptInit),
    Fn(OSSL_FUNC_ASYM_CIPHER_DECRYPT, Decrypt),
    Fn(OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS, SetParams),
    Fn(OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS, SettableParams),
    {0, nullptr},
};

}  // namespace

const OSSL_DISPATCH* const kRsaAsymCipher = kTable;

}  // namespace offkey::client::openssl
