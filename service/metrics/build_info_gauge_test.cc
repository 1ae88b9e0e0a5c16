#include "service/metrics/build_info_gauge.h"

#include "absl/strings/match.h"
#include "base/build_info.h"
#include "gtest/gtest.h"
#include "service/metrics/metrics.h"

namespace offkey::service::metrics {
namespace {

TEST(BuildInfoGaugeTest, MetricsCarryTheBuildInfoSetByMain) {
  BuildInfo info;
  info.version = "v2.0.0-1-g1234567";
  info.revision = "1234567890abcdef";
  SetBuildInfo(info);
  Metrics metrics;
  const std::string scrape = metrics.Scrape();
  EXPECT_TRUE(absl::StrContains(
      scrape,
      "offkey_build_info{revision=\"1234567890abcdef\",version=\"v2.0.0-1-g1234567\"} 1"))
      << scrape;
}

}  // namespace
}  // namespace offkey::service::metrics
