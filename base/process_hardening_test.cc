#include "base/process_hardening.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey {
namespace {

using ::offkey::testing::IsOk;

TEST(ProcessHardeningTest, DisableCoreDumpsMakesTheProcessUndumpable) {
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_CORE, &before), 0);
  ASSERT_THAT(DisableCoreDumps(), IsOk());
  EXPECT_EQ(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
  rlimit after{};
  ASSERT_EQ(getrlimit(RLIMIT_CORE, &after), 0);
  EXPECT_EQ(after.rlim_cur, 0u);
  EXPECT_EQ(after.rlim_max, 0u);
  // Idempotent.
  EXPECT_THAT(DisableCoreDumps(), IsOk());
}

}  // namespace
}  // namespace offkey
