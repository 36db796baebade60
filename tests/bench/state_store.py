#!/usr/bin/python3
"""state_store.py - what STATE_STORE=dynamodb costs, measured on the local servers.

Usage: RESIZER_BIN=build/release/resizer /usr/bin/python3 tests/bench/state_store.py [--images N]

Runs N small images through one replica on the memory store and one on DynamoDB (dynalite,
deploy/local/dynamodb-start; S3 as the tests use it), each delivered by its own event, and
prints a Markdown section for tests/bench/RESULTS.md:
  - DynamoDB requests per image by phase (upload URL, claim, begin, finish, lease renewals),
    from resizer_store_requests_total{phase,op};
  - request units and the cost per million images at the published on-demand prices, from
    those counts and the item sizes read back from the table (index writes included);
  - the latency of POST /v1/events (one object) on each store.
dynalite runs in Node on the same machine: its latency is an upper bound for the request
count, not DynamoDB's (single-digit ms in the same region).
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
from harness import (DynamoServer, Resizer, S3Server, json_http, http,  # noqa: E402
                     start_replicas)
from fixtures import AUTH, EVENT_AUTH, eventbridge_event, get_record, wait_for  # noqa: E402

# US East (N. Virginia), on-demand, standard table class: $ per million request units.
PRICE_WRU = 0.625
PRICE_RRU = 0.125

# store operation -> (DynamoDB calls, kind)
CALLS = {
    'find_key': ('GetItem', 'read'), 'get': ('GetItem', 'read'), 'ping': ('GetItem', 'read'),
    'create': ('PutItem x2 (record, key)', 'write2'), 'replace': ('PutItem', 'write'),
    'renew': ('UpdateItem', 'write'), 'expired': ('Query', 'query'), 'list': ('Query', 'query'),
    'lock': ('UpdateItem', 'write'), 'save_cursor': ('UpdateItem', 'write'),
}


def image(path):
    subprocess.run(['vips', 'gaussnoise', path + '[Q=80]', '400', '300'], check=True)
    with open(path, 'rb') as f:
        return f.read()


def store_requests(svc):
    counts = {}
    text = http('GET', svc.url('/metrics'))[2].decode()
    for m in re.finditer(r'^resizer_store_requests_total\{phase="(\w+)",op="(\w+)",'
                         r'outcome="\w+"\} (\S+)$', text, re.M):
        key = (m.group(1), m.group(2))
        counts[key] = counts.get(key, 0) + float(m.group(3))
    return counts


def deliver(svc, keys):
    lat = []
    for key in keys:
        start = time.monotonic()
        st, _, body = json_http('POST', svc.url('/v1/events'),
                                eventbridge_event(bucket=svc.src_bucket, key=key, size=1),
                                headers=EVENT_AUTH)
        lat.append((time.monotonic() - start) * 1000)
        if st != 202:
            raise AssertionError((st, body))
    for key in keys:
        wait_for(lambda: (get_record(svc, key=key) or {}).get('state') == 'done', timeout=60,
                 interval=0.1, what=key)
    return lat


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def item_sizes(ddb, table):
    """Approximate stored sizes (names + values) of record items and key items."""
    rec, key = [], []
    for item in ddb.client().scan(TableName=table)['Items']:
        size = sum(len(k) + len(json.dumps(v)) - 8 for k, v in item.items())
        (key if item['pk']['S'].startswith('k#') else rec).append(size)
    return (sum(rec) / max(1, len(rec)), sum(key) / max(1, len(key)))


def units(counts, n, rec_size, key_size, uploaded=False):
    """Request units per image: reads are strongly consistent GetItems (4 KB units); a record
    write is ceil(size/1 KB) on the table, again on each index projecting ALL (by_state, twice
    when the state changes: delete + put; by_time; by_uploader, only records with an uploader:
    upload entries, and with uploaded=True the event-driven writes of an image that came
    through POST /v1/uploads, whose claim also takes the ttl off its key item, one more
    UpdateItem), and 1 on in_flight (keys only; twice when the lease moves) while the record
    is in flight."""
    w = math.ceil(rec_size / 1024.0)
    wk = math.ceil(key_size / 1024.0)
    up = w if uploaded else 0
    gsi = {'claim': w + w + 1 + up + (wk if uploaded else 0), 'upload': w + w + w,
           'begin': 2 * w + w + 2 + up, 'finish': 2 * w + w + 1 + up, 'renew': w + w + 2 + up}
    rru = wru = 0.0
    for (phase, op), c in counts.items():
        kind = CALLS.get(op, ('', 'read'))[1]
        if kind == 'read':
            rru += c * math.ceil(rec_size / 4096.0)
        elif kind == 'query':
            rru += c * 0.5
        elif kind == 'write2':
            wru += c * (w + wk + gsi.get(phase, 0))
        else:
            wru += c * (w + gsi.get(phase, 0))
    return rru / n, wru / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--images', type=int, default=50)
    args = ap.parse_args()
    n = args.images
    tmp = tempfile.mkdtemp(prefix='resizer-statebench-')
    data = image(os.path.join(tmp, 'img.jpg'))
    s3 = S3Server()
    ddb = DynamoServer()
    keys = ['images/b%03d.jpg' % i for i in range(n)]
    env = {'WORKERS': '2', 'LOG_LEVEL': 'warn'}
    with Resizer(s3, env=env) as mem:
        for k in keys:
            s3.client().put_object(Bucket=mem.src_bucket, Key=k, Body=data)
        lat_mem = deliver(mem, keys)
    with start_replicas(1, s3, ddb, env=env) as replicas:
        svc = replicas[0]
        for k in keys:
            s3.client().put_object(Bucket=svc.src_bucket, Key=k, Body=data)
        for _ in range(n):
            if json_http('POST', svc.url('/v1/uploads'), {'content_type': 'image/jpeg'},
                         headers=AUTH)[0] != 201:
                raise AssertionError('upload URL refused')
        before = store_requests(svc)
        lat_ddb = deliver(svc, keys)
        after = store_requests(svc)
        secs_idle = 5
        time.sleep(secs_idle)
        idle = store_requests(svc)
        rec_size, key_size = item_sizes(ddb, replicas.table)
    per_image = {k: (after.get(k, 0) - before.get(k, 0)) / n for k in after
                 if k[0] not in ('upload', 'reclaim', 'ping', 'lookup')}
    uploads = {k: v / n for k, v in before.items() if k[0] == 'upload'}
    background = sum(idle.get(k, 0) - after.get(k, 0) for k in idle) / secs_idle
    rru, wru = units({k: v * n for k, v in per_image.items()}, n, rec_size, key_size)
    # The same events for images that came through POST /v1/uploads (by_uploader, key ttl).
    _, wru_up = units({k: v * n for k, v in per_image.items()}, n, rec_size, key_size, True)
    urru, uwru = units({k: v * n for k, v in uploads.items()}, n, rec_size, key_size)
    out = ['## State store: DynamoDB requests and cost per image', '',
           'From `tests/bench/state_store.py --images %d`: %d direct uploads (400x300 JPEG), '
           'one event each, one replica, `WORKERS=2`, dynalite 4.0.0 on this machine (the '
           'status polls of the benchmark itself are left out).' % (n, n),
           '', '| phase | store operation | DynamoDB call | per image |', '|---|---|---|---|']
    for (phase, op), v in sorted(per_image.items()) + sorted(uploads.items()):
        if v:
            out.append('| %s | %s | %s | %.2f |' % (phase, op, CALLS.get(op, ('?',))[0], v))
    out += ['', 'Background, per replica, with nothing to do: %.1f requests/s (the re-claim '
            'query over the in-flight index; lease renewals add one UpdateItem per job in '
            'flight every `LEASE_SECONDS`/3).' % background, '',
            'Item sizes read back: record %.0f B, key item %.0f B. Request units per image '
            '(estimated from the counts above: strongly consistent reads, and every write '
            'counted again for each index it changes): %.1f RRU + %.1f WRU per event-driven '
            'image, %.1f RRU + %.1f WRU more when it came through `POST /v1/uploads` (its '
            'upload entry, and its record in `by_uploader` from then on).'
            % (rec_size, key_size, rru, wru, urru, uwru + wru_up - wru), '',
            'Cost per million images at on-demand prices (US East, $%.3f per million WRU, '
            '$%.3f per million RRU): **$%.2f** (direct uploads), **$%.2f** (through '
            '`POST /v1/uploads`), plus storage.' % (
                PRICE_WRU, PRICE_RRU, rru * PRICE_RRU + wru * PRICE_WRU,
                (rru + urru) * PRICE_RRU + (wru_up + uwru) * PRICE_WRU), '',
            '| POST /v1/events, one object | p50 ms | p99 ms | max ms |', '|---|---|---|---|',
            '| memory store | %.1f | %.1f | %.1f |' % (pct(lat_mem, 50), pct(lat_mem, 99),
                                                     max(lat_mem)),
            '| dynamodb (local dynalite) | %.1f | %.1f | %.1f |' % (
                pct(lat_ddb, 50), pct(lat_ddb, 99), max(lat_ddb)), '']
    print('\n'.join(out))
    ddb.close()
    s3.close()


if __name__ == '__main__':
    main()
