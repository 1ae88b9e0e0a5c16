// The PEM readers free what OpenSSL allocated for a block they refuse. OpenSSL's
// allocator is replaced by one that counts live blocks (CRYPTO_set_mem_functions works
// only before OpenSSL's first allocation, hence this test's own main()), and refused
// inputs are read repeatedly: the count must come back to where it was.
#include <openssl/crypto.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/pem.h"
#include "base/secret_bytes.h"
#include "gtest/gtest.h"

namespace offkey {
namespace {

std::atomic<long> live_blocks{0};
bool counting = false;

void* CountingMalloc(size_t size, const char*, int) {
  void* p = std::malloc(size);
  if (p != nullptr) ++live_blocks;
  return p;
}

void* CountingRealloc(void* old, size_t size, const char*, int) {
  if (size == 0) {
    if (old != nullptr) --live_blocks;
    std::free(old);
    return nullptr;
  }
  void* p = std::realloc(old, size);
  if (old == nullptr && p != nullptr) ++live_blocks;
  return p;
}

void CountingFree(void* p, const char*, int) {
  if (p != nullptr) --live_blocks;
  std::free(p);
}

std::string Pem(absl::string_view label, absl::string_view der) {
  const std::string b64 = absl::Base64Escape(der);
  std::string out = absl::StrCat("-----BEGIN ", label, "-----\n");
  for (size_t i = 0; i < b64.size(); i += 64)
    absl::StrAppend(&out, b64.substr(i, 64), "\n");
  absl::StrAppend(&out, "-----END ", label, "-----\n");
  return out;
}

std::string ReadTestFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

// Runs `read` a hundred times after a warm-up (OpenSSL's lazily built tables) and
// returns how many OpenSSL blocks the hundred calls left allocated.
template <typename F>
long LeakedBlocks(F read) {
  read();
  const long before = live_blocks.load();
  for (int i = 0; i < 100; ++i) read();
  return live_blocks.load() - before;
}

TEST(PemLeakTest, CountingAllocatorIsInstalled) { EXPECT_TRUE(counting); }

// A certificate with bytes after its DER is refused; the X509 parsed before the
// trailing bytes were seen must be freed (found by pem_fuzz).
TEST(PemLeakTest, CertificateWithTrailingBytes) {
  absl::StatusOr<std::vector<std::string>> certs =
      ReadPemCertificatesDer(ReadTestFile("base/testdata/fuzz/pem/chain.pem"));
  ASSERT_TRUE(certs.ok()) << certs.status();
  const std::string text = Pem("CERTIFICATE", absl::StrCat(certs->front(), "\x01\x02"));
  EXPECT_EQ(LeakedBlocks([&] { EXPECT_FALSE(ReadPemCertificatesDer(text).ok()); }), 0);
  EXPECT_EQ(LeakedBlocks([&] { EXPECT_FALSE(ReadPemCertificates(text).ok()); }), 0);
}

TEST(PemLeakTest, Pkcs8WithTrailingBytes) {
  const std::string der = ReadTestFile("base/testdata/fuzz/pem/pkcs8_p256.der");
  absl::StatusOr<EvpPkeyPtr> key = ParsePkcs8PrivateKey(SecretBytes(der));
  ASSERT_TRUE(key.ok()) << key.status() << " (" << der.size() << " bytes)";
  const SecretBytes trailing(absl::StrCat(der, "\x01\x02"));
  const std::string text = Pem("PRIVATE KEY", trailing.view());
  EXPECT_EQ(LeakedBlocks([&] { EXPECT_FALSE(ParsePkcs8PrivateKey(trailing).ok()); }), 0);
  EXPECT_EQ(LeakedBlocks([&] { EXPECT_FALSE(ReadPemPrivateKey(text).ok()); }), 0);
}

}  // namespace
}  // namespace offkey

int main(int argc, char** argv) {
  offkey::counting =
      CRYPTO_set_mem_functions(offkey::CountingMalloc, offkey::CountingRealloc,
                               offkey::CountingFree) == 1;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
