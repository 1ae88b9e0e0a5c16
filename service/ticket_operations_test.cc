// Unit tests of the ticket operations (Operations::GetTicketKeys, SealTicket,
// UnsealTicket) over a FakeKeyStore: what reaches the store, and its errors.
// tests/ticket_keys_test.cc covers the same over gRPC on a real token.
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "base/testing/status_matchers.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "hsm/testing/fake_key_store.h"
#include "service/config/policy.h"
#include "service/key_catalog.h"
#include "service/operations.h"

namespace offkey::service {
namespace {

using ::offkey::hsm::testing::FakeKeyStore;
using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using M = FakeKeyStore::Method;

constexpr char kEdge[] = "spiffe://example.org/edge";
constexpr char kStranger[] = "spiffe://example.org/stranger";

std::shared_ptr<const config::Policy> TicketPolicy() {
  offkey::v1::PolicyConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        grants {
          identities: "spiffe://example.org/edge"
          operations: [ GET_TICKET_KEYS, SEAL_TICKET, UNSEAL_TICKET ]
          ticket_key_sets: [ "edge", "absent" ]
        }
      )pb",
      &config));
  absl::StatusOr<config::Policy> policy =
      config::Policy::Create(config, google::protobuf::RepeatedPtrField<std::string>());
  EXPECT_THAT(policy, IsOk());
  return std::make_shared<const config::Policy>(*std::move(policy));
}

class TicketOperationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(store_->CreateTicketKeySet("edge", absl::Hours(1)), IsOk());
  }
  offkey::v1::GetTicketKeysRequest Get(const std::string& set) {
    offkey::v1::GetTicketKeysRequest request;
    request.set_ticket_key_set(set);
    return request;
  }
  absl::StatusOr<offkey::v1::SealTicketResponse> Seal(const std::string& caller,
                                                      const std::string& plaintext) {
    offkey::v1::SealTicketRequest request;
    request.set_ticket_key_set("edge");
    request.set_plaintext(plaintext);
    return ops_.SealTicket({caller}, request, absl::InfiniteFuture());
  }
  absl::StatusOr<offkey::v1::UnsealTicketResponse> Unseal(const std::string& sealed) {
    offkey::v1::UnsealTicketRequest request;
    request.set_ticket_key_set("edge");
    request.set_sealed(sealed);
    return ops_.UnsealTicket({kEdge}, request, absl::InfiniteFuture());
  }
  int StoreCalls() const {
    return store_->CallCount(M::kFindTicketKeySet) +
           store_->CallCount(M::kDeriveTicketEpochSecret);
  }

  std::unique_ptr<FakeKeyStore> store_ = FakeKeyStore::Create();
  KeyCatalog catalog_{store_.get(), absl::Hours(1), absl::Hours(1)};
  Operations ops_{store_.get(), &catalog_, TicketPolicy()};
};

TEST_F(TicketOperationsTest, StoreIsAskedOncePerEpochNotPerCall) {
  absl::StatusOr<offkey::v1::SealTicketResponse> first = Seal(kEdge, "session state");
  ASSERT_THAT(first, IsOk());
  for (int i = 0; i < 20; ++i) {
    ASSERT_THAT(ops_.GetTicketKeys({kEdge}, Get("edge"), absl::InfiniteFuture()), IsOk());
    ASSERT_THAT(Seal(kEdge, "session state"), IsOk());
    absl::StatusOr<offkey::v1::UnsealTicketResponse> opened = Unseal(first->sealed());
    ASSERT_THAT(opened, IsOk());
    EXPECT_EQ(opened->result(), offkey::v1::UnsealTicketResponse::OPENED);
  }
  // One lookup of the set and one derivation for each of the three epochs (two more,
  // should the hour have turned during the test).
  EXPECT_EQ(store_->CallCount(M::kFindTicketKeySet), 1);
  EXPECT_GE(store_->CallCount(M::kDeriveTicketEpochSecret), 3);
  EXPECT_LE(store_->CallCount(M::kDeriveTicketEpochSecret), 5);
}

TEST_F(TicketOperationsTest, RefusedBeforeTheStoreIsAsked) {
  EXPECT_THAT(Seal(kStranger, "session state"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(ops_.GetTicketKeys({kStranger}, Get("edge"), absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(ops_.GetTicketKeys({""}, Get("edge"), absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(ops_.GetTicketKeys({kEdge}, Get("-bad"), absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(StoreCalls(), 0);
  // Granted but absent: the same code, after asking the store.
  EXPECT_THAT(ops_.GetTicketKeys({kEdge}, Get("absent"), absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(TicketOperationsTest, StoreErrorsAreReturned) {
  store_->Fail(M::kDeriveTicketEpochSecret, absl::UnavailableError("token removed"));
  EXPECT_THAT(Seal(kEdge, "session state"), StatusIs(absl::StatusCode::kUnavailable));
  absl::StatusOr<offkey::v1::GetTicketKeysResponse> keys =
      ops_.GetTicketKeys({kEdge}, Get("edge"), absl::InfiniteFuture());
  EXPECT_THAT(keys, StatusIs(absl::StatusCode::kUnavailable));
  store_->Clear(M::kDeriveTicketEpochSecret);
  absl::StatusOr<offkey::v1::SealTicketResponse> sealed = Seal(kEdge, "session state");
  ASSERT_THAT(sealed, IsOk());
  store_->Fail(M::kDeriveTicketEpochSecret, absl::UnavailableError("token removed"));
  // The current epoch is cached: unsealing it needs no store call.
  absl::StatusOr<offkey::v1::UnsealTicketResponse> opened = Unseal(sealed->sealed());
  ASSERT_THAT(opened, IsOk());
  EXPECT_EQ(opened->result(), offkey::v1::UnsealTicketResponse::OPENED);
  // The set itself gone: refused like a set never granted.
  store_->Clear(M::kDeriveTicketEpochSecret);
  ASSERT_THAT(store_->DestroyTicketKeySet("edge"), IsOk());
  ops_.ticket_key_sets().Forget("edge");
  EXPECT_THAT(Unseal(sealed->sealed()), StatusIs(absl::StatusCode::kPermissionDenied));
}

}  // namespace
}  // namespace offkey::service
