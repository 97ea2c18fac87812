-- wrk script: every request is a distinct referral (own Bundle.identifier and X-Request-Id) built from
-- examples/gp-referral.json; counts answers by status and 503s that lack Retry-After; done() prints
-- one WRKJSON line that bench/support reads.
-- Arguments after "--": <template path> <run tag> <EHR API key>
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  template = file:read("*a")
  file:close()
  tag = args[2]
  key = args[3]
  counter = 0
  statuses = {}
  busy_without_retry_after = 0
end

function request()
  counter = counter + 1
  local referral = tag .. "-" .. id .. "-" .. counter
  local body = template:gsub("__REFERRAL__", referral)
  return wrk.format("POST", "/fhir/Bundle", {
    ["Content-Type"] = "application/fhir+json",
    ["Authorization"] = "Bearer " .. key,
    ["X-Request-Id"] = referral,
  }, body)
end

function response(status, headers, body)
  local code = tostring(status)
  statuses[code] = (statuses[code] or 0) + 1
  if status == 503 and headers["retry-after"] == nil and headers["Retry-After"] == nil then
    busy_without_retry_after = busy_without_retry_after + 1
  end
end

function done(summary, latency, requests)
  local total = {}
  local busy = 0
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      total[code] = (total[code] or 0) + n
    end
    busy = busy + thread:get("busy_without_retry_after")
  end
  local parts = {}
  for code, n in pairs(total) do
    table.insert(parts, string.format('"%s": %d', code, n))
  end
  io.write(string.format(
    'WRKJSON {"duration_us": %d, "requests": %d, "statuses": {%s}, "busy_without_retry_after": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.duration, summary.requests, table.concat(parts, ", "), busy,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
