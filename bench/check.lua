-- wrk script: POSTs the body in BENCH_BODY (a file) and counts responses that are not 200 or whose body
-- differs from BENCH_EXPECTED (the answer checked against onnxruntime before the run).
local function read(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

wrk.method = "POST"
wrk.body = read(os.getenv("BENCH_BODY"))
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end
local expected = read(os.getenv("BENCH_EXPECTED"))
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
end

function response(status, headers, body)
  if status ~= 200 or body ~= expected then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("bad")
  end
  io.write(string.format("BAD_RESPONSES %d\n", total))
  io.write(string.format("LATENCY_P50_US %d\nLATENCY_P99_US %d\n", latency:percentile(50), latency:percentile(99)))
end
