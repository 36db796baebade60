-- wrk script for tests/bench/run: POST /v1/events, one EventBridge "Object Created" event per
-- request, as an API destination delivers them. Every request names a new key
-- (images/bench/<run>-<thread>-<n>.jpg) so each event is accepted, not a duplicate.
-- Environment: BENCH_EVENTS_KEY (EVENTS_API_KEY), BENCH_SRC_BUCKET (SRC_BUCKET), BENCH_RUN.
local threads = 0

function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

local n = 0
local bucket = os.getenv("BENCH_SRC_BUCKET")
local run = os.getenv("BENCH_RUN")
local template = '{"version":"0","id":"%s","detail-type":"Object Created","source":"aws.s3",'
   .. '"account":"111122223333","time":"2024-01-01T00:00:00Z","region":"us-east-1",'
   .. '"resources":["arn:aws:s3:::%s"],"detail":{"version":"0","bucket":{"name":"%s"},'
   .. '"object":{"key":"%s","size":1048576,"etag":"d41d8cd98f00b204e9800998ecf8427e",'
   .. '"sequencer":"%016x"},"request-id":"BENCH","requester":"123456789012",'
   .. '"source-ip-address":"127.0.0.1","reason":"PutObject"}}'
local headers = {
   ["Content-Type"] = "application/json",
   ["x-api-key"] = os.getenv("BENCH_EVENTS_KEY"),
}

function request()
   n = n + 1
   local key = string.format("images/bench/%s-%d-%d.jpg", run, tid, n)
   local id = string.format("%s-%d-%d", run, tid, n)
   local body = string.format(template, id, bucket, bucket, key, n)
   return wrk.format("POST", "/v1/events", headers, body)
end
