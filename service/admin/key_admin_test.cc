// Unit tests of KeyAdmin over a FakeKeyStore with an injected clock: the key lifecycle
// (every transition and every refused one), the destruction window, imports, CSRs
// (checked with OpenSSL) and certificate attachment. The same API over gRPC against
// SoftHSM2 is tests/key_admin_test.cc.
#include "service/admin/key_admin.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/openssl_util.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/testing/fake_key_store.h"
#include "hsm/testing/forwarding_store.h"
#include "hsm/testing/verify.h"
#include "service/dev/dev_pki.h"
#include "service/key_catalog.h"

namespace offkey::service::admin {
namespace {

using ::offkey::hsm::testing::FakeKeyStore;
using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using M = FakeKeyStore::Method;

constexpr int64_t kDay = 24 * 3600;

v1::KeyRef ByName(absl::string_view name) {
  v1::KeyRef ref;
  ref.set_name(std::string(name));
  return ref;
}

// PKCS#8 PEM of `key`; encrypted under `passphrase` when it is not empty.
std::string Pkcs8Pem(EVP_PKEY* key, const std::string& passphrase = "") {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (passphrase.empty()) {
    PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  } else {
    PEM_write_bio_PKCS8PrivateKey(bio.get(), key, EVP_aes_256_cbc(), passphrase.data(),
                                  static_cast<int>(passphrase.size()), nullptr, nullptr);
  }
  return BioContents(bio.get());
}

// The pre-PKCS#8 ("BEGIN EC PRIVATE KEY") form.
std::string LegacyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey_traditional(bio.get(), key, nullptr, nullptr, 0, nullptr,
                                       nullptr);
  return BioContents(bio.get());
}

std::string Der(const std::string& pem) {
  absl::StatusOr<std::string> der = service::dev::PemToDer(pem);
  EXPECT_THAT(der, IsOk());
  return der.ok() ? *der : "";
}

class KeyAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OFFKEY_ASSERT_OK_AND_ASSIGN(ca_, service::dev::MakeCa("offkey test CA"));
  }

  v1::KeyInfo Create(absl::string_view name, v1::KeyAlgorithm algorithm = v1::EC_P256) {
    v1::CreateKeyRequest request;
    request.set_name(std::string(name));
    request.set_algorithm(algorithm);
    absl::StatusOr<v1::CreateKeyResponse> response = admin_.CreateKey(request);
    EXPECT_THAT(response, IsOk());
    return response.ok() ? response->key() : v1::KeyInfo();
  }

  // The key's state as the data plane's catalog sees it now.
  v1::KeyState DataPlaneState(absl::string_view name) {
    absl::StatusOr<std::shared_ptr<const KeyRecord>> key = catalog_.Find(ByName(name));
    EXPECT_THAT(key, IsOk());
    return key.ok() ? (*key)->metadata.state() : v1::KEY_STATE_UNSPECIFIED;
  }

  absl::StatusOr<v1::KeyInfo> Enable(absl::string_view name) {
    v1::EnableKeyRequest request;
    *request.mutable_key() = ByName(name);
    absl::StatusOr<v1::EnableKeyResponse> response = admin_.EnableKey(request);
    if (!response.ok()) return response.status();
    return response->key();
  }
  absl::StatusOr<v1::KeyInfo> Disable(absl::string_view name) {
    v1::DisableKeyRequest request;
    *request.mutable_key() = ByName(name);
    absl::StatusOr<v1::DisableKeyResponse> response = admin_.DisableKey(request);
    if (!response.ok()) return response.status();
    return response->key();
  }
  absl::StatusOr<v1::KeyInfo> Schedule(absl::string_view name, int64_t window,
                                       bool force = false) {
    v1::ScheduleKeyDestructionRequest request;
    *request.mutable_key() = ByName(name);
    request.set_pending_window_seconds(window);
    request.set_force(force);
    absl::StatusOr<v1::ScheduleKeyDestructionResponse> response =
        admin_.ScheduleKeyDestruction(request);
    if (!response.ok()) return response.status();
    return response->key();
  }
  static absl::StatusOr<v1::KeyInfo> Cancel(KeyAdmin& admin, absl::string_view name) {
    v1::CancelKeyDestructionRequest request;
    *request.mutable_key() = ByName(name);
    absl::StatusOr<v1::CancelKeyDestructionResponse> response =
        admin.CancelKeyDestruction(request);
    if (!response.ok()) return response.status();
    return response->key();
  }
  absl::StatusOr<v1::KeyInfo> Cancel(absl::string_view name) {
    return Cancel(admin_, name);
  }
  absl::StatusOr<v1::DestroyKeyResponse> Destroy(absl::string_view name, bool force) {
    v1::DestroyKeyRequest request;
    *request.mutable_key() = ByName(name);
    request.set_force(force);
    return admin_.DestroyKey(request);
  }

  absl::StatusOr<v1::AttachCertificateResponse> AttachDer(
      absl::string_view name, const std::vector<std::string>& pems, bool force = false) {
    v1::AttachCertificateRequest request;
    *request.mutable_key() = ByName(name);
    for (const std::string& pem : pems) {
      request.mutable_chain_der()->add_certificates(Der(pem));
    }
    request.set_force(force);
    return admin_.AttachCertificate(request);
  }

  // A certificate for `info`'s public key, issued by `ca_`.
  service::dev::IssuedCert CertFor(const v1::KeyInfo& info, absl::Time not_after) {
    service::dev::CertSpec spec;
    spec.common_name = "www.example.com";
    spec.dns_names = {"www.example.com"};
    spec.server_auth = true;
    spec.public_key_spki = info.public_key_spki();
    spec.not_before = now_ - absl::Hours(1);
    spec.not_after = not_after;
    absl::StatusOr<service::dev::IssuedCert> cert = service::dev::Issue(ca_, spec);
    EXPECT_THAT(cert, IsOk());
    return cert.ok() ? *std::move(cert) : service::dev::IssuedCert();
  }

  absl::Time now_ = absl::FromUnixSeconds(1800000000);
  std::unique_ptr<FakeKeyStore> store_ = FakeKeyStore::Create();
  KeyCatalog catalog_{store_.get(), absl::Hours(1), absl::Hours(1)};
  KeyAdmin admin_{store_.get(), &catalog_, [this] { return now_; }};
  service::dev::IssuedCert ca_;
};

// -------------------------------------------------------------------- CreateKey

TEST_F(KeyAdminTest, CreateKeyStartsEnabledWithTheRestrictiveUsage) {
  v1::CreateKeyRequest request;
  request.set_name("web-1");
  request.set_algorithm(v1::ED25519_KEY);
  (*request.mutable_labels())["team"] = "edge";
  OFFKEY_ASSERT_OK_AND_ASSIGN(v1::CreateKeyResponse response, admin_.CreateKey(request));
  EXPECT_EQ(response.key().name(), "web-1");
  EXPECT_EQ(response.key().algorithm(), v1::ED25519_KEY);
  EXPECT_EQ(response.key().state(), v1::ENABLED);
  EXPECT_EQ(response.key().usage(), v1::TLS_SERVER);
  EXPECT_EQ(response.key().labels().at("team"), "edge");
  EXPECT_EQ(response.key().create_time(), absl::ToUnixSeconds(now_));
  EXPECT_EQ(response.key().key_id().size(), 20u);
  EXPECT_EQ(DataPlaneState("web-1"), v1::ENABLED);

  request.set_name("web-2");
  request.set_usage(v1::GENERAL_SIGNING);
  OFFKEY_ASSERT_OK_AND_ASSIGN(response, admin_.CreateKey(request));
  EXPECT_EQ(response.key().usage(), v1::GENERAL_SIGNING);
}

TEST_F(KeyAdminTest, CreateKeyRefusesBadInput) {
  Create("taken");
  v1::CreateKeyRequest request;
  request.set_name("taken");
  request.set_algorithm(v1::EC_P256);
  EXPECT_THAT(admin_.CreateKey(request), StatusIs(absl::StatusCode::kAlreadyExists));
  request.set_name("new");
  request.set_algorithm(v1::KEY_ALGORITHM_UNSPECIFIED);
  EXPECT_THAT(admin_.CreateKey(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("algorithm")));
  request.set_algorithm(v1::EC_P256);
  for (const std::string& bad : std::vector<std::string>{
           "", "-leading", "has space", "slash/", std::string(65, 'a')}) {
    request.set_name(bad);
    EXPECT_THAT(admin_.CreateKey(request),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")))
        << bad;
  }
  request.set_name("new");
  request.set_usage(static_cast<v1::KeyUsage>(7));
  EXPECT_THAT(admin_.CreateKey(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("usage")));
  request.clear_usage();
  (*request.mutable_labels())["Upper"] = "x";
  EXPECT_THAT(admin_.CreateKey(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels")));
  request.clear_labels();
  (*request.mutable_labels())["long"] = std::string(256, 'v');
  EXPECT_THAT(admin_.CreateKey(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels")));
  EXPECT_EQ(store_->CallCount(M::kGenerateKey), 2);  // "taken" twice; nothing else.
}

TEST_F(KeyAdminTest, CreateKeyLeavesNoHalfMadeKeyWhenMetadataCannotBeWritten) {
  store_->Fail(M::kPutMetadata, absl::UnavailableError("token removed"));
  v1::CreateKeyRequest request;
  request.set_name("web");
  request.set_algorithm(v1::EC_P256);
  EXPECT_THAT(admin_.CreateKey(request), StatusIs(absl::StatusCode::kUnavailable));
  store_->ClearAll();
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto keys, store_->ListKeys());
  EXPECT_THAT(keys, IsEmpty());
  EXPECT_THAT(catalog_.Find(ByName("web")), StatusIs(absl::StatusCode::kNotFound));
}

// ----------------------------------------------------------------- Transitions

TEST_F(KeyAdminTest, EnableAndDisableAreIdempotentAndSeenByTheDataPlane) {
  Create("web");
  OFFKEY_ASSERT_OK_AND_ASSIGN(v1::KeyInfo key, Enable("web"));  // Already enabled.
  EXPECT_EQ(key.state(), v1::ENABLED);
  OFFKEY_ASSERT_OK_AND_ASSIGN(key, Disable("web"));
  EXPECT_EQ(key.state(), v1::DISABLED);
  EXPECT_EQ(DataPlaneState("web"), v1::DISABLED);
  const int writes = store_->CallCount(M::kPutMetadata);
  OFFKEY_ASSERT_OK_AND_ASSIGN(key, Disable("web"));
  EXPECT_EQ(key.state(), v1::DISABLED);
  EXPECT_EQ(store_->CallCount(M::kPutMetadata), writes);  // Nothing to write.
  OFFKEY_ASSERT_OK_AND_ASSIGN(key, Enable("web"));
  EXPECT_EQ(key.state(), v1::ENABLED);
  EXPECT_EQ(DataPlaneState("web"), v1::ENABLED);
  EXPECT_THAT(Enable("nope"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Disable("nope"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(KeyAdminTest, ScheduleFromEnabledOrDisabledAndCancelToDisabled) {
  Create("a");
  Create("b");
  ASSERT_THAT(Disable("b"), IsOk());
  for (const char* name : {"a", "b"}) {
    SCOPED_TRACE(name);
    OFFKEY_ASSERT_OK_AND_ASSIGN(v1::KeyInfo key, Schedule(name, kDay));
    EXPECT_EQ(key.state(), v1::PENDING_DESTRUCTION);
    EXPECT_EQ(key.destroy_time(), absl::ToUnixSeconds(now_) + kDay);
    EXPECT_EQ(DataPlaneState(name), v1::PENDING_DESTRUCTION);

    // Refused while pending: a second schedule, enable, disable.
    EXPECT_THAT(Schedule(name, kDay), StatusIs(absl::StatusCode::kFailedPrecondition,
                                               HasSubstr("already pending")));
    EXPECT_THAT(Enable(name), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       HasSubstr("CancelKeyDestruction")));
    EXPECT_THAT(Disable(name), StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_EQ(DataPlaneState(name), v1::PENDING_DESTRUCTION);

    // Cancel: DISABLED, no destroy time; enabling is a separate, explicit step.
    OFFKEY_ASSERT_OK_AND_ASSIGN(key, Cancel(name));
    EXPECT_EQ(key.state(), v1::DISABLED);
    EXPECT_EQ(key.destroy_time(), 0);
    EXPECT_EQ(DataPlaneState(name), v1::DISABLED);
    EXPECT_THAT(Cancel(name), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       HasSubstr("not pending")));
    OFFKEY_ASSERT_OK_AND_ASSIGN(key, Enable(name));
    EXPECT_EQ(key.state(), v1::ENABLED);
  }
  EXPECT_THAT(Cancel("nope"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Schedule("nope", kDay), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(KeyAdminTest, DestructionWindowLimits) {
  Create("web");
  EXPECT_THAT(Schedule("web", -1), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("pending_window_seconds")));
  EXPECT_THAT(Schedule("web", 90 * kDay + 1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(DataPlaneState("web"), v1::ENABLED);
  // 0 means the default, 7 days.
  OFFKEY_ASSERT_OK_AND_ASSIGN(v1::KeyInfo key, Schedule("web", 0));
  EXPECT_EQ(key.destroy_time(), absl::ToUnixSeconds(now_) + 7 * kDay);
  ASSERT_THAT(Cancel("web"), IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(key, Schedule("web", 90 * kDay));
  EXPECT_EQ(key.destroy_time(), absl::ToUnixSeconds(now_) + 90 * kDay);
  ASSERT_THAT(Cancel("web"), IsOk());
  // A window shorter than 24 hours leaves no time to notice a mistake: only with force.
  EXPECT_THAT(Schedule("web", kDay - 1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("pending_window_seconds"), HasSubstr("24 hours"),
                             HasSubstr("force"))));
  EXPECT_THAT(Schedule("web", 1), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(DataPlaneState("web"), v1::DISABLED);
  OFFKEY_ASSERT_OK_AND_ASSIGN(key, Schedule("web", kDay));
  EXPECT_EQ(key.destroy_time(), absl::ToUnixSeconds(now_) + kDay);
  ASSERT_THAT(Cancel("web"), IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(key, Schedule("web", 1, /*force=*/true));
  EXPECT_EQ(key.destroy_time(), absl::ToUnixSeconds(now_) + 1);
  ASSERT_THAT(Cancel("web"), IsOk());
  // Force lowers the floor, nothing else.
  EXPECT_THAT(Schedule("web", -1, /*force=*/true),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Schedule("web", 90 * kDay + 1, /*force=*/true),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(KeyAdminTest, DestroyDueDestroysExactlyWhenTheWindowEnds) {
  Create("soon");
  Create("later");
  Create("cancelled");
  Create("kept");
  ASSERT_THAT(Schedule("soon", kDay), IsOk());
  ASSERT_THAT(Schedule("later", 2 * kDay), IsOk());
  ASSERT_THAT(Schedule("cancelled", kDay), IsOk());
  ASSERT_THAT(Cancel("cancelled"), IsOk());

  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<std::string> destroyed, admin_.DestroyDue());
  EXPECT_THAT(destroyed, IsEmpty());
  now_ += absl::Seconds(kDay - 1);
  OFFKEY_ASSERT_OK_AND_ASSIGN(destroyed, admin_.DestroyDue());
  EXPECT_THAT(destroyed, IsEmpty());
  now_ += absl::Seconds(1);
  OFFKEY_ASSERT_OK_AND_ASSIGN(destroyed, admin_.DestroyDue());
  EXPECT_THAT(destroyed, ElementsAre("soon"));
  EXPECT_THAT(store_->FindKey(hsm::KeyLookup::Name("soon")),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(catalog_.Find(ByName("soon")), StatusIs(absl::StatusCode::kNotFound));

  // A key another replica destroyed first is no error (and not this replica's to
  // report).
  now_ += absl::Seconds(kDay);
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto later, store_->FindKey(hsm::KeyLookup::Name("later")));
  ASSERT_THAT(store_->DestroyKey(later.key_id), IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(destroyed, admin_.DestroyDue());
  EXPECT_THAT(destroyed, IsEmpty());
  EXPECT_THAT(catalog_.Find(ByName("later")), StatusIs(absl::StatusCode::kNotFound));

  OFFKEY_ASSERT_OK_AND_ASSIGN(auto keys, store_->ListKeys());
  std::vector<std::string> names;
  for (const auto& key : keys) names.push_back(key.name);
  EXPECT_THAT(names, ElementsAre("cancelled", "kept"));

  // A failing store is reported, not skipped.
  Create("doomed");
  ASSERT_THAT(Schedule("doomed", 1, /*force=*/true), IsOk());
  now_ += absl::Seconds(2);
  store_->Fail(M::kDestroyKey, absl::UnavailableError("token removed"));
  EXPECT_THAT(admin_.DestroyDue(), StatusIs(absl::StatusCode::kUnavailable));
  store_->ClearAll();
  OFFKEY_ASSERT_OK_AND_ASSIGN(destroyed, admin_.DestroyDue());
  EXPECT_THAT(destroyed, ElementsAre("doomed"));
}

// Destruction is irreversible, so it must follow the token, not a cached snapshot: an
// operator who cancels on one replica must not lose the key to another replica whose
// catalog still says "pending".
TEST_F(KeyAdminTest, DestroyDueSparesAKeyCancelledOnAnotherReplica) {
  std::unique_ptr<FakeKeyStore> other_store = store_->OpenAnother();
  KeyCatalog other_catalog(other_store.get(), absl::Hours(1), absl::Hours(1));
  KeyAdmin other(other_store.get(), &other_catalog, [this] { return now_; });
  Create("web");
  ASSERT_THAT(Schedule("web", 60, /*force=*/true), IsOk());
  now_ += absl::Seconds(60);
  // This replica's catalog saw the key pending; the other replica cancels it.
  ASSERT_EQ(DataPlaneState("web"), v1::PENDING_DESTRUCTION);
  OFFKEY_ASSERT_OK_AND_ASSIGN(v1::KeyInfo cancelled, Cancel(other, "web"));
  EXPECT_EQ(cancelled.state(), v1::DISABLED);

  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<std::string> destroyed, admin_.DestroyDue());
  EXPECT_THAT(destroyed, IsEmpty());
  EXPECT_THAT(store_->FindKey(hsm::KeyLookup::Name("web")), IsOk());
  EXPECT_EQ(DataPlaneState("web"), v1::DISABLED);
}

// The state is re-read per key just before its destruction, not once for the whole
// pass: a cancel that lands on another replica while this one is destroying an earlier
// due key still saves the later one.
TEST_F(KeyAdminTest, DestroyDueRereadsEachKeyJustBeforeDestroyingIt) {
  std::unique_ptr<FakeKeyStore> other_store = store_->OpenAnother();
  KeyCatalog other_catalog(other_store.get(), absl::Hours(1), absl::Hours(1));
  KeyAdmin other(other_store.get(), &other_catalog, [this] { return now_; });
  // This replica's store: while it destroys "one", the other replica cancels "two".
  class CancelDuringDestroy : public hsm::testing::ForwardingStore {
   public:
    CancelDuringDestroy(hsm::KeyStore* real, std::function<void()> hook)
        : ForwardingStore(real), hook_(std::move(hook)) {}
    absl::Status DestroyKey(absl::string_view id) override {
      if (hook_) std::exchange(hook_, nullptr)();
      return ForwardingStore::DestroyKey(id);
    }

   private:
    std::function<void()> hook_;
  };
  CancelDuringDestroy racing(store_.get(),
                             [&] { EXPECT_THAT(Cancel(other, "two"), IsOk()); });
  KeyCatalog catalog(&racing, absl::Hours(1), absl::Hours(1));
  KeyAdmin admin(&racing, &catalog, [this] { return now_; });

  Create("one");
  Create("two");
  ASSERT_THAT(Schedule("one", kDay), IsOk());
  ASSERT_THAT(Schedule("two", kDay), IsOk());
  now_ += absl::Seconds(kDay);
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<std::string> destroyed, admin.DestroyDue());
  EXPECT_THAT(destroyed, ElementsAre("one"));
  EXPECT_THAT(store_->FindKey(hsm::KeyLookup::Name("one")),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->FindKey(hsm::KeyLookup::Name("two")), IsOk());
  // And this replica's catalog shows what the token says now.
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto two, catalog.Find(ByName("two")));
  EXPECT_EQ(two->metadata.state(), v1::DISABLED);
}

TEST_F(KeyAdminTest, DestroyKeyNeedsForceAndWorksInEveryState) {
  Create("enabled");
  Create("disabled");
  Create("pending");
  ASSERT_THAT(Disable("disabled"), IsOk());
  ASSERT_THAT(Schedule("pending", kDay), IsOk());
  for (const char* name : {"enabled", "disabled", "pending"}) {
    SCOPED_TRACE(name);
    EXPECT_THAT(Destroy(name, false),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("force")));
    EXPECT_THAT(catalog_.Find(ByName(name)), IsOk());
    OFFKEY_ASSERT_OK_AND_ASSIGN(v1::DestroyKeyResponse response, Destroy(name, true));
    EXPECT_EQ(response.name(), name);
    EXPECT_EQ(response.key_id().size(), 20u);
    EXPECT_THAT(catalog_.Find(ByName(name)), StatusIs(absl::StatusCode::kNotFound));
  }
  EXPECT_EQ(store_->CallCount(M::kDestroyKey), 3);
  EXPECT_THAT(Destroy("enabled", true), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(KeyAdminTest, UpdateKeyMergesReplacesAndRemovesLabels) {
  v1::CreateKeyRequest create;
  create.set_name("web");
  create.set_algorithm(v1::EC_P256);
  (*create.mutable_labels())["a"] = "1";
  (*create.mutable_labels())["b"] = "2";
  ASSERT_THAT(admin_.CreateKey(create), IsOk());

  v1::UpdateKeyRequest update;
  *update.mutable_key() = ByName("web");
  (*update.mutable_labels())["c"] = "3";
  update.add_remove_labels("a");
  update.add_remove_labels("absent");
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto response, admin_.UpdateKey(update));
  EXPECT_EQ(response.key().labels().size(), 2u);
  EXPECT_EQ(response.key().labels().at("b"), "2");
  EXPECT_EQ(response.key().labels().at("c"), "3");
  EXPECT_EQ(response.key().usage(), v1::TLS_SERVER);

  update.clear_remove_labels();
  update.set_replace_labels(true);
  update.set_usage(v1::GENERAL_SIGNING);
  ASSERT_THAT(Schedule("web", kDay), IsOk());  // Allowed in every state.
  OFFKEY_ASSERT_OK_AND_ASSIGN(response, admin_.UpdateKey(update));
  EXPECT_EQ(response.key().labels().size(), 1u);
  EXPECT_EQ(response.key().usage(), v1::GENERAL_SIGNING);
  EXPECT_EQ(response.key().state(), v1::PENDING_DESTRUCTION);
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto record, catalog_.Find(ByName("web")));
  EXPECT_EQ(record->metadata.usage(), v1::GENERAL_SIGNING);

  // Conflicts.
  update.add_remove_labels("c");
  EXPECT_THAT(admin_.UpdateKey(update), StatusIs(absl::StatusCode::kInvalidArgument));
  update.set_replace_labels(false);
  EXPECT_THAT(admin_.UpdateKey(update),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'c'")));
}

TEST_F(KeyAdminTest, ListKeysFiltersAndGetKeyShowsThePublicKey) {
  Create("ec");
  Create("ed", v1::ED25519_KEY);
  ASSERT_THAT(Disable("ed"), IsOk());
  v1::AdminListKeysRequest list;
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto listed, admin_.ListKeys(list));
  ASSERT_EQ(listed.keys_size(), 2);
  EXPECT_EQ(listed.keys(0).name(), "ec");
  list.set_state(v1::DISABLED);
  OFFKEY_ASSERT_OK_AND_ASSIGN(listed, admin_.ListKeys(list));
  ASSERT_EQ(listed.keys_size(), 1);
  EXPECT_EQ(listed.keys(0).name(), "ed");
  list.clear_state();
  list.set_algorithm(v1::EC_P256);
  OFFKEY_ASSERT_OK_AND_ASSIGN(listed, admin_.ListKeys(list));
  ASSERT_EQ(listed.keys_size(), 1);
  EXPECT_EQ(listed.keys(0).name(), "ec");

  v1::GetKeyRequest get;
  *get.mutable_key() = ByName("ec");
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto key, admin_.GetKey(get));
  EXPECT_THAT(key.key().public_key_pem(), HasSubstr("BEGIN PUBLIC KEY"));
  EXPECT_THAT(key.key().certificate_chain(), IsEmpty());
  *get.mutable_key() = ByName("nope");
  EXPECT_THAT(admin_.GetKey(get), StatusIs(absl::StatusCode::kNotFound));

  store_->SetHealthy(false);
  EXPECT_THAT(admin_.ListKeys({}), StatusIs(absl::StatusCode::kUnavailable));
  *get.mutable_key() = ByName("ec");
  EXPECT_THAT(admin_.GetKey(get), StatusIs(absl::StatusCode::kUnavailable));
}

// ------------------------------------------------------------------- ImportKey

TEST_F(KeyAdminTest, ImportsPkcs8PemDerAndEncrypted) {
  EvpPkeyPtr ec(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
  EvpPkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  EvpPkeyPtr rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  ASSERT_TRUE(ec && ed && rsa);
  struct Case {
    const char* name;
    EVP_PKEY* key;
    std::string input;
    std::string passphrase;
    v1::KeyAlgorithm algorithm;
  };
  const std::string der = hsm::testing::GeneratePkcs8(hsm::KeyAlgorithm::kEcP256);
  const Case cases[] = {
      {"pem", ec.get(), Pkcs8Pem(ec.get()), "", v1::EC_P384},
      {"encrypted", ed.get(), Pkcs8Pem(ed.get(), "correct horse"), "correct horse",
       v1::ED25519_KEY},
      {"rsa", rsa.get(), Pkcs8Pem(rsa.get()), "", v1::RSA_2048},
      {"der", nullptr, der, "", v1::EC_P256},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::ImportKeyRequest request;
    request.set_name(c.name);
    request.set_private_key(c.input);
    request.set_passphrase(c.passphrase);
    OFFKEY_ASSERT_OK_AND_ASSIGN(v1::ImportKeyResponse response,
                                admin_.ImportKey(request));
    EXPECT_EQ(response.key().algorithm(), c.algorithm);
    EXPECT_EQ(response.key().state(), v1::ENABLED);
    EXPECT_EQ(response.key().usage(), v1::TLS_SERVER);
    if (c.key != nullptr) {
      EXPECT_EQ(response.key().public_key_spki(), SpkiDer(c.key));
    }
    EXPECT_THAT(catalog_.Find(ByName(c.name)), IsOk());
  }
  // The same key again, under another name.
  v1::ImportKeyRequest again;
  again.set_name("again");
  again.set_private_key(Pkcs8Pem(ec.get()));
  EXPECT_THAT(admin_.ImportKey(again), StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST_F(KeyAdminTest, ImportRefusesWhatIsNotAUsablePkcs8Key) {
  EvpPkeyPtr ec(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  EvpPkeyPtr k1(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "secp256k1"));
  EvpPkeyPtr x25519(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"));
  ASSERT_TRUE(ec && k1 && x25519);
  const std::string passphrase = "s3cret-passphrase";
  struct Case {
    const char* what;
    std::string input;
    std::string passphrase;
    const char* message;
  };
  const Case cases[] = {
      {"legacy PEM", LegacyPem(ec.get()), "", "PKCS#8"},
      {"garbage", "this is not a key", "", "private_key"},
      {"empty", "", "", "required"},
      {"too big", std::string(16 * 1024 + 1, 'k'), "", "at most"},
      {"wrong passphrase", Pkcs8Pem(ec.get(), passphrase), "hunter2-bad", "passphrase"},
      {"missing passphrase", Pkcs8Pem(ec.get(), passphrase), "", "passphrase"},
      {"secp256k1", Pkcs8Pem(k1.get()), "", "P-256, P-384 or P-521"},
      {"x25519", Pkcs8Pem(x25519.get()), "", "not supported"},
      {"certificate", ca_.cert_pem, "", "private_key"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::ImportKeyRequest request;
    request.set_name("imported");
    request.set_private_key(c.input);
    request.set_passphrase(c.passphrase);
    absl::Status status = admin_.ImportKey(request).status();
    EXPECT_THAT(status,
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
    // Never echoes the secret.
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr(passphrase)));
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr("hunter2-bad")));
  }
  EXPECT_EQ(store_->CallCount(M::kImportKey), 0);
}

// ------------------------------------------------------------------- CreateCsr

TEST_F(KeyAdminTest, CsrVerifiesWithTheKeysPublicKey) {
  struct Case {
    v1::KeyAlgorithm algorithm;
    v1::SignatureScheme scheme;
  };
  const Case cases[] = {
      {v1::EC_P256, v1::SIGNATURE_SCHEME_UNSPECIFIED},
      {v1::EC_P384, v1::ECDSA_SECP384R1_SHA384},
      {v1::ED25519_KEY, v1::SIGNATURE_SCHEME_UNSPECIFIED},
      {v1::RSA_2048, v1::RSA_PKCS1_SHA384},
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(v1::KeyAlgorithm_Name(c.algorithm));
    v1::KeyInfo key = Create(absl::StrCat("key-", ++n), c.algorithm);
    v1::CreateCsrRequest request;
    *request.mutable_key() = ByName(key.name());
    request.set_subject("CN=www.example.com,O=Example");
    request.add_dns_names("www.example.com");
    request.add_ip_addresses("192.0.2.1");
    request.set_scheme(c.scheme);
    OFFKEY_ASSERT_OK_AND_ASSIGN(v1::CreateCsrResponse response,
                                admin_.CreateCsr(request));

    BioPtr bio(BIO_new_mem_buf(response.csr_pem().data(),
                               static_cast<int>(response.csr_pem().size())));
    std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)> csr(
        PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr), X509_REQ_free);
    ASSERT_NE(csr, nullptr) << DrainOpenSslErrors();
    // The DER is the same request.
    unsigned char* der = nullptr;
    const int der_len = i2d_X509_REQ(csr.get(), &der);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(der), der_len), response.csr_der());
    OPENSSL_free(der);

    // Signed by the key, and carrying its public key.
    EvpPkeyPtr public_key;
    ASSERT_THAT(ParseSpki(key.public_key_spki(), &public_key), IsOk());
    EXPECT_EQ(X509_REQ_verify(csr.get(), public_key.get()), 1) << DrainOpenSslErrors();
    EXPECT_EQ(SpkiDer(X509_REQ_get0_pubkey(csr.get())), key.public_key_spki());
    EvpPkeyPtr other(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    EXPECT_NE(X509_REQ_verify(csr.get(), other.get()), 1);
    DrainOpenSslErrors();

    EXPECT_EQ(X509NameText(X509_REQ_get_subject_name(csr.get())),
              "CN=www.example.com,O=Example");
    STACK_OF(X509_EXTENSION)* extensions = X509_REQ_get_extensions(csr.get());
    ASSERT_NE(extensions, nullptr);
    GeneralNamesPtr sans(static_cast<GENERAL_NAMES*>(
        X509V3_get_d2i(extensions, NID_subject_alt_name, nullptr, nullptr)));
    sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
    ASSERT_NE(sans, nullptr);
    EXPECT_EQ(sk_GENERAL_NAME_num(sans.get()), 2);
  }
}

TEST_F(KeyAdminTest, CsrRefusals) {
  Create("web");
  v1::CreateCsrRequest request;
  *request.mutable_key() = ByName("web");
  request.set_subject("CN=www.example.com");
  request.set_scheme(v1::RSA_PKCS1_SHA256);  // Not for an EC key.
  EXPECT_THAT(admin_.CreateCsr(request), StatusIs(absl::StatusCode::kInvalidArgument));
  request.clear_scheme();
  request.set_subject("NOTATYPE=x");
  EXPECT_THAT(admin_.CreateCsr(request), StatusIs(absl::StatusCode::kInvalidArgument));
  request.set_subject("");
  EXPECT_THAT(admin_.CreateCsr(request), StatusIs(absl::StatusCode::kInvalidArgument));
  request.set_subject("CN=www.example.com");
  ASSERT_THAT(Disable("web"), IsOk());
  EXPECT_THAT(admin_.CreateCsr(request),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ENABLED")));
  ASSERT_THAT(Enable("web"), IsOk());
  store_->Fail(M::kSign, absl::UnavailableError("token removed"));
  EXPECT_THAT(admin_.CreateCsr(request), StatusIs(absl::StatusCode::kUnavailable));
  store_->ClearAll();
  EXPECT_THAT(admin_.CreateCsr(request), IsOk());
  *request.mutable_key() = ByName("nope");
  EXPECT_THAT(admin_.CreateCsr(request), StatusIs(absl::StatusCode::kNotFound));
}

// ----------------------------------------------------------- AttachCertificate

TEST_F(KeyAdminTest, AttachesAMatchingChain) {
  v1::KeyInfo key = Create("web");
  service::dev::IssuedCert leaf = CertFor(key, now_ + absl::Hours(24 * 90));
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto response,
                              AttachDer("web", {leaf.cert_pem, ca_.cert_pem}));
  EXPECT_THAT(response.key().certificate().subject(), HasSubstr("CN=www.example.com"));
  EXPECT_THAT(response.key().certificate().dns_names(), ElementsAre("www.example.com"));

  v1::GetKeyRequest get;
  *get.mutable_key() = ByName("web");
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto shown, admin_.GetKey(get));
  EXPECT_THAT(shown.key().certificate_chain(),
              ElementsAre(Der(leaf.cert_pem), Der(ca_.cert_pem)));
  // The data plane finds the key by its certificate now.
  v1::KeyRef by_cert;
  by_cert.set_cert_sha256(response.key().certificate().sha256());
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto record, catalog_.Find(by_cert));
  EXPECT_EQ(record->info.name, "web");

  // PEM, leaf only, replaces the chain.
  v1::AttachCertificateRequest pem;
  *pem.mutable_key() = ByName("web");
  pem.set_chain_pem(leaf.cert_pem);
  ASSERT_THAT(admin_.AttachCertificate(pem), IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(shown, admin_.GetKey(get));
  EXPECT_THAT(shown.key().certificate_chain(), ElementsAre(Der(leaf.cert_pem)));
}

// Found by attach_certificate_fuzz: a certificate that parses but does not re-encode to
// the same bytes (here, unused bits in the signature BIT STRING) was attached altered.
TEST_F(KeyAdminTest, AttachRefusesCertificatesThatAreNotCanonicalDer) {
  v1::KeyInfo key = Create("web");
  service::dev::IssuedCert leaf = CertFor(key, now_ + absl::Hours(24 * 90));
  std::string der = Der(leaf.cert_pem);
  // The signature BIT STRING ends the certificate: its unused-bits byte comes just
  // before the signature bytes.
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  ASSERT_NE(cert, nullptr);
  const ASN1_BIT_STRING* signature = nullptr;
  X509_get0_signature(&signature, nullptr, cert.get());
  const size_t unused_bits = der.size() - ASN1_STRING_length(signature) - 1;
  ASSERT_EQ(der[unused_bits], '\0');
  der[unused_bits] = 2;
  // DER allows unused bits only if they are zero, and OpenSSL clears them on parsing:
  // set the last one, or a signature that happens to end in two zero bits (one in
  // four) is valid DER and rightly attached.
  der.back() = static_cast<char>(der.back() | 1);

  v1::AttachCertificateRequest request;
  *request.mutable_key() = ByName("web");
  request.mutable_chain_der()->add_certificates(der);
  EXPECT_THAT(admin_.AttachCertificate(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a DER")));
  request.set_chain_pem("-----BEGIN CERTIFICATE-----\n" + absl::Base64Escape(der) +
                        "\n-----END CERTIFICATE-----\n");
  EXPECT_THAT(admin_.AttachCertificate(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a DER")));
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<std::string> stored,
                              store_->GetCertificateChain(key.key_id()));
  EXPECT_THAT(stored, ::testing::IsEmpty());
}

TEST_F(KeyAdminTest, AttachRefusesCertificatesThatDoNotMatchOrDoNotParse) {
  v1::KeyInfo key = Create("web");
  v1::KeyInfo other = Create("other");
  service::dev::IssuedCert leaf = CertFor(key, now_ + absl::Hours(24 * 90));
  service::dev::IssuedCert others = CertFor(other, now_ + absl::Hours(24 * 90));
  const int puts = store_->CallCount(M::kPutCertificateChain);

  // Another key's certificate: refused even with force.
  EXPECT_THAT(AttachDer("web", {others.cert_pem}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("another key")));
  EXPECT_THAT(AttachDer("web", {others.cert_pem}, /*force=*/true),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // The CA's own certificate first (chain out of order).
  EXPECT_THAT(AttachDer("web", {ca_.cert_pem, leaf.cert_pem}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // An "issuer" with the same name that did not issue the leaf.
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto stranger_ca, service::dev::MakeCa("offkey test CA"));
  EXPECT_THAT(AttachDer("web", {leaf.cert_pem, stranger_ca.cert_pem}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("issuing order")));

  // Garbage in every form.
  v1::AttachCertificateRequest request;
  *request.mutable_key() = ByName("web");
  request.mutable_chain_der()->add_certificates("garbage");
  EXPECT_THAT(admin_.AttachCertificate(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a DER")));
  request.mutable_chain_der()->set_certificates(0, Der(leaf.cert_pem) + "trailing");
  EXPECT_THAT(admin_.AttachCertificate(request),
              StatusIs(absl::StatusCode::kInvalidArgument));
  request.set_chain_pem("garbage");
  EXPECT_THAT(admin_.AttachCertificate(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chain")));
  request.set_chain_pem(leaf.cert_pem + std::string(ca_.key_pem.view()));
  EXPECT_THAT(admin_.AttachCertificate(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PRIVATE KEY")));
  request.set_chain_pem(
      "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END "
      "CERTIFICATE-----\n");
  EXPECT_THAT(admin_.AttachCertificate(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not parse")));
  request.clear_chain_pem();
  EXPECT_THAT(admin_.AttachCertificate(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1..10")));
  std::vector<std::string> eleven(11, leaf.cert_pem);
  EXPECT_THAT(AttachDer("web", eleven), StatusIs(absl::StatusCode::kInvalidArgument));

  EXPECT_EQ(store_->CallCount(M::kPutCertificateChain), puts);
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto record, catalog_.Find(ByName("web")));
  EXPECT_THAT(record->chain, IsEmpty());
  // Unknown key.
  EXPECT_THAT(AttachDer("nope", {leaf.cert_pem}), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(KeyAdminTest, AttachRefusesExpiredOrNotYetValidUnlessForced) {
  v1::KeyInfo key = Create("web");
  service::dev::IssuedCert leaf = CertFor(key, now_ + absl::Hours(24));
  now_ += absl::Hours(48);
  EXPECT_THAT(AttachDer("web", {leaf.cert_pem}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("expired")));
  now_ -= absl::Hours(72);
  EXPECT_THAT(
      AttachDer("web", {leaf.cert_pem}),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not yet valid")));
  EXPECT_THAT(AttachDer("web", {leaf.cert_pem}, /*force=*/true), IsOk());
}

// -------------------------------------------------------------------- Ticket-key sets

TEST_F(KeyAdminTest, TicketKeySetPeriodsAndEpochsByTheClock) {
  v1::CreateTicketKeySetRequest request;
  request.set_name("edge");
  absl::StatusOr<v1::CreateTicketKeySetResponse> created =
      admin_.CreateTicketKeySet(request);
  ASSERT_THAT(created, IsOk());
  // 0 is one hour; epochs and the next rotation follow the injected clock.
  EXPECT_EQ(created->ticket_key_set().rotation_period_seconds(), 3600);
  EXPECT_EQ(created->ticket_key_set().current_epoch(), 1800000000 / 3600);
  EXPECT_EQ(created->ticket_key_set().next_rotation_time(),
            (1800000000 / 3600 + 1) * 3600);
  now_ += absl::Hours(1);
  v1::GetTicketKeySetRequest get;
  get.set_name("edge");
  absl::StatusOr<v1::GetTicketKeySetResponse> got = admin_.GetTicketKeySet(get);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->ticket_key_set().current_epoch(), 1800000000 / 3600 + 1);

  for (int64_t period : {int64_t{10}, int64_t{604800}}) {
    request.set_name(absl::StrCat("p", period));
    request.set_rotation_period_seconds(period);
    absl::StatusOr<v1::CreateTicketKeySetResponse> made =
        admin_.CreateTicketKeySet(request);
    ASSERT_THAT(made, IsOk()) << period;
    EXPECT_EQ(made->ticket_key_set().rotation_period_seconds(), period);
    EXPECT_EQ(made->ticket_key_set().current_epoch(), absl::ToUnixSeconds(now_) / period);
  }
  for (int64_t period : {int64_t{9}, int64_t{-1}, int64_t{604801}}) {
    request.set_name("bad-period");
    request.set_rotation_period_seconds(period);
    EXPECT_THAT(admin_.CreateTicketKeySet(request),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << period;
  }
  request.set_rotation_period_seconds(0);
  for (const char* name : {"", "-edge", "a b"}) {
    request.set_name(name);
    EXPECT_THAT(admin_.CreateTicketKeySet(request),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << name;
  }
  EXPECT_EQ(store_->CallCount(FakeKeyStore::Method::kCreateTicketKeySet), 3);

  absl::StatusOr<v1::ListTicketKeySetsResponse> list = admin_.ListTicketKeySets({});
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->ticket_key_sets_size(), 3);
  EXPECT_EQ(list->ticket_key_sets(0).name(), "edge");
  EXPECT_EQ(list->ticket_key_sets(1).name(), "p10");
  EXPECT_EQ(list->ticket_key_sets(2).name(), "p604800");
}

TEST_F(KeyAdminTest, DestroyTicketKeySetNeedsForceAndTellsTheDataPlane) {
  std::vector<std::string> destroyed;
  admin_.SetTicketKeySetDestroyedHook(
      [&destroyed](const std::string& name) { destroyed.push_back(name); });
  v1::CreateTicketKeySetRequest create;
  create.set_name("edge");
  ASSERT_THAT(admin_.CreateTicketKeySet(create), IsOk());
  v1::DestroyTicketKeySetRequest request;
  request.set_name("edge");
  EXPECT_THAT(admin_.DestroyTicketKeySet(request),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(destroyed.empty());
  request.set_force(true);
  ASSERT_THAT(admin_.DestroyTicketKeySet(request), IsOk());
  EXPECT_EQ(destroyed, std::vector<std::string>{"edge"});
  EXPECT_THAT(admin_.DestroyTicketKeySet(request), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(destroyed.size(), 1u);
  v1::GetTicketKeySetRequest get;
  get.set_name("edge");
  EXPECT_THAT(admin_.GetTicketKeySet(get), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace offkey::service::admin
