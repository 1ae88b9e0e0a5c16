// The proto <-> KeyAlgorithm pairs, and the client's small table of
// offkey.v1.KeyAlgorithm (client/ links proto only) checked row by row against hsm's
// key-algorithm table, so the three stay one fact.
#include "service/proto_convert.h"

#include "client/key_reference.h"
#include "gtest/gtest.h"
#include "hsm/key_types.h"

namespace offkey::service {
namespace {

TEST(ProtoConvertTest, EveryKeyAlgorithmRoundTripsThroughTheProto) {
  for (const hsm::KeyAlgorithmInfo& row : hsm::AllKeyAlgorithms()) {
    SCOPED_TRACE(row.name);
    const offkey::v1::KeyAlgorithm proto = ToProtoAlgorithm(row.algorithm);
    EXPECT_NE(proto, offkey::v1::KEY_ALGORITHM_UNSPECIFIED);
    EXPECT_EQ(FromProtoAlgorithm(proto), row.algorithm);
  }
  EXPECT_EQ(ToProtoAlgorithm(hsm::KeyAlgorithm::kUnknown),
            offkey::v1::KEY_ALGORITHM_UNSPECIFIED);
  EXPECT_EQ(FromProtoAlgorithm(offkey::v1::KEY_ALGORITHM_UNSPECIFIED),
            hsm::KeyAlgorithm::kUnknown);
}

TEST(ProtoConvertTest, TheClientsTableAgreesWithHsmsTable) {
  int rows = 0;
  for (const hsm::KeyAlgorithmInfo& row : hsm::AllKeyAlgorithms()) {
    SCOPED_TRACE(row.name);
    const client::KeyAlgorithmTraits* traits =
        client::FindKeyAlgorithmTraits(ToProtoAlgorithm(row.algorithm));
    ASSERT_NE(traits, nullptr) << "client/key_reference.cc lacks this algorithm";
    EXPECT_STREQ(traits->openssl_type, row.openssl_type);
    // The client leaves bits 0 where the type alone decides (Ed25519).
    if (row.family != hsm::KeyFamily::kEd25519) {
      EXPECT_EQ(traits->bits, row.bits);
    }
    ++rows;
  }
  EXPECT_GT(rows, 0);
  EXPECT_EQ(client::FindKeyAlgorithmTraits(offkey::v1::KEY_ALGORITHM_UNSPECIFIED),
            nullptr);
}

}  // namespace
}  // namespace offkey::service
