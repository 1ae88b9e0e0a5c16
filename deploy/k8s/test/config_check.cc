// offkeyd_config_check: loads configuration files with offkeyd's own loader
// (service/config/config_loader.h), as `offkeyd --config=FILE` would before it opens the
// HSM, and prints the verdict for each. The Kubernetes manifests' test runs it on every
// offkeyd.textproto that kustomize renders into a ConfigMap.
//
// Usage: offkeyd_config_check FILE...
// Exit status: 0 every file loads and validates as complete (TLS, HSM and PIN source
// present), 1 any does not (its errors printed with file:line), 2 usage.
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "offkey/v1/config.pb.h"
#include "service/config/config_loader.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: offkeyd_config_check FILE...\n");
    return 2;
  }
  int rc = 0;
  for (int i = 1; i < argc; ++i) {
    // kComplete: a deployment passes no flags that could fill gaps, so the file alone
    // must be enough to start.
    absl::StatusOr<offkey::v1::ServerConfig> config =
        offkey::service::config::LoadConfigFile(
            argv[i], offkey::service::config::Completeness::kComplete);
    if (config.ok()) {
      printf("OK %s\n", argv[i]);
    } else {
      printf("INVALID %s\n%s\n", argv[i], std::string(config.status().message()).c_str());
      rc = 1;
    }
  }
  return rc;
}
