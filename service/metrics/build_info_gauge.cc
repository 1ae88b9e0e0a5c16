#include "service/metrics/build_info_gauge.h"

#include "base/build_info.h"
#include "prometheus/gauge.h"

namespace offkey::service::metrics {

void AddBuildInfoGauge(prometheus::Registry& registry) {
  const BuildInfo& info = GetBuildInfo();
  prometheus::BuildGauge()
      .Name("offkey_build_info")
      .Help("Always 1; its labels say which build of offkeyd this is.")
      .Register(registry)
      .Add({{"version", info.version}, {"revision", info.revision}})
      .Set(1);
}

}  // namespace offkey::service::metrics
