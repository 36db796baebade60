#!/usr/bin/python3
"""test_lb.py - the local load balancer (deploy/local/lb-start, nginx) in front of replicas.

Two real replicas on one S3, nginx in front as scripts/run --replicas starts it:
  - requests are spread round robin (each replica serves about half, seen in its own
    /metrics), and an authenticated POST /v1/uploads passes through with its answer intact;
  - a replica killed with SIGKILL: every request through the balancer still answers 200
    (passive failover: the refused connection is retried on the other replica).
The shared-state semantics across replicas are tested with the dynamodb store elsewhere; the
replicas here use the default store, which is all the balancer needs to be checked.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures import wait_for  # noqa: E402
from harness import (API_TOKEN, LoadBalancer, Resizer, S3Server, http,  # noqa: E402
                     json_http)

N = 20


def healthz_count(replica):
    text = http('GET', replica.url('/metrics'))[2].decode()
    key = 'resizer_http_requests_total{route="/healthz",method="GET",status="200"}'
    for line in text.splitlines():
        if line.startswith(key + ' '):
            return float(line.rsplit(' ', 1)[1])
    return 0.0


def served_since(replicas, before, total):
    """Requests each replica counted since before, once they add up to total. A request is
    counted when the server has finished with it, which can be just after the client has read
    its answer, so the last one or two may need a moment to appear."""
    def counted():
        served = [healthz_count(r) - n for r, n in zip(replicas, before)]
        return served if sum(served) == total else None
    return wait_for(counted, 5, what='%d requests counted by the replicas' % total)


def main():
    s3 = S3Server()
    a = Resizer(s3)
    b = Resizer(s3, src_bucket=a.src_bucket, dest_bucket=a.dest_bucket)
    lb = LoadBalancer([a, b])

    before = [healthz_count(r) for r in (a, b)]
    statuses = [http('GET', lb.url('/healthz'))[0] for _ in range(N)]
    assert statuses == [200] * N, statuses
    served = served_since((a, b), before, N)
    assert min(served) >= N // 2 - 2, 'not round robin: %s' % served

    status, _, body = json_http('POST', lb.url('/v1/uploads'), obj={'content_type': 'image/png'},
                                headers={'Authorization': 'Bearer ' + API_TOKEN})
    assert status == 201 and body['upload']['url'].startswith(s3.endpoint), (status, body)

    a.kill9()
    before_b = healthz_count(b)
    statuses = [http('GET', lb.url('/healthz'))[0] for _ in range(N)]
    assert statuses == [200] * N, 'failover: %s' % statuses
    served_since((b,), (before_b,), N)
    print('round robin %s of %d; after kill -9 of one replica %d/%d answered 200'
          % (served, N, statuses.count(200), N))
    return 0


if __name__ == '__main__':
    sys.exit(main())
