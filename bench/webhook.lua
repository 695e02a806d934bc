-- wrk script: POST realistic Telegram updates with unique update ids (one counter per thread).
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  base = tonumber(os.getenv("WRK_START_ID") or "20000000") + tid * 10000000
  secret = os.getenv("WRK_SECRET") or ""
end

request = function()
  counter = counter + 1
  local id = base + counter
  local user = 100000 + id % 5000
  local body = string.format(
    '{"update_id":%d,"message":{"message_id":%d,"from":{"id":%d,"is_bot":false,"first_name":"Linh","last_name":"Nguyen","username":"linh_%d","language_code":"vi"},"chat":{"id":%d,"first_name":"Linh","last_name":"Nguyen","username":"linh_%d","type":"private"},"date":1732780800,"text":"Xin chào, tôi muốn hỏi về đơn hàng số %d"}}',
    id, id, user, user, user, user, id)
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["X-Telegram-Bot-Api-Secret-Token"] = secret
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local statuses = summary.errors.status
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f, "mean_ms": %.2f, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000, statuses,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
