// offkey_build_info{version,revision} 1: which build is serving, the usual Prometheus
// idiom for joining build facts onto other series.
#ifndef OFFKEY_SERVICE_METRICS_BUILD_INFO_GAUGE_H_
#define OFFKEY_SERVICE_METRICS_BUILD_INFO_GAUGE_H_

#include "prometheus/registry.h"

namespace offkey::service::metrics {

// Registers the gauge in `registry` with the labels of offkey::GetBuildInfo() (set by
// main() before the registry is made; "unknown" otherwise).
void AddBuildInfoGauge(prometheus::Registry& registry);

}  // namespace offkey::service::metrics

#endif  // OFFKEY_SERVICE_METRICS_BUILD_INFO_GAUGE_H_
