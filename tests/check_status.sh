#!/usr/bin/env bash
# `crmstream status` as a person sees it: run in a tmux pane against a real
# server while traffic flows, read the screen with capture-pane, and check
# the live view shows the rates, lag and latency lines with real numbers;
# then the piped (JSON lines) mode. Prints TAP.
set -u
bin="$PWD/${1:-build}/crmstream"
dir=$(mktemp -d /tmp/crmstream-status-XXXXXX)
sock="$dir/tmux.sock"
pid=
cleanup() {
  tmux -S "$sock" kill-server 2>/dev/null
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"
}
trap cleanup EXIT
printf 'routing:\n  reps:\n    - {id: rep_a}\n' > "$dir/config.yaml"
"$bin" serve --config "$dir/config.yaml" --data "$dir/data" --http 127.0.0.1:0 2>"$dir/serve.log" &
pid=$!
for _ in $(seq 1 500); do [ -s "$dir/data/http.addr" ] && break; sleep 0.02; done
addr=$(cat "$dir/data/http.addr" 2>/dev/null)
n=0 failed=0
check() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; failed=1; fi; }
check "server ready" '[ -n "$addr" ]'
tmux -S "$sock" new-session -d -s st -x 120 -y 30 "$bin status --target http://$addr --interval 0.5"
# Traffic for a few seconds, then read the screen until it shows it.
"$bin" simulate --target "http://$addr" --rate 400 --duration 3 >/dev/null 2>&1 &
sim=$!
screen=""
for _ in $(seq 1 200); do
  screen=$(tmux -S "$sock" capture-pane -p -t st)
  grep -qE "ingest +[1-9][0-9]* accepted/s" <<<"$screen" && break
  sleep 0.05
done
wait "$sim"
check "live view shows a non-zero accept rate" 'grep -qE "ingest +[1-9][0-9]* accepted/s" <<<"$screen"'
check "live view shows pipeline, lag, routed and store lines" 'grep -q "pipeline " <<<"$screen" && grep -q "events behind" <<<"$screen" && grep -q "routed     p50" <<<"$screen" && grep -q "store tx" <<<"$screen"'
check "the header names the target" 'grep -q "crmstream status — http://$addr" <<<"$screen"'
# Totals catch up with what was sent (the view refreshes in place).
for _ in $(seq 1 200); do
  screen=$(tmux -S "$sock" capture-pane -p -t st)
  grep -q "totals: 1200 accepted" <<<"$screen" && break
  sleep 0.05
done
check "totals show all 1200 events accepted" 'grep -q "totals: 1200 accepted" <<<"$screen"'
json=$("$bin" status --target "http://$addr" --once)
check "--once prints one JSON line of totals" 'grep -q "\"accepted\":1200" <<<"$json" && [ "$(wc -l <<<"$json")" -eq 1 ]'
piped=$(timeout 3 "$bin" status --target "http://$addr" --interval 0.5 | head -n 2)
check "piped output is JSON lines" '[ "$(grep -c "^{\"accepted_per_s\":" <<<"$piped")" -eq 2 ]'
echo "1..$n"
exit $failed
