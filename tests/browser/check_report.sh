#!/usr/bin/env bash
# Loads a `sim report` page in headless Chromium and checks it: the page's
# script ran without errors and drew one lane per host of the scenario.
# Usage: tests/browser/check_report.sh [SCREENSHOT.png]
# Needs Debian's chromium (.ci/run installs it); CHROMIUM overrides the binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
chromium=${CHROMIUM:-chromium}
scenario=scenarios/breaker-recovery.toml
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cargo run -q -p sim -- report "$scenario" --seed 1 -o "$out/run.html"
# The flags this machine needs: no sandbox as root, and no background
# networking (the network is closed; Chromium would retry forever).
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --user-data-dir="$out/profile")
"$chromium" "${flags[@]}" --virtual-time-budget=5000 --dump-dom "file://$out/run.html" \
  >"$out/dom.html" 2>"$out/chromium.log" || { cat "$out/chromium.log"; exit 1; }

status=$(grep -o 'data-status="[^"]*"' "$out/dom.html" | head -1 | sed 's/data-status="\(.*\)"/\1/')
lanes=$(grep -o 'data-lanes="[0-9]*"' "$out/dom.html" | head -1 | grep -o '[0-9]*' || true)
marks=$(grep -o 'data-marks="[0-9]*"' "$out/dom.html" | head -1 | grep -o '[0-9]*' || true)
# Expected lanes: every server and client host (`sim check` counts them).
counts=$(cargo run -q -p sim -- check "$scenario" | grep -o '[0-9]* servers, [0-9]* clients')
expected=$(( $(echo "$counts" | awk '{print $1}') + $(echo "$counts" | awk '{print $3}') ))

echo "report page: status=$status lanes=${lanes:-none} (expected $expected) marks=${marks:-none}"
[ "$status" = "ok" ] || { echo "FAIL: the page's script did not finish cleanly"; exit 1; }
[ "${lanes:-0}" = "$expected" ] || { echo "FAIL: wrong number of lanes"; exit 1; }
[ "${marks:-0}" -gt 100 ] || { echo "FAIL: too few marks drawn"; exit 1; }

if [ $# -ge 1 ]; then
  "$chromium" "${flags[@]}" --window-size=1320,760 --screenshot="$1" "file://$out/run.html" \
    2>>"$out/chromium.log" >/dev/null
  echo "screenshot: $1"
fi
echo "report page: ok"
