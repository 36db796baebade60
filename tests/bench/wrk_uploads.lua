-- wrk script for tests/bench/run: POST /v1/uploads as a client asks for a presigned PUT.
-- Environment: BENCH_TOKEN (a bearer token from the service's API_TOKENS).
wrk.method = "POST"
wrk.body = '{"filename":"cat.jpg","content_type":"image/jpeg","method":"PUT"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
