-- wrk script of bench/ingest.sh: POST /v1/batch with Segment batches of
-- BATCH (default 100) realistic track events (~265 bytes each, ~26 KB per
-- body), every messageId unique (per run, thread and request), so each
-- request takes the full path: strict JSON syntax, cJSON parse, Segment
-- mapping, validation, dedupe miss, durable append (fsync before the 200).
-- The event shape is the one bench/ingest_paced.c sends and XADDs to Redis.
--
-- The load generator shares the server's two cores, so it is kept cheap:
-- each thread builds NT body templates once (in init, before the clock
-- starts), split around the one part of each messageId that changes per
-- request; a request fills in its counter and joins the pieces (one
-- allocation and a copy), instead of formatting 100 events. Request r uses
-- template r mod NT: events of request r go to accounts
-- (k*79 + i*13 + tid*31) mod 5000 for k = r mod NT, i = 0..99, so a run
-- spreads its events over all 5,000 accounts as before.
-- No response() callback (wrk would build a Lua table of every answer's
-- headers): done() prints "statuses ok=N non200=M" from wrk's own counts,
-- completed requests and those answered >= 400; bench/ingest.sh checks them
-- against the server's count of its answers by code.
local counter = 0
local batch = tonumber(os.getenv("BATCH") or "100")
local run = tonumber(os.getenv("RUN") or "0")
local ts = os.date("!%Y-%m-%dT%H:%M:%S.000Z")
local features = {"reports", "export_csv", "dashboards", "api", "sso", "alerts"}
local NT = 64
local templates = {}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end

-- Template k: {piece, counter, piece, counter, ..., piece}; the even slots
-- take the request counter.
local function template(k)
  local t = {}
  local open = '{"batch":['
  for i = 0, batch - 1 do
    local acc = (k * 79 + i * 13 + tid * 31) % 5000
    local f = features[(i % 6) + 1]
    t[#t + 1] = open .. string.format('{"type":"track","event":"FeatureUsed","messageId":"w%d-%d-', run, tid)
    t[#t + 1] = ""
    open = string.format(
      '-%d","userId":"u_%05d_%d","timestamp":"%s",' ..
      '"context":{"groupId":"acc_%05d","ip":"10.1.%d.%d"},' ..
      '"properties":{"feature":"%s","count":%d,"browser":"firefox","path":"/app/%s"}}',
      i, acc, i % 7, ts, acc, acc % 250, i % 250, f, 1 + i % 3, f) .. (i < batch - 1 and "," or "")
  end
  t[#t + 1] = open .. '],"sentAt":"' .. ts .. '"}'
  return t
end

-- The templates are built before the clock starts; the collector then
-- runs less often (each request leaves ~50 KB of garbage: a cycle per
-- ~10x the live heap instead of 2x).
function init(args)
  for k = 0, NT - 1 do templates[k] = template(k) end
  collectgarbage("collect")
  collectgarbage("setpause", 1000)
end

request = function()
  counter = counter + 1
  local t = templates[counter % NT]
  local c = tostring(counter)
  for j = 2, #t - 1, 2 do t[j] = c end
  return wrk.format("POST", "/v1/batch", {["Content-Type"] = "application/json"}, table.concat(t))
end

done = function(summary, latency, requests)
  local bad = summary.errors.status
  io.write(string.format("statuses ok=%d non200=%d\n", summary.requests - bad, bad))
  io.write(string.format("latency p50_ms=%.3f p99_ms=%.3f\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
