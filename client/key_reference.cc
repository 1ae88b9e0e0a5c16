#include "client/key_reference.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/pem.h"
#include "base/status_macros.h"

namespace offkey::client {
namespace {

using offkey::v1::KeyAlgorithm;
using offkey::v1::KeyReference;

// clang-format off
constexpr KeyAlgorithmTraits kAlgorithms[] = {
  {offkey::v1::RSA_2048,    "RSA",     2048},
  {offkey::v1::RSA_3072,    "RSA",     3072},
  {offkey::v1::RSA_4096,    "RSA",     4096},
  {offkey::v1::EC_P256,     "EC",      256},
  {offkey::v1::EC_P384,     "EC",      384},
  {offkey::v1::EC_P521,     "EC",      521},
  {offkey::v1::ED25519_KEY, "ED25519", 0},
};
// clang-format on

bool MatchesAlgorithm(EVP_PKEY* key, KeyAlgorithm algorithm) {
  const KeyAlgorithmTraits* row = FindKeyAlgorithmTraits(algorithm);
  return row != nullptr && EVP_PKEY_is_a(key, row->openssl_type) &&
         (row->bits == 0 || EVP_PKEY_get_bits(key) == row->bits);
}

absl::Status Check(const KeyReference& ref) {
  if (ref.version() != kKeyReferenceVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("key reference: version ", ref.version(), " is not supported (this ",
                     "build reads version ", kKeyReferenceVersion, ")"));
  }
  if (ref.key_id().empty() || ref.key_id().size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key reference: key_id must be 1..64 bytes, got ", ref.key_id().size()));
  }
  EvpPkeyPtr key;
  if (absl::Status parsed = ParseSpki(ref.public_key_spki(), &key); !parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("key reference: public_key_spki: ", parsed.message()));
  }
  if (!MatchesAlgorithm(key.get(), ref.algorithm())) {
    return absl::InvalidArgumentError(
        absl::StrCat("key reference: the public key does not match algorithm ",
                     offkey::v1::KeyAlgorithm_Name(ref.algorithm())));
  }
  return absl::OkStatus();
}

}  // namespace

const KeyAlgorithmTraits* FindKeyAlgorithmTraits(KeyAlgorithm algorithm) {
  for (const KeyAlgorithmTraits& row : kAlgorithms) {
    if (row.algorithm == algorithm) return &row;
  }
  return nullptr;
}

absl::StatusOr<std::string> EncodeKeyReference(const KeyReference& ref) {
  OFFKEY_RETURN_IF_ERROR(Check(ref));
  const std::string body = ref.SerializeAsString();
  BioPtr out(BIO_new(BIO_s_mem()));
  if (out == nullptr || PEM_write_bio(out.get(), kKeyReferencePemLabel, "",
                                      reinterpret_cast<const unsigned char*>(body.data()),
                                      static_cast<long>(body.size())) <= 0) {
    return OpenSslError(absl::StatusCode::kInternal, "encoding the key reference");
  }
  return BioContents(out.get());
}

absl::StatusOr<KeyReference> DecodeKeyReference(absl::string_view pem) {
  // Other blocks (the certificate, or a real key when the provider's decoder is asked
  // about every PEM file) are passed over; a key among them is wiped by the reader.
  PemOptions options;
  options.secure = false;  // See PemOptions::secure: this runs inside OpenSSL decoders.
  absl::StatusOr<std::vector<PemBlock>> blocks = ReadPem(pem, options);
  if (blocks.ok()) {
    for (const PemBlock& block : *blocks) {
      if (block.label == kKeyReferencePemLabel) return ParseKeyReference(block.der);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no '-----BEGIN ", kKeyReferencePemLabel,
                   "-----' block found (write one with `offkeyctl ref KEY`)"));
}

absl::StatusOr<KeyReference> ParseKeyReference(absl::string_view body) {
  KeyReference ref;
  if (!ref.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return absl::InvalidArgumentError(
        "key reference: the PEM body is not a KeyReference");
  }
  OFFKEY_RETURN_IF_ERROR(Check(ref));
  return ref;
}

}  // namespace offkey::client
