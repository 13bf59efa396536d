-- wrk script: POST a `wait: true` hello job and count non-200 answers.
-- Usage: wrk -t1 -c4 -d10s --latency -s benches/http/hello.lua http://127.0.0.1:8080
wrk.method = "POST"
wrk.path = "/v1/jobs"
wrk.headers["content-type"] = "application/json"
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
