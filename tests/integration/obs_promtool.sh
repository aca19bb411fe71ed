#!/usr/bin/env bash
# The alert rules are valid (`promtool check rules`) and behave as their unit
# tests say (`promtool test rules`); every alert has a runbook entry in
# docs/operations.md and every metric an alert uses is in the catalogue.
# timeout: 60
. "$(dirname "$0")/../lib/common.sh"

command -v promtool >/dev/null || fail "promtool missing: run scripts/install-deps (Debian package prometheus)"
dir=$SHED_ROOT/deploy/prometheus

step "promtool check rules"
promtool check rules "$dir/alerts.yml"

step "promtool test rules"
(cd "$dir" && promtool test rules alerts_test.yml)

step "every alert is tested, has a runbook entry and uses catalogue metrics"
ops=$SHED_ROOT/docs/operations.md
[ -f "$ops" ] || fail "docs/operations.md missing"
alerts=$(sed -n 's/^ *- alert: *//p' "$dir/alerts.yml")
[ -n "$alerts" ] || fail "no alerts found"
for a in $alerts; do
    grep -q "alertname: $a\$" "$dir/alerts_test.yml" || fail "alert $a has no promtool test"
    grep -qi "^#\+ *$a\$" "$ops" || fail "alert $a has no runbook section '### $a' in docs/operations.md"
done
for m in $(grep -o '\(shed\|process\)_[a-z_]*' "$dir/alerts.yml" | sort -u); do
    grep -q "\`$m\`" "$ops" || fail "metric $m (used by an alert) is not in the catalogue of docs/operations.md"
done

step "every metric registered in src/obs/catalog.c is documented"
for m in $(grep -o '"\(shed\|process\)_[a-z_]*"' "$SHED_ROOT/src/obs/catalog.c" | tr -d '"' | sort -u); do
    grep -q "\`$m\`" "$ops" || fail "metric $m (src/obs/catalog.c) is not documented in docs/operations.md"
done
echo "promtool ok"
