#!/bin/sh
# Bazel's workspace status command (.bazelrc): the version stamped into offkeyd and
# offkeyctl. STABLE_ keys are part of the stamped actions' keys, so only those actions
# rerun when the version changes; Bazel itself adds BUILD_TIMESTAMP (volatile). Outside
# a git checkout, or without git, both say "unknown".
version=$(git describe --always --dirty 2>/dev/null) || version=unknown
revision=$(git rev-parse HEAD 2>/dev/null) || revision=unknown
echo "STABLE_OFFKEY_VERSION ${version:-unknown}"
echo "STABLE_OFFKEY_REVISION ${revision:-unknown}"
