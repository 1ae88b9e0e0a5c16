// Signatures: the whole message is buffered and sent to offkeyd in one Sign call with
// the TLS signature scheme that the key type, digest and padding name. offkeyd hashes.
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <strings.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/openssl/provider.h"

namespace offkey::client::openssl {
namespace {

struct SignContext {
  ProviderContext* provider = nullptr;
  const Key* key = nullptr;
  std::string digest;  // OpenSSL's canonical name ("SHA2-256"); empty for Ed25519.
  int padding = RSA_PKCS1_PADDING;
  int salt_length = RSA_PSS_SALTLEN_DIGEST;
  std::string message;
};

// The canonical name of `name` if it is a digest offkeyd signs with (SHA-256, SHA-384,
// SHA-512: the hashes of every scheme in service/tls/schemes.cc), else empty.
//
// Refusing here, and not only when the signature is made, is what keeps a TLS server
// honest: libssl asks whether the key can sign with a scheme's digest by initialising a
// signature with it (EVP_PKEY_digestsign_supports_digest, from check_cert_usable) and
// skips schemes whose digest is refused. So for a TLS 1.2 client that offers SHA-1 or
// SHA-224 (or no signature_algorithms, which means SHA-1) OpenSSL picks another offered
// scheme or fails with handshake_failure, as for a key that cannot sign them, instead of
// committing to a scheme offkeyd then refuses (internal_error mid-handshake).
std::string CanonicalDigest(ProviderContext* provider, const char* name) {
  // The names libssl uses, without a fetch (a method-store lookup per handshake).
  static constexpr std::pair<const char*, const char*> kKnown[] = {
      {"SHA256", "SHA2-256"},   {"SHA2-256", "SHA2-256"}, {"SHA384", "SHA2-384"},
      {"SHA2-384", "SHA2-384"}, {"SHA512", "SHA2-512"},   {"SHA2-512", "SHA2-512"},
  };
  for (const auto& [alias, canonical] : kKnown) {
    if (strcasecmp(name, alias) == 0) return canonical;
  }
  EVP_MD* md = EVP_MD_fetch(provider->libctx(), name, "provider=default");
  if (md == nullptr) {
    ERR_clear_error();
    return "";
  }
  std::string canonical;
  for (const char* n : {"SHA2-256", "SHA2-384", "SHA2-512"}) {
    if (EVP_MD_is_a(md, n)) canonical = n;
  }
  EVP_MD_free(md);
  return canonical;
}

// Refuses a digest CanonicalDigest does not accept, with the reason; returns 0.
int RefuseDigest(const char* name) {
  RaiseError(absl::InvalidArgumentError(absl::StrCat(
      "offkey signs with SHA-256, SHA-384 or SHA-512 only, not '", name, "'")));
  return 0;
}

int HashLength(const std::string& digest) {
  if (digest == "SHA2-256") return 32;
  if (digest == "SHA2-384") return 48;
  if (digest == "SHA2-512") return 64;
  return 0;
}

// The TLS SignatureScheme for this key, digest and padding (RFC 8446 4.2.3).
absl::StatusOr<v1::SignatureScheme> Scheme(const SignContext& c) {
  const std::string& d = c.digest;
  switch (c.key->type) {
    case KeyType::kEd25519:
      return v1::ED25519;
    case KeyType::kEc:
      if (d == "SHA2-256") return v1::ECDSA_SECP256R1_SHA256;
      if (d == "SHA2-384") return v1::ECDSA_SECP384R1_SHA384;
      if (d == "SHA2-512") return v1::ECDSA_SECP521R1_SHA512;
      break;
    case KeyType::kRsa:
    case KeyType::kRsaPss: {
      const bool pss = c.padding == RSA_PKCS1_PSS_PADDING;
      if (!pss && c.key->type == KeyType::kRsaPss) break;
      if (pss && c.salt_length != RSA_PSS_SALTLEN_DIGEST &&
          c.salt_length != HashLength(d)) {
        return absl::InvalidArgumentError(
            "offkeyd signs RSA-PSS with a salt as long as the hash only");
      }
      const bool rsae = c.key->type == KeyType::kRsa;
      if (d == "SHA2-256") {
        return !pss ? v1::RSA_PKCS1_SHA256
                    : (rsae ? v1::RSA_PSS_RSAE_SHA256 : v1::RSA_PSS_PSS_SHA256);
      }
      if (d == "SHA2-384") {
        return !pss ? v1::RSA_PKCS1_SHA384
                    : (rsae ? v1::RSA_PSS_RSAE_SHA384 : v1::RSA_PSS_PSS_SHA384);
      }
      if (d == "SHA2-512") {
        return !pss ? v1::RSA_PKCS1_SHA512
                    : (rsae ? v1::RSA_PSS_RSAE_SHA512 : v1::RSA_PSS_PSS_SHA512);
      }
      break;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "no TLS signature scheme for a ", KeyTypeName(c.key->type), " key with digest '",
      d.empty() ? "none" : d, c.padding == RSA_PKCS1_PSS_PADDING ? "' and PSS" : "'"));
}

// TLS 1.3 CertificateVerify inputs start with 64 spaces and a context string; anything
// else a server signs is a TLS 1.2 ServerKeyExchange input.
v1::TlsVersion VersionOf(const std::string& message) {
  static const std::string kPad(64, ' ');
  return absl::StartsWith(message, kPad + "TLS 1.3, ") ? v1::TLS_1_3 : v1::TLS_1_2;
}

void* NewContext(void* provctx, const char* /*propq*/) {
  auto* c = new SignContext();
  c->provider = static_cast<ProviderContext*>(provctx);
  return c;
}

void FreeContext(void* ctx) {
  auto* c = static_cast<SignContext*>(ctx);
  c->message.assign(c->message.size(), '\0');
  delete c;
}

void* DupContext(void* ctx) { return new SignContext(*static_cast<SignContext*>(ctx)); }

int SetParams(void* ctx, const OSSL_PARAM params[]) {
  auto* c = static_cast<SignContext*>(ctx);
  if (params == nullptr) return 1;
  const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST);
  if (p != nullptr) {
    const char* name = nullptr;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)) return 0;
    c->digest = CanonicalDigest(c->provider, name);
    if (c->digest.empty()) return RefuseDigest(name);
  }
  p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE);
  if (p != nullptr) {
    const char* name = nullptr;
    if (p->data_type == OSSL_PARAM_UTF8_STRING) {
      if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)) return 0;
      if (strcmp(name, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0) {
        c->padding = RSA_PKCS1_PADDING;
      } else if (strcmp(name, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0) {
        c->padding = RSA_PKCS1_PSS_PADDING;
      } else {
        return 0;
      }
    } else if (!OSSL_PARAM_get_int(p, &c->padding) ||
               (c->padding != RSA_PKCS1_PADDING && c->padding != RSA_PKCS1_PSS_PADDING)) {
      return 0;
    }
  }
  p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN);
  if (p != nullptr) {
    const char* name = nullptr;
    if (p->data_type == OSSL_PARAM_UTF8_STRING) {
      if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)) return 0;
      if (strcmp(name, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) != 0) return 0;
      c->salt_length = RSA_PSS_SALTLEN_DIGEST;
    } else if (!OSSL_PARAM_get_int(p, &c->salt_length)) {
      return 0;
    }
  }
  p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST);
  if (p != nullptr) {  // offkeyd's PSS uses MGF1 with the signature's own hash.
    const char* name = nullptr;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)) return 0;
    if (CanonicalDigest(c->provider, name) != c->digest) return 0;
  }
  return 1;
}

const OSSL_PARAM* SettableParams(void*, void*) {
  static const OSSL_PARAM kParams[] = {
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, nullptr, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, nullptr, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, nullptr, 0),
      OSSL_PARAM_END,
  };
  return kParams;
}

int GetParams(void* ctx, OSSL_PARAM params[]) {
  auto* c = static_cast<SignContext*>(ctx);
  OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST);
  if (p != nullptr && !OSSL_PARAM_set_utf8_string(p, c->digest.c_str())) return 0;
  p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE);
  if (p != nullptr && !OSSL_PARAM_set_int(p, c->padding)) return 0;
  return 1;
}

const OSSL_PARAM* GettableParams(void*, void*) {
  static const OSSL_PARAM kParams[] = {
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
      OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PAD_MODE, nullptr),
      OSSL_PARAM_END,
  };
  return kParams;
}

template <KeyType... kTypes>
int DigestSignInit(void* ctx, const char* mdname, void* provkey,
                   const OSSL_PARAM params[]) {
  auto* c = static_cast<SignContext*>(ctx);
  c->key = static_cast<const Key*>(provkey);
  if (c->key == nullptr || !c->key->has_private() || !((c->key->type == kTypes) || ...)) {
    RaiseError(absl::InvalidArgumentError("not an offkey private key of this type"));
    return 0;
  }
  c->message.clear();
  c->padding =
      c->key->type == KeyType::kRsaPss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING;
  c->salt_length = RSA_PSS_SALTLEN_DIGEST;
  c->digest.clear();
  if (c->key->type != KeyType::kEd25519) {
    const char* name = mdname != nullptr ? mdname : "SHA256";
    c->digest = CanonicalDigest(c->provider, name);
    if (c->digest.empty()) return RefuseDigest(name);
  } else if (mdname != nullptr && *mdname != '\0') {
    return 0;  // Ed25519 signs the message itself.
  }
  return SetParams(ctx, params);
}

int DigestSignUpdate(void* ctx, const unsigned char* data, size_t size) {
  auto* c = static_cast<SignContext*>(ctx);
  c->message.append(reinterpret_cast<const char*>(data), size);
  return 1;
}

// One Sign call for the buffered message; `sig` null asks for the maximum size.
int Finish(SignContext* c, unsigned char* sig, size_t* siglen, size_t sigsize) {
  const int max = EVP_PKEY_get_size(c->key->pub);
  if (sig == nullptr) {
    *siglen = static_cast<size_t>(max);
    return 1;
  }
  absl::StatusOr<v1::SignatureScheme> scheme = Scheme(*c);
  if (!scheme.ok()) {
    RaiseError(scheme.status());
    return 0;
  }
  v1::SignRequest request;
  request.mutable_key()->set_key_id(c->key->ref.key_id());
  request.mutable_context()->set_version(VersionOf(c->message));
  request.set_scheme(*scheme);
  request.set_message(c->message);
  absl::StatusOr<v1::SignResponse> signed_ = c->provider->Call<v1::SignResponse>(
      [&request](client::Client* client) { return client->Sign(request); },
      [request](client::Client* client, client::Callback<v1::SignResponse> done) {
        client->SignAsync(request, {}, std::move(done));
      });
  if (!signed_.ok()) {
    RaiseError(signed_.status());
    return 0;
  }
  const std::string& s = signed_->signature();
  if (s.size() > sigsize) {
    RaiseError(absl::InternalError("offkeyd's signature does not fit the buffer"));
    return 0;
  }
  std::copy(s.begin(), s.end(), sig);
  *siglen = s.size();
  c->message.clear();
  return 1;
}

int DigestSignFinal(void* ctx, unsigned char* sig, size_t* siglen, size_t sigsize) {
  return Finish(static_cast<SignContext*>(ctx), sig, siglen, sigsize);
}

int DigestSign(void* ctx, unsigned char* sig, size_t* siglen, size_t sigsize,
               const unsigned char* tbs, size_t tbslen) {
  auto* c = static_cast<SignContext*>(ctx);
  if (sig != nullptr) {
    c->message.assign(reinterpret_cast<const char*>(tbs), tbslen);
  }
  return Finish(c, sig, siglen, sigsize);
}

template <KeyType... kTypes>
struct Signature {
  static inline const OSSL_DISPATCH kTable[] = {
      Fn(OSSL_FUNC_SIGNATURE_NEWCTX, NewContext),
      Fn(OSSL_FUNC_SIGNATURE_FREECTX, FreeContext),
      Fn(OSSL_FUNC_SIGNATURE_DUPCTX, DupContext),
      Fn(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, DigestSignInit<kTypes...>),
      Fn(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, DigestSignUpdate),
      Fn(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, DigestSignFinal),
      Fn(OSSL_FUNC_SIGNATURE_DIGEST_SIGN, DigestSign),
      Fn(OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, SetParams),
      Fn(OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, SettableParams),
      Fn(OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, GetParams),
      Fn(OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, GettableParams),
      {0, nullptr},
  };
};

// Ed25519 has no streaming form in OpenSSL: one-shot only.
struct Ed25519Signature {
  static inline const OSSL_DISPATCH kTable[] = {
      Fn(OSSL_FUNC_SIGNATURE_NEWCTX, NewContext),
      Fn(OSSL_FUNC_SIGNATURE_FREECTX, FreeContext),
      Fn(OSSL_FUNC_SIGNATURE_DUPCTX, DupContext),
      Fn(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, DigestSignInit<KeyType::kEd25519>),
      Fn(OSSL_FUNC_SIGNATURE_DIGEST_SIGN, DigestSign),
      Fn(OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, SetParams),
      Fn(OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, SettableParams),
      {0, nullptr},
  };
};

}  // namespace

const OSSL_DISPATCH* const kRsaSignature =
    Signature<KeyType::kRsa, KeyType::kRsaPss>::kTable;
const OSSL_DISPATCH* const kEcdsaSignature = Signature<KeyType::kEc>::kTable;
const OSSL_DISPATCH* const kEd25519Signature = Ed25519Signature::kTable;

}  // namespace offkey::client::openssl
