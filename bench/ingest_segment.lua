-- wrk script of bench/ingest.sh: POST /v1/batch with Segment batches of
-- BATCH (default 100) realistic track events (~265 bytes each, ~26 KB per
-- body), every messageId unique (per run, thread and request), so each
-- request takes the full path: strict JSON syntax, cJSON parse, Segment
-- mapping, validation, dedupe miss, durable append (fsync before the 200).
-- The event shape is the one bench/ingest_paced.c sends and XADDs to Redis.
-- done() prints "statuses ok=N non200=M" summed over the threads (wrk's
-- response() runs in each thread's own Lua state).
local counter = 0
local batch = tonumber(os.getenv("BATCH") or "100")
local run = tonumber(os.getenv("RUN") or "0")
local ts = os.date("!%Y-%m-%dT%H:%M:%S.000Z")
local features = {"reports", "export_csv", "dashboards", "api", "sso", "alerts"}
local threads = {}
local nthreads = 0
ok200 = 0
non200 = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  local parts = {}
  for i = 0, batch - 1 do
    local acc = (counter * 7 + i * 13) % 5000
    local f = features[(i % 6) + 1]
    parts[i + 1] = string.format(
      '{"type":"track","event":"FeatureUsed","messageId":"w%d-%d-%d-%d","userId":"u_%05d_%d","timestamp":"%s",' ..
      '"context":{"groupId":"acc_%05d","ip":"10.1.%d.%d"},' ..
      '"properties":{"feature":"%s","count":%d,"browser":"firefox","path":"/app/%s"}}',
      run, tid, counter, i, acc, i % 7, ts, acc, acc % 250, i % 250, f, 1 + i % 3, f)
  end
  local body = '{"batch":[' .. table.concat(parts, ",") .. '],"sentAt":"' .. ts .. '"}'
  return wrk.format("POST", "/v1/batch", {["Content-Type"] = "application/json"}, body)
end

response = function(status, headers, body)
  if status == 200 then ok200 = ok200 + 1 else non200 = non200 + 1 end
end

done = function(summary, latency, requests)
  local ok, bad = 0, 0
  for _, t in ipairs(threads) do
    ok = ok + (t:get("ok200") or 0)
    bad = bad + (t:get("non200") or 0)
  end
  io.write(string.format("statuses ok=%d non200=%d\n", ok, bad))
  io.write(string.format("latency p50_ms=%.3f p99_ms=%.3f\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
