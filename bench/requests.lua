-- wrk script: requests taken in turn from the file named by BENCH_REQUESTS, one per line:
-- "GET <path>" or "POST <path> <json body>". Each wrk thread starts at its own offset.
local requests = {}
for line in io.lines(os.getenv("BENCH_REQUESTS")) do
  local method, path, body = line:match("^(%u+) (%S+) ?(.*)$")
  if method == "POST" then
    requests[#requests + 1] = wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
  else
    requests[#requests + 1] = wrk.format(method, path)
  end
end

local threads = 0
function setup(thread)
  thread:set("offset", threads * 7919)
  threads = threads + 1
end

local i = 0
function init(args)
  i = offset or 0
end

function request()
  i = i + 1
  return requests[(i % #requests) + 1]
end
