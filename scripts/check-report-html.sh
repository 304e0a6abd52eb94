#!/usr/bin/env bash
# Opens a `precept eval` report.html, or a pipeline's run report, in headless Chromium and checks
# that it renders offline: no network request from the page (Chromium's net log lists none with
# the page as initiator), no console error, and the parsed page holds the verdict, the rate charts
# (SVG) and the tables (and, for a run report, the examples and the training curves).
# Writes a screenshot beside the report (report.png) to look at.
#
#   scripts/check-report-html.sh eval-report/report.html
#
# CI has no Chromium: there an in-Rust test checks that the page references no external URL.
set -euo pipefail

report="$(realpath "${1:?usage: $0 path/to/report.html}")"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[ -n "$browser" ] || { echo "no Chromium found (apt-get install -y chromium)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run
  --disable-component-update --disable-sync --user-data-dir="$work/profile" --enable-logging=stderr --v=0)

"$browser" "${flags[@]}" --log-net-log="$work/net.json" --window-size=1200,2600 \
  --screenshot="${report%.html}.png" "file://$report" 2>"$work/stderr.txt" >/dev/null || true
"$browser" "${flags[@]}" --dump-dom "file://$report" 2>>"$work/stderr.txt" >"$work/dom.html" || true

status=0
# Requests the page itself starts carry its origin ("null" for file://) as initiator; Chromium's
# own background requests (updates, time, accounts) say "not an origin" and are not the page's.
page_requests="$(python3 - "$work/net.json" <<'PY'
import json, sys
events = json.load(open(sys.argv[1]))["events"]
urls = {e["params"]["url"] for e in events
        if "initiator" in e.get("params", {}) and e["params"]["initiator"] != "not an origin"}
print("\n".join(sorted(u for u in urls if not u.startswith("file:"))))
PY
)"
if [ -n "$page_requests" ]; then
  echo "$page_requests"
  echo "FAIL: the page made network requests (listed above)" >&2
  status=1
fi
if grep -E 'CONSOLE|Uncaught|ERROR:.*(file://|render)' "$work/stderr.txt" | grep -v -E 'dbus|gcm|GPU|gpu|viz|angle|sandbox' ; then
  echo "FAIL: console or render errors (listed above)" >&2
  status=1
fi
# A pipeline's run report, or a `precept eval` report.
if grep -q '<title>precept run' "$report"; then
  needed=('<svg' 'exit code' 'Per category and framing' 'Critique → revision' 'DPO rewards/margins')
else
  needed=('<svg' 'exit code' 'Per category and framing' 'Flipped cases')
fi
for needed in "${needed[@]}"; do
  grep -q "$needed" "$work/dom.html" || { echo "FAIL: the rendered page lacks \`$needed\`" >&2; status=1; }
done
[ -s "${report%.html}.png" ] || { echo "FAIL: no screenshot was written" >&2; status=1; }
[ "$status" = 0 ] && echo "ok: $report renders offline without errors; screenshot ${report%.html}.png"
exit "$status"
