-- wrk script: POST /v1/events with a batch of N realistic native events
-- (~200-400 bytes each), every event_id unique (per thread and request), so
-- each request takes the full path: validate, dedupe miss, durable append.
local counter = 0
local thread_id = 0
local batch = tonumber(os.getenv("BATCH") or "100")
local ts = os.date("!%Y-%m-%dT%H:%M:%S.000Z")
local features = {"reports", "export_csv", "dashboards", "api", "sso", "alerts"}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function init(args)
  math.randomseed(tid)
end

request = function()
  counter = counter + 1
  local parts = {}
  for i = 1, batch do
    local acc = (counter * 7 + i * 13) % 5000
    local f = features[(i % #features) + 1]
    parts[i] = string.format(
      '{"event_id":"b%d-%d-%d","type":"FeatureUsed","account_id":"acc_%05d","user_id":"u_%05d_%d",' ..
      '"timestamp":"%s","product_area":"%s","plan_tier":"pro","properties":{"feature":"%s","count":%d,' ..
      '"browser":"firefox","path":"/app/%s"}}',
      tid, counter, i, acc, acc, i % 7, ts, f, f, 1 + i % 3, f)
  end
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"}, "[" .. table.concat(parts, ",") .. "]")
end

local non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("non200=%d\n", non200))
end
