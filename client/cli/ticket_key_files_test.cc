#include "client/cli/ticket_key_files.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/testing/text.h"
#include "gtest/gtest.h"

namespace offkey::client::cli {
namespace {

using offkey::testing::Contains;

// Bytes `first`, `first`+1, ... : every position of a layout is told apart.
std::string Bytes(int first, int size) {
  std::string out;
  for (int i = 0; i < size; ++i) out.push_back(static_cast<char>(first + i));
  return out;
}

offkey::v1::TicketKey Key(int64_t epoch, int name_first, int aes_first, int hmac_first) {
  offkey::v1::TicketKey key;
  key.set_epoch(epoch);
  key.set_name(Bytes(name_first, 16));
  key.set_aes_key(Bytes(aes_first, 32));
  key.set_hmac_key(Bytes(hmac_first, 32));
  return key;
}

std::string ReadFile(const std::string& path) {
  std::stringstream s;
  s << std::ifstream(path, std::ios::binary).rdbuf();
  return s.str();
}

TEST(TicketKeyFilesTest, NginxFileIsNameHmacAes) {
  absl::StatusOr<SecretBytes> file = NginxTicketKeyFile(Key(7, 0x00, 0x20, 0x40));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->view(), Bytes(0x00, 16) + Bytes(0x40, 32) + Bytes(0x20, 32));
  EXPECT_EQ(file->size(), 80u);
}

TEST(TicketKeyFilesTest, HaproxyEntryIsBase64OfNameAesHmac) {
  absl::StatusOr<SecretBytes> line = HaproxyTicketKey(Key(7, 0x00, 0x20, 0x40));
  ASSERT_TRUE(line.ok()) << line.status();
  // base64(00..0f 20..3f 40..5f), computed independently with Python's base64 module.
  EXPECT_EQ(line->view(),
            "AAECAwQFBgcICQoLDA0ODyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QEFCQ0RFRkdI"
            "SUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=");
}

TEST(TicketKeyFilesTest, HaproxyFileListsPreviousCurrentNext) {
  offkey::v1::GetTicketKeysResponse keys;
  *keys.mutable_previous() = Key(6, 0x00, 0x20, 0x40);
  // 0xa0 x16, 0xa1 x32, 0xa2 x32.
  offkey::v1::TicketKey current;
  current.set_epoch(7);
  current.set_name(std::string(16, '\xa0'));
  current.set_aes_key(std::string(32, '\xa1'));
  current.set_hmac_key(std::string(32, '\xa2'));
  *keys.mutable_current() = current;
  *keys.mutable_next() = Key(8, 0x00, 0x20, 0x40);
  absl::StatusOr<SecretBytes> file = HaproxyTicketKeysFile(keys);
  ASSERT_TRUE(file.ok()) << file.status();
  const std::string first =
      "AAECAwQFBgcICQoLDA0ODyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/"
      "QEFCQ0RFRkdISUpLTE1O"
      "T1BRUlNUVVZXWFlaW1xdXl8=\n";
  EXPECT_EQ(
      file->view(),
      first +
          "oKCgoKCgoKCgoKCgoKCgoKGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoqKioqKioqK"
          "ioqKioqKioqKioqKioqKioqKioqKioqI=\n" +
          first);

  keys.clear_next();
  EXPECT_EQ(HaproxyTicketKeysFile(keys).status().code(), absl::StatusCode::kDataLoss);
}

TEST(TicketKeyFilesTest, WrongSizesAreRefusedWithoutTheBytes) {
  offkey::v1::TicketKey key = Key(9, 0x61, 0x62, 0x63);
  key.set_aes_key("short-aes-key");
  absl::StatusOr<SecretBytes> file = NginxTicketKeyFile(key);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(
      Contains(file.status().message(), "epoch 9 with a 16-byte name, 13-byte AES"));
  EXPECT_FALSE(Contains(file.status().message(), "short-aes-key"));
  EXPECT_EQ(HaproxyTicketKey(key).status().code(), absl::StatusCode::kDataLoss);
}

TEST(TicketKeyFilesTest, ReplaceFileAtomicallyWritesModeAndLeavesNoTemporary) {
  const std::string dir = std::string(getenv("TEST_TMPDIR")) + "/atomic";
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  const std::string path = dir + "/current.key";
  std::ofstream(path) << "old contents";
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);

  ASSERT_TRUE(ReplaceFileAtomically(path, std::string("new\0bytes", 9), 0600).ok());
  EXPECT_EQ(ReadFile(path), std::string("new\0bytes", 9));
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  // Only the file itself is left in the directory: no temporary file.
  std::vector<std::string> names;
  DIR* listing = opendir(dir.c_str());
  ASSERT_NE(listing, nullptr);
  while (const dirent* entry = readdir(listing)) {
    if (std::string(entry->d_name) != "." && std::string(entry->d_name) != "..") {
      names.push_back(entry->d_name);
    }
  }
  closedir(listing);
  EXPECT_EQ(names, std::vector<std::string>{"current.key"});

  // A directory that does not exist: an error naming the path.
  absl::Status failed = ReplaceFileAtomically(dir + "/absent/next.key", "x", 0600);
  EXPECT_FALSE(failed.ok());
  EXPECT_TRUE(Contains(failed.message(), dir + "/absent/next.key"));
}

}  // namespace
}  // namespace offkey::client::cli
