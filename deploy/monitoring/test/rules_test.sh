#!/bin/bash
# Checks the rules with promtool and runs their unit tests; checks that every dashboard
# query parses (promtool, as a rule) and names only recording rules the rules file
# defines, and that the ServiceMonitor scrapes the "metrics" port.
set -euo pipefail

dir="${TEST_SRCDIR}/offkey/deploy/monitoring"
promtool check rules "${dir}/offkeyd-rules.yaml"
# promtool resolves rule_files relative to the test file.
(cd "${dir}/test" && promtool test rules offkeyd-rules.test.yaml)

/usr/bin/python3 - "${dir}" "${TEST_TMPDIR}/dashboard-rules.yaml" <<'PY'
import json, re, sys
import yaml

d, out = sys.argv[1], sys.argv[2]
rules = yaml.safe_load(open(f"{d}/offkeyd-rules.yaml"))
recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
dashboard = json.load(open(f"{d}/grafana-dashboard.json"))
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
assert exprs, "the dashboard has no queries"
for expr in exprs:
    for name in re.findall(r"offkey:[a-z0-9_:]+", expr):
        assert name in recorded, f"dashboard uses {name}, which no rule records"
monitor = yaml.safe_load(open(f"{d}/servicemonitor.yaml"))
assert monitor["kind"] == "ServiceMonitor"
assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
# Grafana variables stand for a label value or a regular expression.
exprs = [e.replace("$job", "offkeyd").replace("$instance", ".*") for e in exprs]
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
    {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}]},
    open(out, "w"))
print(f"dashboard: {len(exprs)} queries; servicemonitor ok")
PY
promtool check rules "${TEST_TMPDIR}/dashboard-rules.yaml"
echo PASS
