#include "service/secret_fields.h"

#include <string>

#include "gtest/gtest.h"

namespace offkey::service {
namespace {

namespace v1 = offkey::v1;

// The string's own buffer after wiping: std::string::clear keeps it (protobuf frees it
// later), so this reads the bytes that would otherwise be freed with the secret in them.
std::string Buffer(const std::string& s, size_t n) { return std::string(s.data(), n); }

const std::string kSecret(48, 'S');

TEST(SecretFieldsTest, WipesPremasterInPlace) {
  v1::DecryptPremasterResponse response;
  response.set_premaster(kSecret);
  const std::string& field = response.premaster();
  const char* before = field.data();
  WipeSecrets(&response);
  EXPECT_TRUE(response.premaster().empty());
  ASSERT_EQ(response.premaster().data(), before);  // The same buffer, now zeros.
  EXPECT_EQ(Buffer(field, kSecret.size()), std::string(kSecret.size(), '\0'));
}

TEST(SecretFieldsTest, WipesMasterSecretInPlace) {
  v1::DeriveMasterSecretResponse response;
  response.set_master_secret(kSecret);
  const std::string& field = response.master_secret();
  WipeSecrets(&response);
  EXPECT_TRUE(response.master_secret().empty());
  EXPECT_EQ(Buffer(field, kSecret.size()), std::string(kSecret.size(), '\0'));
}

TEST(SecretFieldsTest, WipesPipelineAnswers) {
  v1::PipelineResponse premaster;
  premaster.mutable_decrypt_premaster()->set_premaster(kSecret);
  const std::string& p = premaster.decrypt_premaster().premaster();
  WipeSecrets(&premaster);
  EXPECT_EQ(Buffer(p, kSecret.size()), std::string(kSecret.size(), '\0'));

  v1::PipelineResponse master;
  master.mutable_derive_master_secret()->set_master_secret(kSecret);
  const std::string& m = master.derive_master_secret().master_secret();
  WipeSecrets(&master);
  EXPECT_EQ(Buffer(m, kSecret.size()), std::string(kSecret.size(), '\0'));
}

TEST(SecretFieldsTest, WipesImportedKeyAndPassphrase) {
  v1::ImportKeyRequest request;
  request.set_name("web");
  request.set_private_key(std::string(1200, 'K'));
  request.set_passphrase(std::string(40, 'P'));
  const std::string& key = request.private_key();
  const std::string& passphrase = request.passphrase();
  WipeSecrets(&request);
  EXPECT_EQ(Buffer(key, 1200), std::string(1200, '\0'));
  EXPECT_EQ(Buffer(passphrase, 40), std::string(40, '\0'));
  EXPECT_EQ(request.name(), "web");  // Not a secret: kept.
}

// Messages without secrets compile and are left alone.
TEST(SecretFieldsTest, OtherMessagesAreUntouched) {
  v1::SignResponse response;
  response.set_signature("sig");
  WipeSecrets(&response);
  EXPECT_EQ(response.signature(), "sig");
}

}  // namespace
}  // namespace offkey::service
