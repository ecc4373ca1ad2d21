-- wrk script: POST one GraphQL operation as many different users, count failures, report JSON.
--   wrk -s load.lua <url> -- <credentials file> <body file>
-- credentials: one user per line, "token<TAB>user id"; an empty token sends no Authorization.
-- body: the JSON request; every "__USER__" in it is replaced by the user id.

local credentials = {}
local template = ""
local threads = {}

local function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then table.insert(lines, line) end
  end
  return lines
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for _, line in ipairs(read_lines(args[1])) do
    local token, user = line:match("^([^\t]*)\t(.*)$")
    table.insert(credentials, { token = token, user = user })
  end
  local file = io.open(args[2], "r")
  template = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  next_user = math.random(#credentials)
  failures = 0
end

function request()
  local who = credentials[next_user]
  next_user = next_user % #credentials + 1
  local headers = { ["Content-Type"] = "application/json" }
  if who.token ~= "" then headers["Authorization"] = "Bearer " .. who.token end
  local body = template:gsub("__USER__", who.user)
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  if status ~= 200 or body:find('"errors"', 1, true) then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "failures": %d, ' ..
    '"socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    failed, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout + summary.errors.status))
end
