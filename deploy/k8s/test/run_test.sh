#!/bin/bash
# Bazel entry point for the Kubernetes manifest checks (k8s.test.js, node's test runner).
# Tagged "local": it runs outside the sandbox and uses the source tree's deploy/k8s
# (kustomize refuses files reached through runfiles symlinks that leave its root), the
# node_modules that tools/setup.sh installs there with `npm ci`, and the machine's
# kubectl and node. Writes one JUnit testcase per node test to $XML_OUTPUT_FILE, so
# tools/test.sh counts every check.
set -euo pipefail

runfiles="${TEST_SRCDIR:?run me with bazel test}/${TEST_WORKSPACE:-offkey}"
# The data files are symlinks into the source tree; follow one home.
test_dir=$(dirname "$(readlink -f "$runfiles/deploy/k8s/test/k8s.test.js")")

for tool in node kubectl protoc; do
  if ! command -v "$tool" >/dev/null; then
    echo "manifests_test: $tool is missing (tools/setup.sh says how to get it)" >&2
    exit 1
  fi
done
if [[ ! -d "$test_dir/node_modules/kubernetes-models" || ! -d "$test_dir/node_modules/js-yaml" ]]; then
  echo "manifests_test: $test_dir/node_modules is missing: run tools/setup.sh (npm ci)" >&2
  exit 1
fi

OFFKEY_K8S_DIR=$(dirname "$test_dir")
KUBECTL=$(command -v kubectl)
export OFFKEY_K8S_DIR KUBECTL
export OFFKEY_CONFIG_CHECK="$runfiles/deploy/k8s/offkeyd_config_check"
export OFFKEY_PROTO_DIR="$runfiles/proto"

reporters=(--test-reporter=spec --test-reporter-destination=stdout)
# node's JUnit reporter came with node 20.13 / 21.3; with an older node (Debian 12's 18)
# Bazel writes its own report, one testcase for the whole run.
if [[ -n "${XML_OUTPUT_FILE:-}" ]] &&
   node -e "process.exit(require('node:test/reporters').junit ? 0 : 1)" 2>/dev/null; then
  reporters+=(--test-reporter=junit --test-reporter-destination="$XML_OUTPUT_FILE")
fi
cd "$test_dir"
exec node --test "${reporters[@]}" k8s.test.js
