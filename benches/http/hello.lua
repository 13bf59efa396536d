-- wrk script: POST a `wait: true` hello job and count non-200 answers;
-- WAIT=false posts it without `wait` and counts non-202 answers instead
-- (the path of a `202`, whose insert is fsynced before the answer).
-- Usage: STRICTPY_TOKEN=$(cat data/admin-token) \
--   wrk -t1 -c4 -d10s --latency -s benches/http/hello.lua http://127.0.0.1:8080
-- Give the token a rate limit that wrk cannot reach, e.g.
--   strictpy token create --tenant bench --scope jobs:write \
--     --requests-per-minute 10000000 --burst 100000
wrk.method = "POST"
wrk.path = "/v1/jobs"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. (os.getenv("STRICTPY_TOKEN") or "")
local wait = os.getenv("WAIT") ~= "false"
local expected = wait and 200 or 202
wrk.body = '{"code": "print(\\"hi\\")", "wait": ' .. tostring(wait) .. '}'

local bad = 0
response = function(status, headers, body)
  if status ~= expected then
    bad = bad + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format("non-%d answers: %d\n", expected, bad))
end
