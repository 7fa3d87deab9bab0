#!/usr/bin/env bash
# GET /metrics of a real server after some traffic: valid Prometheus text
# (promtool check metrics), the series the issue names with the right
# values, kafka_consumergroup_lag back to 0 once the pipeline caught up, and
# no account id in any label. Prints TAP.
set -u
bin="$PWD/${1:-build}/crmstream"
dir=$(mktemp -d /tmp/crmstream-metrics-XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
printf 'log:\n  partitions: 4\nrouting:\n  reps:\n    - {id: rep_a}\n    - {id: rep_b}\n' > "$dir/config.yaml"
"$bin" serve --config "$dir/config.yaml" --data "$dir/data" --http 127.0.0.1:0 2>"$dir/serve.log" &
pid=$!
for _ in $(seq 1 500); do [ -s "$dir/data/http.addr" ] && break; sleep 0.02; done   # poll a condition, bounded
addr=$(cat "$dir/data/http.addr" 2>/dev/null)
n=0 failed=0
check() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; failed=1; fi; }
check "server ready" '[ -n "$addr" ]'
ts=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
body="["
for i in 1 2 3 4 5; do
  body+="{\"event_id\":\"m-lead-$i\",\"type\":\"LeadCreated\",\"account_id\":\"acc_secret_$i\",\"timestamp\":\"$ts\",\"properties\":{\"email\":\"p$i@x.example\"}},"
  body+="{\"event_id\":\"m-use-$i\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_secret_$i\",\"timestamp\":\"$ts\",\"properties\":{\"feature\":\"api\"}},"
done
body+="{\"event_id\":\"m-bad\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_secret_9\"}]"
curl -s -o /dev/null "http://$addr/v1/events" -d "$body"
curl -s -o /dev/null "http://$addr/v1/events" -d "{\"event_id\":\"m-lead-1\",\"type\":\"LeadCreated\",\"account_id\":\"acc_secret_1\",\"timestamp\":\"$ts\",\"properties\":{\"email\":\"p1@x.example\"}}"
# Wait (bounded) until the pipeline has routed the five leads.
for _ in $(seq 1 500); do
  m=$(curl -s "http://$addr/metrics")
  grep -q '^crmstream_e2e_latency_seconds_count{stage="routed"} 5$' <<<"$m" && break
  sleep 0.02
done
check "promtool check metrics accepts the exposition" 'promtool check metrics <<<"$m" >/dev/null 2>"$dir/promtool.err" || { sed "s/^/# /" "$dir/promtool.err"; false; }'
check "accepted by source and type" 'grep -q "^crmstream_events_accepted_total{source=\"native\",type=\"LeadCreated\"} 5$" <<<"$m" && grep -q "^crmstream_events_accepted_total{source=\"native\",type=\"FeatureUsed\"} 5$" <<<"$m"'
check "rejected by reason" 'grep -q "^crmstream_events_rejected_total{source=\"native\",reason=\"missing_field\"} 1$" <<<"$m"'
check "duplicates counted" 'grep -q "^crmstream_events_duplicate_total{source=\"native\"} 1$" <<<"$m"'
check "pipeline applied every event" 'grep -q "^crmstream_pipeline_events_total{result=\"applied\"} 10$" <<<"$m"'
check "the leads lane committed the 5 leads" 'grep -q "^crmstream_leads_lane_records_total 5$" <<<"$m"'
check "ingest -> routed histogram has the 5 leads" 'grep -q "^crmstream_e2e_latency_seconds_bucket{stage=\"routed\",le=\"+Inf\"} 5$" <<<"$m"'
check "log append latency observed" 'grep -qE "^crmstream_log_append_seconds_count [1-9]" <<<"$m"'
check "consumer lag is 0 once caught up" 'grep -q "^crmstream_consumer_lag_records{consumergroup=\"pipeline\",topic=\"events\"} 0$" <<<"$m" && [ "$(grep -c "^kafka_consumergroup_lag{" <<<"$m")" -eq 5 ]'
check "the events journal committed, nothing fell back" 'grep -qE "^crmstream_log_journal_commits_total [1-9]" <<<"$m" && grep -q "^crmstream_log_journal_fallbacks_total 0$" <<<"$m" && grep -q "^crmstream_log_journal_checkpoints_total 0$" <<<"$m"'
check "build info" 'grep -q "^crmstream_build_info{version=\"" <<<"$m"'
check "no account id in any label" '! grep -q "acc_secret" <<<"$m"'
# Lag rises while the pipeline is paused and returns to 0 after it resumes.
curl -s -o /dev/null -X POST "http://$addr/api/v1/pipeline/pause"
body="["
for i in $(seq 1 50); do body+="{\"event_id\":\"m-p-$i\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_$i\",\"timestamp\":\"$ts\",\"properties\":{\"feature\":\"api\"}},"; done
body="${body%,}]"
curl -s -o /dev/null "http://$addr/v1/events" -d "$body"
m=$(curl -s "http://$addr/metrics")
check "lag is 50 while paused" 'grep -q "^crmstream_consumer_lag_records{consumergroup=\"pipeline\",topic=\"events\"} 50$" <<<"$m"'
curl -s -o /dev/null -X POST "http://$addr/api/v1/pipeline/resume"
for _ in $(seq 1 500); do
  m=$(curl -s "http://$addr/metrics")
  grep -q "^crmstream_consumer_lag_records{consumergroup=\"pipeline\",topic=\"events\"} 0$" <<<"$m" && break
  sleep 0.02
done
check "lag back to 0 after resume" 'grep -q "^crmstream_consumer_lag_records{consumergroup=\"pipeline\",topic=\"events\"} 0$" <<<"$m" && grep -q "^crmstream_pipeline_events_total{result=\"applied\"} 60$" <<<"$m"'
check "promtool still clean" 'promtool check metrics <<<"$m" >/dev/null 2>&1'
echo "1..$n"
exit $failed
