// Tls12Prf, MasterSecret and ExtendedMasterSecret against every SHA-256 and SHA-384 row
// of the shared TLS 1.2 known answers (tls12-prf/tls12_prf_kats_flat.tsv), plus the
// argument checks.
#include "service/crypto/tls_prf.h"

#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "hsm/testing/wycheproof.h"

namespace offkey::service::crypto {
namespace {

using ::offkey::testing::IsOk;

using ::offkey::hsm::HashAlgorithm;
using ::offkey::hsm::testing::TestDataPath;
using ::offkey::hsm::testing::Unhex;

constexpr char kKats[] = "tls12-prf/tls12_prf_kats_flat.tsv";

// One row of the flat file. Columns (from its header line):
// source, id, hash, step, secret_hex, label_ascii, seed_hex, expected_hex.
struct Kat {
  int line = 0;
  std::string source, id, hash, step;
  std::string secret, label, seed, expected;  // decoded bytes; label is ASCII text
};

std::vector<Kat> ReadKats() {
  const std::string path = TestDataPath(kKats);
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::vector<Kat> out;
  std::string line;
  int number = 0;
  bool header_seen = false;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line[0] == '#') {
      // The header names the columns; fail loudly if the layout ever changes.
      EXPECT_EQ(
          line,
          "# source\tid\thash\tstep\tsecret_hex\tlabel_ascii\tseed_hex\texpected_hex");
      header_seen = true;
      continue;
    }
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    EXPECT_EQ(f.size(), 8u) << path << ":" << number;
    if (f.size() != 8) continue;
    Kat k;
    k.line = number;
    k.source = f[0];
    k.id = f[1];
    k.hash = f[2];
    k.step = f[3];
    k.secret = Unhex(f[4]);
    k.label = f[5];
    k.seed = Unhex(f[6]);
    k.expected = Unhex(f[7]);
    out.push_back(std::move(k));
  }
  EXPECT_TRUE(header_seen) << path;
  return out;
}

// The file's hash names; nullopt-like kNone for hashes the TLS 1.2 PRF does not use.
HashAlgorithm HashFromName(const std::string& name) {
  if (name == "SHA-256") return HashAlgorithm::kSha256;
  if (name == "SHA-384") return HashAlgorithm::kSha384;
  if (name == "SHA-224") return HashAlgorithm::kNone;  // no enum value: never a PRF hash
  if (name == "SHA-512") return HashAlgorithm::kSha512;
  ADD_FAILURE() << "unknown hash " << name;
  return HashAlgorithm::kNone;
}

std::string Str(const SecretBytes& b) { return std::string(b.view()); }

TEST(TlsPrfKatTest, EverySha256AndSha384RowOfTheFlatFile) {
  const std::vector<Kat> kats = ReadKats();
  ASSERT_FALSE(kats.empty());

  std::map<std::string, int> prf_checked;     // per source, through Tls12Prf
  std::map<std::string, int> derive_checked;  // per source, through MasterSecret / EMS
  int master = 0, extended = 0, refused = 0;
  for (const Kat& k : kats) {
    SCOPED_TRACE(absl::StrCat(kKats, ":", k.line, " ", k.source, " ", k.id, " ", k.hash,
                              " ", k.step));
    prf_checked.emplace(k.source, 0);  // every source must show up below with a count
    const HashAlgorithm hash = HashFromName(k.hash);
    const SecretBytes secret(k.secret);
    if (hash != HashAlgorithm::kSha256 && hash != HashAlgorithm::kSha384) {
      // SHA-224 / SHA-512 rows: the PRF refuses them rather than computing something.
      EXPECT_EQ(
          Tls12Prf(hash, secret, k.label, k.seed, k.expected.size()).status().code(),
          absl::StatusCode::kInvalidArgument);
      ++refused;
      continue;
    }

    auto out = Tls12Prf(hash, secret, k.label, k.seed, k.expected.size());
    ASSERT_THAT(out, IsOk());
    EXPECT_EQ(Str(*out), k.expected);
    ++prf_checked[k.source];

    if (k.step == "master_secret") {
      ASSERT_EQ(k.label, "master secret");
      ASSERT_EQ(k.seed.size(), 64u) << "seed should be client_random || server_random";
      ASSERT_EQ(k.expected.size(), 48u);
      auto ms = MasterSecret(hash, secret, k.seed.substr(0, 32), k.seed.substr(32));
      ASSERT_THAT(ms, IsOk());
      EXPECT_EQ(Str(*ms), k.expected);
      // The randoms are ordered: swapping them must change the answer.
      auto swapped = MasterSecret(hash, secret, k.seed.substr(32), k.seed.substr(0, 32));
      ASSERT_THAT(swapped, IsOk());
      EXPECT_NE(Str(*swapped), k.expected);
      ++master;
      ++derive_checked[k.source];
    } else if (k.step == "extended_master_secret") {
      ASSERT_EQ(k.label, "extended master secret");
      ASSERT_EQ(k.seed.size(), hsm::HashLength(hash)) << "seed should be session_hash";
      ASSERT_EQ(k.expected.size(), 48u);
      auto ems = ExtendedMasterSecret(hash, secret, k.seed);
      ASSERT_THAT(ems, IsOk());
      EXPECT_EQ(Str(*ems), k.expected);
      ++extended;
      ++derive_checked[k.source];
    }
  }

  for (const auto& [source, count] : prf_checked) {
    EXPECT_GT(count, 0) << "no SHA-256/SHA-384 row of " << source << " was checked";
    std::cout << "checked " << count << " PRF rows and " << derive_checked[source]
              << " master/extended-master rows of " << source << "\n";
  }
  // The sources the file documents; each must contribute (a renamed or emptied source
  // must not let this test pass silently).
  for (const char* source :
       {"ietf-tls-msg03416", "nist-acvp-TLS-v1.2-KDF-RFC7627",
        "nist-acvp-kdf-components-tls", "openssl-evpkdf_tls12_prf(nist-cavp)"}) {
    EXPECT_GT(prf_checked[source], 0) << source;
  }
  EXPECT_GT(derive_checked["nist-acvp-TLS-v1.2-KDF-RFC7627"], 0);
  EXPECT_GT(derive_checked["nist-acvp-kdf-components-tls"], 0);
  EXPECT_GT(derive_checked["openssl-evpkdf_tls12_prf(nist-cavp)"], 0);
  EXPECT_GT(master, 0);
  EXPECT_GT(extended, 0);
  std::cout << "master_secret rows: " << master
            << ", extended_master_secret rows: " << extended
            << ", other-hash rows refused: " << refused << "\n";
}

TEST(TlsPrfTest, ShorterOutputIsAPrefixOfLongerOutput) {
  const SecretBytes secret(std::string(48, '\x0b'));
  auto long_out = Tls12Prf(HashAlgorithm::kSha384, secret, "key expansion", "seed", 200);
  auto short_out = Tls12Prf(HashAlgorithm::kSha384, secret, "key expansion", "seed", 13);
  ASSERT_TRUE(long_out.ok() && short_out.ok());
  EXPECT_EQ(long_out->size(), 200u);
  EXPECT_EQ(Str(*long_out).substr(0, 13), Str(*short_out));
}

TEST(TlsPrfTest, LabelAndSeedAreConcatenated) {
  // PRF(secret, label, seed) depends only on label || seed.
  const SecretBytes secret(std::string(48, '\x0b'));
  auto a = Tls12Prf(HashAlgorithm::kSha256, secret, "master secret", "abc", 48);
  auto b = Tls12Prf(HashAlgorithm::kSha256, secret, "master secretab", "c", 48);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(Str(*a), Str(*b));
}

TEST(TlsPrfTest, RefusesHashesTls12DoesNotUse) {
  const SecretBytes secret(std::string(48, 's'));
  for (HashAlgorithm h :
       {HashAlgorithm::kNone, HashAlgorithm::kSha1, HashAlgorithm::kSha512}) {
    EXPECT_EQ(Tls12Prf(h, secret, "label", "seed", 48).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(MasterSecret(h, secret, std::string(32, 'c'), std::string(32, 's'))
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ExtendedMasterSecret(h, secret, std::string(32, 'h')).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(TlsPrfTest, RefusesEmptySecretLabelOrOutput) {
  const SecretBytes secret(std::string(48, 's'));
  EXPECT_EQ(Tls12Prf(HashAlgorithm::kSha256, SecretBytes(), "l", "s", 48).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tls12Prf(HashAlgorithm::kSha256, secret, "", "s", 48).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tls12Prf(HashAlgorithm::kSha256, secret, "l", "s", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  // An empty seed is fine: the label alone is the PRF seed.
  EXPECT_THAT(Tls12Prf(HashAlgorithm::kSha256, secret, "l", "", 48), IsOk());
}

TEST(MasterSecretTest, RefusesWrongSizes) {
  const std::string r32(32, 'r');
  for (size_t n : {0, 47, 49, 256}) {
    EXPECT_EQ(
        MasterSecret(HashAlgorithm::kSha256, SecretBytes(std::string(n, 'p')), r32, r32)
            .status()
            .code(),
        absl::StatusCode::kInvalidArgument)
        << "premaster of " << n;
  }
  const SecretBytes pm(std::string(48, 'p'));
  EXPECT_EQ(
      MasterSecret(HashAlgorithm::kSha256, pm, std::string(31, 'c'), r32).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      MasterSecret(HashAlgorithm::kSha256, pm, r32, std::string(33, 's')).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MasterSecret(HashAlgorithm::kSha256, pm, "", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  auto ok = MasterSecret(HashAlgorithm::kSha384, pm, r32, r32);
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->size(), 48u);
}

TEST(ExtendedMasterSecretTest, SessionHashMustMatchThePrfHash) {
  const SecretBytes pm(std::string(48, 'p'));
  EXPECT_TRUE(
      ExtendedMasterSecret(HashAlgorithm::kSha256, pm, std::string(32, 'h')).ok());
  EXPECT_TRUE(
      ExtendedMasterSecret(HashAlgorithm::kSha384, pm, std::string(48, 'h')).ok());
  EXPECT_EQ(ExtendedMasterSecret(HashAlgorithm::kSha256, pm, std::string(48, 'h'))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExtendedMasterSecret(HashAlgorithm::kSha384, pm, std::string(32, 'h'))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExtendedMasterSecret(HashAlgorithm::kSha256, pm, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExtendedMasterSecret(HashAlgorithm::kSha256,
                                 SecretBytes(std::string(47, 'p')), std::string(32, 'h'))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace offkey::service::crypto
