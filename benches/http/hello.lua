-- wrk script: POST a `wait: true` hello job and count non-200 answers.
-- Usage: STRICTPY_TOKEN=$(cat data/admin-token) \
--   wrk -t1 -c4 -d10s --latency -s benches/http/hello.lua http://127.0.0.1:8080
-- Give the token a rate limit that wrk cannot reach, e.g.
--   strictpy token create --tenant bench --scope jobs:write \
--     --requests-per-minute 10000000 --burst 100000
wrk.method = "POST"
wrk.path = "/v1/jobs"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. (os.getenv("STRICTPY_TOKEN") or "")
wrk.body = '{"code": "print(\\"hi\\")", "wait": true}'

local bad = 0
response = function(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format("non-200 answers: %d\n", bad))
end
