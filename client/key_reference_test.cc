#include "client/key_reference.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/testing/text.h"
#include "gtest/gtest.h"

namespace offkey::client {
namespace {

using offkey::testing::Contains;
using offkey::v1::KeyReference;

std::string NewSpki(const char* type, const char* param) {
  EvpPkeyPtr key(param == nullptr ? EVP_PKEY_Q_keygen(nullptr, nullptr, type)
                 : std::string(type) == "RSA"
                     ? EVP_PKEY_Q_keygen(nullptr, nullptr, type, size_t{2048})
                     : EVP_PKEY_Q_keygen(nullptr, nullptr, type, param));
  return SpkiDer(key.get());
}

KeyReference P256Reference() {
  KeyReference ref;
  ref.set_version(kKeyReferenceVersion);
  ref.set_key_id(std::string(20, '\x42'));
  ref.set_key_name("web");
  ref.set_public_key_spki(NewSpki("EC", "P-256"));
  ref.set_algorithm(offkey::v1::EC_P256);
  ref.set_service("127.0.0.1:8443");
  return ref;
}

TEST(KeyReferenceTest, RoundTripsEveryAlgorithm) {
  struct Case {
    offkey::v1::KeyAlgorithm algorithm;
    std::string spki;
  };
  for (const Case& c : {Case{offkey::v1::RSA_2048, NewSpki("RSA", "")},
                        Case{offkey::v1::EC_P256, NewSpki("EC", "P-256")},
                        Case{offkey::v1::EC_P384, NewSpki("EC", "P-384")},
                        Case{offkey::v1::ED25519_KEY, NewSpki("ED25519", nullptr)}}) {
    KeyReference ref = P256Reference();
    ref.set_algorithm(c.algorithm);
    ref.set_public_key_spki(c.spki);
    absl::StatusOr<std::string> pem = EncodeKeyReference(ref);
    ASSERT_TRUE(pem.ok()) << pem.status();
    EXPECT_TRUE(Contains(*pem, "-----BEGIN OFFKEY KEY REFERENCE-----\n"));
    absl::StatusOr<KeyReference> back = DecodeKeyReference(*pem);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->SerializeAsString(), ref.SerializeAsString());
  }
}

TEST(KeyReferenceTest, SkipsOtherPemBlocks) {
  const std::string other =
      "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
  absl::StatusOr<std::string> pem = EncodeKeyReference(P256Reference());
  ASSERT_TRUE(pem.ok());
  absl::StatusOr<KeyReference> back = DecodeKeyReference(other + *pem);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->key_name(), "web");
}

TEST(KeyReferenceTest, RefusesBadReferences) {
  KeyReference ref = P256Reference();
  ref.set_version(2);
  EXPECT_TRUE(Contains(EncodeKeyReference(ref).status().message(), "version 2"));
  ref = P256Reference();
  ref.clear_key_id();
  EXPECT_TRUE(Contains(EncodeKeyReference(ref).status().message(), "key_id"));
  ref.set_key_id(std::string(65, 'x'));
  EXPECT_TRUE(Contains(EncodeKeyReference(ref).status().message(), "key_id"));
  ref = P256Reference();
  ref.set_public_key_spki("not a key");
  EXPECT_TRUE(Contains(EncodeKeyReference(ref).status().message(), "public_key_spki"));
  ref = P256Reference();
  ref.set_algorithm(offkey::v1::EC_P384);  // A P-256 key.
  EXPECT_TRUE(Contains(EncodeKeyReference(ref).status().message(),
                       "does not match algorithm EC_P384"));
}

TEST(KeyReferenceTest, DecodeRefusesMissingOrCorruptBlocks) {
  absl::StatusOr<KeyReference> none = DecodeKeyReference("hello");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(none.status().message(), "offkeyctl ref"));

  // A well-formed PEM block whose body is not a KeyReference.
  const std::string junk =
      "-----BEGIN OFFKEY KEY REFERENCE-----\n/////w==\n-----END OFFKEY KEY "
      "REFERENCE-----\n";
  absl::StatusOr<KeyReference> bad = DecodeKeyReference(junk);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);

  // A reference tampered into another algorithm is refused on read too.
  KeyReference ref = P256Reference();
  absl::StatusOr<std::string> pem = EncodeKeyReference(ref);
  ASSERT_TRUE(pem.ok());
  ref.set_algorithm(offkey::v1::RSA_2048);
  const std::string body = ref.SerializeAsString();
  unsigned char b64[4096];
  const int n = EVP_EncodeBlock(b64, reinterpret_cast<const unsigned char*>(body.data()),
                                static_cast<int>(body.size()));
  std::string lines;
  for (int i = 0; i < n; i += 64) {
    lines += std::string(reinterpret_cast<char*>(b64) + i, std::min(64, n - i)) + "\n";
  }
  absl::StatusOr<KeyReference> tampered =
      DecodeKeyReference(absl::StrCat("-----BEGIN OFFKEY KEY REFERENCE-----\n", lines,
                                      "-----END OFFKEY KEY REFERENCE-----\n"));
  EXPECT_TRUE(Contains(tampered.status().message(), "does not match algorithm RSA_2048"));
}

}  // namespace
}  // namespace offkey::client
