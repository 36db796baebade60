"""jobs_util.py - what the hostile-input, fault and load tests share on top of harness.py:
put an object straight into the source bucket, announce it the way EventBridge does, wait for
its status, read the service's metrics and its peak memory.

Debian's /usr/bin/python3 with the standard library and botocore only.
"""

import os
import re
import time
import uuid
from urllib.parse import quote

from harness import API_TOKEN, EVENTS_API_KEY, json_http, http, wait_until

AUTH = {'Authorization': 'Bearer ' + API_TOKEN}
EVENT_AUTH = {'x-api-key': EVENTS_API_KEY}
TERMINAL = ('done', 'failed')


def eventbridge_event(bucket, key, size, etag=None, sequencer=None):
    """The S3 "Object Created" event exactly as EventBridge delivers it (notes/aws-facts.md)."""
    obj = {'key': key, 'size': size}
    if etag:
        obj['etag'] = etag
    if sequencer:
        obj['sequencer'] = sequencer
    return {
        'version': '0', 'id': str(uuid.uuid4()), 'detail-type': 'Object Created',
        'source': 'aws.s3', 'account': '111122223333', 'time': '2024-01-01T00:00:00Z',
        'region': 'us-east-1', 'resources': ['arn:aws:s3:::' + bucket],
        'detail': {'version': '0', 'bucket': {'name': bucket},
                   'object': obj, 'request-id': 'R', 'requester': '111122223333',
                   'source-ip-address': '127.0.0.1', 'reason': 'PutObject'},
    }


def upload(svc, key, data, content_type='image/jpeg'):
    """Puts data at key in the service's source bucket, as a direct upload would."""
    svc.s3.client().put_object(Bucket=svc.src_bucket, Key=key, Body=data,
                               ContentType=content_type)


def announce(svc, key, size, timeout=10):
    """POSTs the EventBridge event for key; returns (status, headers, body)."""
    headers = dict(EVENT_AUTH, **{'User-Agent': 'Amazon/EventBridge/ApiDestinations'})
    return json_http('POST', svc.url('/v1/events'), eventbridge_event(svc.src_bucket, key, size),
                     headers=headers, timeout=timeout)


def status_by_key(svc, key, timeout=10):
    """The status record of key (GET /v1/images?key=), or None if the service has none."""
    status, _, body = json_http('GET', svc.url('/v1/images?key=' + quote_key(key)),
                                headers=AUTH, timeout=timeout)
    if status != 200:
        raise AssertionError('GET /v1/images?key=%s -> %d %r' % (key, status, body))
    return body['items'][0] if body['items'] else None


def quote_key(key):
    return quote(key, safe='')


def wait_terminal(svc, key, timeout):
    """Waits until key's status is done or failed; returns the record."""
    def terminal():
        rec = status_by_key(svc, key)
        return rec if rec and rec['state'] in TERMINAL else None
    return wait_until(terminal, timeout=timeout, interval=0.2,
                      what='a terminal state for %s' % key)


def metrics_text(svc):
    status, _, body = http('GET', svc.url('/metrics'))
    if status != 200:
        raise AssertionError('/metrics -> %d' % status)
    return body.decode()


def metric(text, name, labels=''):
    """The value of one sample (labels exactly as rendered, e.g. 'outcome="done"'); 0 if the
    sample is not there (a counter that never moved)."""
    pattern = r'^%s%s (\S+)$' % (re.escape(name), re.escape('{%s}' % labels) if labels else '')
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else 0.0


def proc_status_kb(pid, field):
    """A kB field of /proc/<pid>/status (VmHWM: peak resident set, VmRSS: now)."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise AssertionError('no %s in /proc/%d/status' % (field, pid))


_sanitized = None


def sanitized():
    """True when RESIZER_BIN is an ASan build (memory figures mean nothing there)."""
    global _sanitized
    if _sanitized is None:
        with open(os.environ['RESIZER_BIN'], 'rb') as f:
            _sanitized = b'__asan_init' in f.read()
    return _sanitized


def percentile(values, p):
    """The p-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    rank = max(1, int(round(p / 100.0 * len(ordered) + 0.5)))
    return ordered[min(rank, len(ordered)) - 1]


def timed_healthz(svc, timeout=5):
    """(status, seconds) of one GET /healthz on a new connection."""
    start = time.monotonic()
    status = http('GET', svc.url('/healthz'), timeout=timeout)[0]
    return status, time.monotonic() - start
