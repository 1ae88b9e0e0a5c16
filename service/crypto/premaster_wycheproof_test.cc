// The DecryptPremaster path end to end below the RPC layer, on a real SoftHSM2 token:
// KeyStore::RsaDecryptRaw -> ComputeSubstitute -> SelectPremaster, fed every Wycheproof
// RSA PKCS#1 v1.5 decryption vector (2048, 3072, 4096 bits) and real TLS-shaped
// premasters encrypted with OpenSSL.
//
// Wycheproof messages are not 48-byte premasters, so the vectors are used this way:
//   - the raw decryption is unpadded independently here (a plain, non-constant-time
//     parse) and must give `msg` for "valid" vectors and fail for "invalid" ones: this
//     checks the store's raw RSA and the vectors' meaning;
//   - SelectPremaster must return the message exactly when it is a 48-byte block
//     starting with client_version, else exactly the substitute; for Wycheproof vectors
//     that is always the substitute (no vector carries 48 bytes), so every padding class
//     of the file is shown to be absorbed;
//   - ciphertexts the store refuses before decrypting (wrong length, >= modulus) must be
//     "invalid" vectors and are counted separately.
#include <openssl/rand.h>

#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/testing/status_matchers.h"
#include "google/protobuf/struct.pb.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "hsm/testing/verify.h"
#include "hsm/testing/wycheproof.h"
#include "service/crypto/premaster.h"
#include "service/crypto/substitute.h"

namespace offkey::service::crypto {
namespace {

using ::offkey::testing::IsOk;

using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::offkey::hsm::KeyInfo;
using ::offkey::hsm::pkcs11::Pkcs11KeyStore;
using ::offkey::hsm::pkcs11::testing::SoftHsmToken;
using ::offkey::hsm::testing::LoadJson;
using ::offkey::hsm::testing::RsaEncryptPkcs1;
using ::offkey::hsm::testing::RsaEncryptRaw;
using ::offkey::hsm::testing::Unhex;

constexpr uint16_t kTls12 = 0x0303;

std::string Random(size_t n) {
  std::string out(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n));
  return out;
}

const std::string& Field(const Struct& s, const std::string& name) {
  static const std::string* const kEmpty = new std::string;
  auto it = s.fields().find(name);
  EXPECT_NE(it, s.fields().end()) << "missing field " << name;
  return it == s.fields().end() ? *kEmpty : it->second.string_value();
}

// The plain PKCS#1 v1.5 type-2 parse (RFC 8017 §7.2.2 step 3), for checking only:
// 0x00 0x02, at least 8 nonzero bytes, the first 0x00, then the message.
std::optional<std::string> UnpadPkcs1Type2(absl::string_view em) {
  if (em.size() < 11 || em[0] != 0 || em[1] != 2) return std::nullopt;
  size_t sep = 2;
  while (sep < em.size() && em[sep] != 0) ++sep;
  if (sep == em.size() || sep - 2 < 8) return std::nullopt;
  return std::string(em.substr(sep + 1));
}

// Whether the store can decrypt `ct` at all: exactly k bytes and numerically below the
// modulus (public checks, decided here from the vector's own key).
bool FitsModulus(const std::string& ct, std::string modulus) {
  while (!modulus.empty() && modulus[0] == '\0') modulus.erase(0, 1);
  return ct.size() == modulus.size() &&
         std::memcmp(ct.data(), modulus.data(), ct.size()) < 0;
}

std::uint16_t VersionOf(absl::string_view msg) {
  return static_cast<uint16_t>((static_cast<uint8_t>(msg[0]) << 8) |
                               static_cast<uint8_t>(msg[1]));
}

struct Counts {
  int valid = 0;       // decrypted; result "valid"
  int invalid = 0;     // decrypted; result "invalid"
  int acceptable = 0;  // decrypted; result "acceptable" (none in these files today)
  int rejected = 0;    // refused by RsaDecryptRaw before decrypting
  int own = 0;         // OpenSSL-encrypted TLS premasters
};

class PremasterWycheproofTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    auto token = SoftHsmToken::Create("premaster");
    ASSERT_THAT(token, IsOk());
    token_ = *token;
    auto store = Pkcs11KeyStore::Create(token_.Options());
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  SecretBytes Substitute(const KeyInfo& key, const std::string& ct,
                         uint16_t version = kTls12) {
    auto sub = ComputeSubstitute(*store_, key.key_id, version, ct, {});
    EXPECT_THAT(sub, IsOk());
    if (!sub.ok()) return SecretBytes(kPremasterSize);
    EXPECT_EQ(sub->size(), kPremasterSize);
    return std::move(*sub);
  }

  // The substitute is exactly version || HKDF-Expand(HMAC_store(SubstituteInput(key id,
  // version, ct))): the store's MAC is reachable, so check the composition rather than
  // trust it.
  void ExpectSubstituteIsTheDocumentedMac(const KeyInfo& key, const std::string& ct,
                                          const SecretBytes& sub,
                                          uint16_t version = kTls12) {
    auto mac = store_->HmacWithStoreSecret(SubstituteInput(key.key_id, version, ct), {});
    ASSERT_THAT(mac, IsOk());
    ASSERT_EQ(mac->size(), 32u);
    auto expanded = ExpandSubstitute(*mac, version);
    ASSERT_THAT(expanded, IsOk());
    EXPECT_EQ(expanded->view(), sub.view());
  }

  // Real TLS premasters, encrypted as a TLS client does.
  void CheckOwnPremasters(const KeyInfo& key, size_t k, Counts* counts) {
    for (int i = 0; i < 8; ++i) {
      SCOPED_TRACE(absl::StrCat("own premaster ", i));
      const std::string pm = "\x03\x03" + Random(46);
      const std::string ct = RsaEncryptPkcs1(key.public_key_spki, pm);
      ASSERT_EQ(ct.size(), k);
      auto dec = store_->RsaDecryptRaw(key.key_id, ct, {});
      ASSERT_THAT(dec, IsOk());
      ASSERT_EQ(dec->size(), k);
      EXPECT_EQ(UnpadPkcs1Type2(dec->view()), pm);
      const SecretBytes sub = Substitute(key, ct);
      EXPECT_NE(sub.view(), absl::string_view(pm));
      EXPECT_EQ(SelectPremaster(*dec, kTls12, sub).view(), pm);
      // The client offered TLS 1.1 but the premaster says TLS 1.2: a rollback sign.
      for (uint16_t other : {0x0302, 0x0203}) {
        const SecretBytes other_sub = Substitute(key, ct, other);
        EXPECT_EQ(SelectPremaster(*dec, other, other_sub).view(), other_sub.view());
        EXPECT_EQ(other_sub[0], other >> 8);
        EXPECT_EQ(other_sub[1], other & 0xff);
        EXPECT_NE(other_sub.view().substr(2), sub.view().substr(2));
      }
      ++counts->own;
    }
    // The Wycheproof padding classes again, but around a real 48-byte TLS premaster, so
    // that only the malformation (not the message length) can cause the substitute.
    // Built here and encrypted with raw RSA (no padding) so the HSM decrypts them.
    const std::string pm = "\x03\x03" + Random(46);
    std::string good;
    good += '\x00';
    good += '\x02';
    for (size_t i = 0; i < k - 51; ++i) good += static_cast<char>(1 + i % 255);
    good += '\x00';
    good += pm;
    ASSERT_EQ(good.size(), k);
    struct Malformed {
      const char* what;
      size_t index;
      char value;
    };
    const Malformed kMalformed[] = {
        {"none (well formed)", 0, '\x00'},
        {"first byte 1", 0, '\x01'},
        {"block type 0", 1, '\x00'},
        {"block type 1", 1, '\x01'},
        {"block type 3", 1, '\x03'},
        {"zero in padding byte 0", 2, '\x00'},
        {"zero in padding byte 7", 9, '\x00'},
        {"zero just before the separator (49-byte message)", k - 50, '\x00'},
        {"no separator", k - 49, '\x01'},
        {"wrong version, first byte", k - 48, '\x02'},
        {"wrong version, second byte", k - 47, '\x01'},
    };
    for (const Malformed& m : kMalformed) {
      SCOPED_TRACE(m.what);
      std::string em = good;
      em[m.index] = m.value;
      const bool well_formed = em == good;
      const std::string ct = RsaEncryptRaw(key.public_key_spki, em);
      auto dec = store_->RsaDecryptRaw(key.key_id, ct, {});
      ASSERT_THAT(dec, IsOk());
      ASSERT_EQ(dec->view(), em);
      const SecretBytes sub = Substitute(key, ct);
      EXPECT_EQ(SelectPremaster(*dec, kTls12, sub).view(),
                well_formed ? absl::string_view(pm) : sub.view());
      ++counts->own;
    }

    // Properly padded messages of the wrong length are refused too.
    for (size_t len : {0, 2, 47, 49, 64}) {
      SCOPED_TRACE(absl::StrCat("own message of ", len, " bytes"));
      const std::string msg = ("\x03\x03" + Random(len)).substr(0, len);
      const std::string ct = RsaEncryptPkcs1(key.public_key_spki, msg);
      auto dec = store_->RsaDecryptRaw(key.key_id, ct, {});
      ASSERT_THAT(dec, IsOk());
      EXPECT_EQ(UnpadPkcs1Type2(dec->view()), msg);
      const SecretBytes sub = Substitute(key, ct);
      EXPECT_EQ(SelectPremaster(*dec, kTls12, sub).view(), sub.view());
      ++counts->own;
    }
  }

  SoftHsmToken token_;
  std::unique_ptr<Pkcs11KeyStore> store_;
};

INSTANTIATE_TEST_SUITE_P(Wycheproof, PremasterWycheproofTest,
                         ::testing::Values("wycheproof/rsa_pkcs1_2048_test.json",
                                           "wycheproof/rsa_pkcs1_3072_test.json",
                                           "wycheproof/rsa_pkcs1_4096_test.json"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           name = name.substr(name.find("pkcs1_") + 6, 4);
                           return absl::StrCat("Rsa", name);
                         });

TEST_P(PremasterWycheproofTest, EveryVectorGivesTheMessageOrTheSubstitute) {
  auto file = LoadJson(GetParam());
  ASSERT_THAT(file, IsOk());
  ASSERT_EQ(Field(*file, "algorithm"), "RSAES-PKCS1-v1_5");
  const auto& groups = file->fields().at("testGroups").list_value().values();
  ASSERT_FALSE(groups.empty());

  // Another key, for "same ciphertext, different key".
  auto other = store_->GenerateKey("other", hsm::KeyAlgorithm::kRsa2048);
  ASSERT_THAT(other, IsOk());

  Counts counts;
  int total = 0;
  // Substitute input -> substitute: distinct inputs must never share a substitute.
  std::map<std::string, std::string> substitute_of;
  std::set<std::string> substitutes;
  int group_index = 0;
  for (const Value& group_value : groups) {
    const Struct& group = group_value.struct_value();
    SCOPED_TRACE(absl::StrCat(GetParam(), " group ", group_index));
    const size_t k = static_cast<size_t>(group.fields().at("keySize").number_value()) / 8;
    const std::string modulus =
        Unhex(Field(group.fields().at("privateKey").struct_value(), "modulus"));
    auto key = store_->ImportKey(absl::StrCat("wycheproof-", group_index++),
                                 SecretBytes(Unhex(Field(group, "privateKeyPkcs8"))));
    ASSERT_THAT(key, IsOk());

    std::string previous_ct;
    SecretBytes previous_sub;
    for (const Value& test_value : group.fields().at("tests").list_value().values()) {
      const Struct& test = test_value.struct_value();
      const int tc_id = static_cast<int>(test.fields().at("tcId").number_value());
      SCOPED_TRACE(absl::StrCat("tcId ", tc_id, ": ", Field(test, "comment")));
      const std::string ct = Unhex(Field(test, "ct"));
      const std::string msg = Unhex(Field(test, "msg"));
      const std::string& result = Field(test, "result");
      ++total;

      // The substitute comes first, on every call, as the service computes it.
      const SecretBytes sub = Substitute(*key, ct);
      const auto [seen, fresh] =
          substitute_of.emplace(SubstituteInput(key->key_id, kTls12, ct), sub.view());
      if (fresh) {
        EXPECT_TRUE(substitutes.insert(std::string(sub.view())).second)
            << "two (key, ciphertext) pairs share a substitute";
      } else {
        EXPECT_EQ(seen->second, sub.view());
      }
      // Deterministic: the same ciphertext again gives the same bytes.
      EXPECT_EQ(Substitute(*key, ct).view(), sub.view());
      if (!previous_ct.empty() && previous_ct != ct) {
        EXPECT_NE(previous_sub.view(), sub.view());
      }
      ExpectSubstituteIsTheDocumentedMac(*key, ct, sub);

      auto dec = store_->RsaDecryptRaw(key->key_id, ct, {});
      EXPECT_EQ(dec.ok(), FitsModulus(ct, modulus)) << dec.status();
      if (!dec.ok()) {
        // Visible without decrypting; the RPC answers INVALID_ARGUMENT for these.
        EXPECT_EQ(dec.status().code(), absl::StatusCode::kInvalidArgument)
            << dec.status();
        EXPECT_EQ(result, "invalid");
        ++counts.rejected;
        previous_ct = ct;
        previous_sub = sub.Copy();
        continue;
      }
      ASSERT_EQ(dec->size(), k);

      const std::optional<std::string> unpadded = UnpadPkcs1Type2(dec->view());
      std::vector<uint16_t> versions = {kTls12, 0x0301};
      if (msg.size() >= 2) versions.push_back(VersionOf(msg));
      if (result == "valid") {
        EXPECT_EQ(unpadded, msg) << "raw RSA plus a plain unpadding must give msg";
        ++counts.valid;
      } else if (result == "invalid") {
        EXPECT_EQ(unpadded, std::nullopt) << "an invalid vector unpadded cleanly";
        ++counts.invalid;
      } else {
        ASSERT_EQ(result, "acceptable");
        ++counts.acceptable;
      }
      for (uint16_t version : versions) {
        SCOPED_TRACE(absl::StrCat("client_version 0x", absl::Hex(version)));
        const SecretBytes sub_v =
            version == kTls12 ? sub.Copy() : Substitute(*key, ct, version);
        if (version != kTls12)
          ExpectSubstituteIsTheDocumentedMac(*key, ct, sub_v, version);
        const SecretBytes out = SelectPremaster(*dec, version, sub_v);
        ASSERT_EQ(out.size(), kPremasterSize);
        const bool is_premaster = unpadded.has_value() && result != "invalid" &&
                                  unpadded->size() == kPremasterSize &&
                                  VersionOf(*unpadded) == version;
        if (is_premaster) {
          EXPECT_EQ(out.view(), *unpadded);
        } else {
          EXPECT_EQ(out.view(), sub_v.view());
        }
        EXPECT_EQ(out[0], version >> 8);
        EXPECT_EQ(out[1], version & 0xff);
      }
      previous_ct = ct;
      previous_sub = sub.Copy();
    }

    // The same ciphertext under another key gets another substitute.
    if (!previous_ct.empty()) {
      EXPECT_NE(Substitute(*other, previous_ct).view(), previous_sub.view());
    }
    if (group_index == 1) CheckOwnPremasters(*key, k, &counts);
  }

  EXPECT_EQ(total, static_cast<int>(file->fields().at("numberOfTests").number_value()));
  EXPECT_EQ(counts.valid + counts.invalid + counts.acceptable + counts.rejected, total);
  EXPECT_GT(counts.valid, 0);
  EXPECT_GT(counts.invalid, 0);
  EXPECT_GT(counts.rejected, 0);
  EXPECT_GT(counts.own, 0);
  std::cout << GetParam() << ": " << total << " vectors: " << counts.valid << " valid, "
            << counts.invalid << " invalid, " << counts.acceptable << " acceptable, "
            << counts.rejected << " rejected before decryption; " << counts.own
            << " own OpenSSL-encrypted messages\n";
  RecordProperty("valid", counts.valid);
  RecordProperty("invalid", counts.invalid);
  RecordProperty("rejected_before_decryption", counts.rejected);
  RecordProperty("own", counts.own);
}

}  // namespace
}  // namespace offkey::service::crypto
