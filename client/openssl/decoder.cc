// Decoders, in two stages, the way OpenSSL's own PEM keys travel:
//   PEM -> DER   a "-----BEGIN OFFKEY KEY REFERENCE-----" block becomes its body, a DER
//                structure named OffkeyKeyReference (other PEM is left alone);
//   DER -> key   that structure becomes a key object (keymgmt load takes it).
// So both routes by which applications load PEM keys reach it: PEM_read_bio_PrivateKey
// (nginx, haproxy) and OSSL_STORE "file:" (openssl s_server, which passes the DER
// through its own object decoder before asking for a key).
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>

#include <cstdio>
#include <memory>
#include <string>

#include "client/key_reference.h"
#include "client/openssl/provider.h"

namespace offkey::client::openssl {
namespace {

constexpr size_t kMaxInput = 64 * 1024;

void* NewContext(void* provctx) { return provctx; }  // Stateless: the provider is all.
void FreeContext(void*) {}

int DoesSelection(void*, int selection) {
  return selection == 0 || (selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0;
}

std::string ReadAll(ProviderContext* provider, OSSL_CORE_BIO* in) {
  std::string data;
  char buffer[4096];
  size_t n = 0;
  while (data.size() < kMaxInput &&
         provider->bio_read_ex()(in, buffer, sizeof(buffer), &n) == 1 && n > 0) {
    data.append(buffer, n);
  }
  return data;
}

// Returning 1 with no object means "not mine": the next decoder gets its turn.
int DecodePem(void* ctx, OSSL_CORE_BIO* in, int /*selection*/, OSSL_CALLBACK* object_cb,
              void* object_arg, OSSL_PASSPHRASE_CALLBACK*, void*) {
  auto* provider = static_cast<ProviderContext*>(ctx);
  absl::StatusOr<v1::KeyReference> ref =
      client::DecodeKeyReference(ReadAll(provider, in));
  if (!ref.ok()) return 1;
  absl::StatusOr<KeyType> type = KeyTypeOf(*ref);
  if (!type.ok()) return 1;
  if (!provider->configuration().ok()) {
    // Ours, but unusable. OpenSSL drops a decoder's errors (servers report only
    // "unsupported"), so the reason also goes to standard error, which servers log.
    RaiseError(provider->configuration());
    std::fprintf(stderr, "offkey: cannot load the key '%s': %s\n",
                 ref->key_name().c_str(), provider->configuration().ToString().c_str());
    return 0;
  }
  std::string der = ref->SerializeAsString();
  int object = OSSL_OBJECT_PKEY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE,
                                       const_cast<char*>(KeyTypeName(*type)), 0),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE,
                                       const_cast<char*>(kReferenceStructure), 0),
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, der.data(), der.size()),
      OSSL_PARAM_construct_end(),
  };
  return object_cb(params, object_arg);
}

template <KeyType kType>
int DecodeKey(void* ctx, OSSL_CORE_BIO* in, int /*selection*/, OSSL_CALLBACK* object_cb,
              void* object_arg, OSSL_PASSPHRASE_CALLBACK*, void*) {
  auto* provider = static_cast<ProviderContext*>(ctx);
  absl::StatusOr<v1::KeyReference> ref = client::ParseKeyReference(ReadAll(provider, in));
  if (!ref.ok()) return 1;
  absl::StatusOr<std::unique_ptr<Key>> key = KeyFromReference(provider, *std::move(ref));
  if (!key.ok() || (*key)->type != kType) return 1;

  return PassKey(*std::move(key), object_cb, object_arg);
}

const OSSL_DISPATCH kPemTable[] = {
    Fn(OSSL_FUNC_DECODER_NEWCTX, NewContext),
    Fn(OSSL_FUNC_DECODER_FREECTX, FreeContext),
    Fn(OSSL_FUNC_DECODER_DECODE, DecodePem),
    {0, nullptr},
};

template <KeyType kType>
struct KeyDecoder {
  static inline const OSSL_DISPATCH kTable[] = {
      Fn(OSSL_FUNC_DECODER_NEWCTX, NewContext),
      Fn(OSSL_FUNC_DECODER_FREECTX, FreeContext),
      Fn(OSSL_FUNC_DECODER_DOES_SELECTION, DoesSelection),
      Fn(OSSL_FUNC_DECODER_DECODE, DecodeKey<kType>),
      {0, nullptr},
  };
};

}  // namespace

const OSSL_DISPATCH* const kPemDecoder = kPemTable;
const OSSL_DISPATCH* const kRsaDecoder = KeyDecoder<KeyType::kRsa>::kTable;
const OSSL_DISPATCH* const kRsaPssDecoder = KeyDecoder<KeyType::kRsaPss>::kTable;
const OSSL_DISPATCH* const kEcDecoder = KeyDecoder<KeyType::kEc>::kTable;
const OSSL_DISPATCH* const kEd25519Decoder = KeyDecoder<KeyType::kEd25519>::kTable;

}  // namespace offkey::client::openssl
