#!/usr/bin/env bash
# The command-line contract (design brief §5): --help on every command exits
# 0 and describes its options; bad usage exits 2 with exactly one line on
# stderr, "crmstream: <what>: <why>"; a runtime failure exits 1. Prints TAP.
set -u
bin="${1:-build}/crmstream"
n=0 failed=0
t() { # description, expected exit, command...
  local desc=$1 want=$2; shift 2
  local out err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  n=$((n + 1))
  if [ "$rc" -ne "$want" ]; then
    echo "not ok $n - $desc (exit $rc, want $want): $err"; failed=1; return
  fi
  if [ "$want" -ne 0 ]; then
    local lines; lines=$(printf '%s' "$err" | grep -c '')
    if [ "$lines" -ne 1 ] || [[ "$err" != crmstream:\ *:\ * ]]; then
      echo "not ok $n - $desc: stderr must be one 'crmstream: what: why' line, got: $err"; failed=1; return
    fi
  fi
  echo "ok $n - $desc"
}
helps() { # command, words the help must mention...
  local cmd=$1; shift
  local out; out=$("$bin" $cmd --help 2>&1); local rc=$?
  n=$((n + 1))
  local missing=""
  for w in "$@"; do [[ "$out" == *"$w"* ]] || missing+=" $w"; done
  if [ "$rc" -eq 0 ] && [ -z "$missing" ]; then echo "ok $n - $cmd --help describes its options"
  else echo "not ok $n - $cmd --help (exit $rc) lacks:$missing"; failed=1; fi
}
helps "" serve simulate demo
helps serve --config --data --http --log-level
helps simulate --target --rate --duration --seed --accounts
helps demo --rate --duration --seed
helps config-reference Print
helps metrics-reference Print
helps evaluate --truth --target --json
helps status --target --interval --once
helps dlq list show redrive --target --all --destination --json
helps verify warehouse --from --to --json --data --config
helps backtest --rules --from --to --json --target
t "no command" 2 "$bin"
t "unknown command" 2 "$bin" frobnicate
t "serve: unknown option" 2 "$bin" serve --nope
t "serve: stray argument" 2 "$bin" serve extra
t "serve: bad log level" 2 "$bin" serve --log-level loud
t "simulate: bad rate" 2 "$bin" simulate --rate fast
t "simulate: missing value" 2 "$bin" simulate --rate
t "demo: bad duration" 2 "$bin" demo --duration -1
t "status: bad interval" 2 "$bin" status --interval 0
t "evaluate: --truth missing" 2 "$bin" evaluate
t "evaluate: unreadable truth" 1 "$bin" evaluate --truth /nonexistent/truth.jsonl
t "status: unreachable server" 1 "$bin" status --target http://127.0.0.1:1 --once
t "verify: no subject" 2 "$bin" verify
t "verify: unknown subject" 2 "$bin" verify things
t "verify: bad --from" 2 "$bin" verify warehouse --from yesterday
t "backtest: --rules missing" 2 "$bin" backtest
t "backtest: bad --from" 2 "$bin" backtest --rules x.yaml --from yesterday
t "backtest: unreadable rules" 1 "$bin" backtest --rules /nonexistent/rules.yaml
t "backtest: unreachable server" 1 "$bin" backtest --rules tests/check_cli.sh --target http://127.0.0.1:1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf 'log:\n  partitons: 8\n' > "$tmp/bad.yaml"
t "serve: config with an unknown key fails at runtime" 1 "$bin" serve --config "$tmp/bad.yaml" --data "$tmp/d"
err=$("$bin" serve --config "$tmp/bad.yaml" --data "$tmp/d" 2>&1)
n=$((n + 1))
if [[ "$err" == *"bad.yaml:2:3: unknown key \"log.partitons\""* ]]; then echo "ok $n - config error names file:line:column"
else echo "not ok $n - config error names file:line:column: $err"; failed=1; fi
printf 'signals:\n  engagement_drop:\n    ratio: 1.5\n' > "$tmp/badsig.yaml"
err=$("$bin" serve --config "$tmp/badsig.yaml" --data "$tmp/d" 2>&1); rc=$?
n=$((n + 1))
if [[ $rc -ne 0 && "$err" == *"badsig.yaml:3:12: signals.engagement_drop.ratio: expected a number in"* ]]; then
  echo "ok $n - a bad signals threshold stops serve, naming the key"
else echo "not ok $n - a bad signals threshold stops serve, naming the key (rc $rc): $err"; failed=1; fi
t "simulate: unreachable target" 1 "$bin" simulate --target http://127.0.0.1:1 --duration 0.1
echo "1..$n"
exit $failed
