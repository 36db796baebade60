"""fixtures.py - what the integration tests do to the service, written once.

harness.py starts things (the S3 and DynamoDB servers, the binary, nginx) and speaks HTTP; this
module is what a test does with them:

  events       eventbridge_event(bucket=, key=, size=, ...), s3_record(...), records_event(...):
               notifications shaped exactly as their senders shape them (keyword arguments
               only, so a size can never land where an etag belongs);
               post_event(svc, event): the one way to deliver one, with EventBridge's headers;
               announce(svc, key): what EventBridge does once an object is in the source bucket.
  S3           put_source(svc, key, data): a direct upload into the source bucket.
  records      get_record(svc, image_id= | key=), wait_record(svc, ..., states=).
  waiting      wait_for(predicate, timeout, what=): the one poll loop, with a failure message
               that names what was awaited and what was last seen.
  errors       assert_error(resp, status, code): the API's error shape, see below.
  metrics      metrics_text(svc), metric(text, name, labels).
  the process  proc_status_kb(pid, field), sanitized(), timed_healthz(svc), percentile().

Debian's /usr/bin/python3 with the standard library and botocore only.

The event shapes (what server/events.c reads, tests/unit/test_events.c has verbatim copies):

  EventBridge "Object Created" (an S3 bucket with EventBridge notifications on, delivered by an
  API destination): {"version":"0", "id", "detail-type":"Object Created", "source":"aws.s3",
  "account", "time", "region", "resources":["arn:aws:s3:::<bucket>"], "detail":{"version":"0",
  "bucket":{"name"}, "object":{"key", "size", "etag", "version-id", "sequencer"},
  "request-id", "requester", "source-ip-address", "reason":"PutObject"}}. reason may also be
  "POST Object", "CopyObject" or "CompleteMultipartUpload" (whose etag ends in "-<parts>").
  AWS does not say whether the key is percent-encoded here, and observed events disagree: the
  service takes it as stored and, when no such object exists and the key holds "%" or "+",
  tries the decoded key once (test_pipeline.py checks both). An API destination sends User-Agent Amazon/EventBridge/ApiDestinations,
  Content-Type application/json; charset=utf-8, Range bytes=0-1048575 (it reads only the first
  MiB of the answer), Accept-Encoding gzip,deflate, Connection: close, and the connection's
  API-key header.

  Classic S3 notification (S3 to SNS/HTTP, MinIO, Ceph): {"Records":[{"eventVersion":"2.1",
  "eventSource":"aws:s3", "eventName":"ObjectCreated:Put", "s3":{"bucket":{"name"},
  "object":{"key", "size", "eTag", "versionId", "sequencer"}}}]}. Its key is
  form-URL-encoded (a space is "+", a "+" is "%2B"). MinIO sends eventVersion "2.0",
  "s3:"-prefixed event names and a query-escaped key.

  A sequencer orders events for one key (hex of varying length: the shorter is padded with
  "0" on the right): the service takes an event for a finished image as a new object only
  when its sequencer is greater, or, without sequencers, when its etag differs
  (server/status.c).
  The builders leave etag, sequencer and version id out unless given; next_sequencer() gives
  ever greater ones, as S3 does for successive writes.

The error shape (openapi/openapi.yaml): every error answer is {"error": {"code", "message",
"request_id"}} and nothing else; code is what a client switches on, message one printable line
for people, request_id the response's X-Request-Id.
"""

import json
import os
import re
import time
import uuid
from urllib.parse import quote

from harness import API_TOKEN, EVENTS_API_KEY, http, json_http, scaled

AUTH = {'Authorization': 'Bearer ' + API_TOKEN}
EVENT_AUTH = {'x-api-key': EVENTS_API_KEY}
# What an EventBridge API destination sends, with the connection's API key.
EVENTBRIDGE_HEADERS = {
    'User-Agent': 'Amazon/EventBridge/ApiDestinations',
    'Content-Type': 'application/json; charset=utf-8',
    'Range': 'bytes=0-1048575',
    'Accept-Encoding': 'gzip,deflate',
    'Connection': 'close',
    'x-api-key': EVENTS_API_KEY,
}
TERMINAL = ('done', 'failed')


# -- events ---------------------------------------------------------------------------------

def _utc_now():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


_last_sequencer = 0


def next_sequencer():
    """A sequencer greater than every one this process made before (upper-case hex, as S3's)."""
    global _last_sequencer
    _last_sequencer = max(_last_sequencer + 1, time.time_ns())
    return '%016X' % _last_sequencer


def _s3_object(key, size, tokens):
    """The object of an event: key, size, and those of tokens (S3's names) that are given."""
    obj = {'key': key, 'size': size}
    obj.update((name, value) for name, value in tokens.items() if value is not None)
    return obj


def eventbridge_event(*, bucket, key, size, etag=None, sequencer=None, version_id=None,
                      reason='PutObject', event_time=None):
    """The S3 "Object Created" event exactly as EventBridge delivers it; key as stored.
    etag, sequencer and version_id are left out unless given."""
    obj = _s3_object(key, size, {'etag': etag, 'version-id': version_id, 'sequencer': sequencer})
    return {
        'version': '0', 'id': str(uuid.uuid4()), 'detail-type': 'Object Created',
        'source': 'aws.s3', 'account': '111122223333', 'time': event_time or _utc_now(),
        'region': 'us-east-1', 'resources': ['arn:aws:s3:::' + bucket],
        'detail': {'version': '0', 'bucket': {'name': bucket}, 'object': obj,
                   'request-id': 'N4N7GDK58NMKJ12R', 'requester': '123456789012',
                   'source-ip-address': '127.0.0.1', 'reason': reason},
    }


def form_encode(key):
    """A key as S3 puts it into a Records notification: space -> '+', '+' -> '%2B'."""
    return quote(key, safe='/').replace('%20', '+')


def s3_record(*, bucket, key=None, size, etag=None, sequencer=None, version_id=None,
              wire_key=None, event_name='ObjectCreated:Put', event_version='2.1',
              event_source='aws:s3'):
    """One classic S3 notification record. key is the object's key, form-URL-encoded here as
    S3 does; wire_key instead is put into the record exactly as given (MinIO's query-escaped
    keys, hostile ones). etag, sequencer and version_id are left out unless given. Of what S3
    adds and the service does not read (userIdentity, requestParameters, responseElements,
    configurationId, the bucket's arn and ownerIdentity) nothing is sent, so that a batch of
    more than EVENTS_MAX_RECORDS (1000) short records can still fit the 256 KiB body cap
    (server/events.h) and meet the record cap rather than the size cap."""
    if (key is None) == (wire_key is None):
        raise TypeError('s3_record needs exactly one of key= and wire_key=')
    obj = _s3_object(form_encode(key) if wire_key is None else wire_key, size,
                     {'eTag': etag, 'versionId': version_id, 'sequencer': sequencer})
    return {
        'eventVersion': event_version, 'eventSource': event_source, 'awsRegion': 'us-east-1',
        'eventTime': time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime()),
        'eventName': event_name,
        's3': {'s3SchemaVersion': '1.0', 'bucket': {'name': bucket}, 'object': obj},
    }


def records_event(records):
    """A classic S3 notification carrying records (a list of s3_record())."""
    return {'Records': list(records)}


def post_event(svc, event, headers=None, timeout=10):
    """POST /v1/events as an EventBridge API destination does. event: a dict (sent as JSON),
    or bytes/str sent as they are. headers are merged over EVENTBRIDGE_HEADERS; a value of None
    removes one (e.g. {'x-api-key': None} to send no credentials). Returns (status, headers,
    parsed JSON body or None when empty); raises ValueError, quoting it, on a non-JSON body."""
    hdrs = dict(EVENTBRIDGE_HEADERS)
    for name, value in (headers or {}).items():
        hdrs = {k: v for k, v in hdrs.items() if k.lower() != name.lower()}
        if value is not None:
            hdrs[name] = value
    if isinstance(event, (bytes, str)):
        body = event
    else:
        body = json.dumps(event, separators=(',', ':')).encode()  # compact, as AWS sends it
    status, rhdrs, data = http('POST', svc.url('/v1/events'), headers=hdrs, body=body,
                               timeout=timeout)
    if not data.strip():
        return status, rhdrs, None
    try:
        return status, rhdrs, json.loads(data)
    except ValueError:
        raise ValueError('POST /v1/events -> %d with a non-JSON body: %r' % (status, data[:500]))


def announce(svc, key, size=None, etag=None, sequencer=None, headers=None, timeout=10):
    """What EventBridge does once key is in svc's source bucket: post_event() of its "Object
    Created" event. Without size, size and etag are read from the object (HEAD), as S3 would
    report them. Returns post_event()'s (status, headers, body)."""
    if size is None:
        head = svc.s3.client().head_object(Bucket=svc.src_bucket, Key=key)
        size = head['ContentLength']
        etag = etag or head['ETag'].strip('"')
    event = eventbridge_event(bucket=svc.src_bucket, key=key, size=size, etag=etag,
                              sequencer=sequencer)
    return post_event(svc, event, headers=headers, timeout=timeout)


# -- S3 ---------------------------------------------------------------------------------------

def put_source(svc, key, data, content_type='image/jpeg'):
    """Puts data at key in svc's source bucket, as a direct upload or a migration would (not
    through the API). Returns (size, etag without quotes)."""
    resp = svc.s3.client().put_object(Bucket=svc.src_bucket, Key=key, Body=data,
                                      ContentType=content_type)
    return len(data), resp['ETag'].strip('"')


# -- status records ---------------------------------------------------------------------------

def quote_key(key):
    """key as a query value of GET /v1/images?key=."""
    return quote(key, safe='')


def get_record(svc, image_id=None, key=None, headers=AUTH, timeout=10):
    """The status record of image_id (GET /v1/images/{id}) or of a source key (GET
    /v1/images?key=; None when the service has no record of it). Any answer but 200 raises
    AssertionError."""
    if (image_id is None) == (key is None):
        raise TypeError('get_record needs exactly one of image_id= and key=')
    path = '/v1/images/' + image_id if image_id is not None else '/v1/images?key=' + quote_key(key)
    status, _, body = json_http('GET', svc.url(path), headers=headers, timeout=timeout)
    if status != 200:
        raise AssertionError('GET %s -> %d %r' % (path, status, body))
    if key is None:
        return body
    return body['items'][0] if body['items'] else None


def wait_record(svc, image_id=None, key=None, states=TERMINAL, timeout=60, headers=AUTH,
                interval=0.2):
    """Polls get_record() until the record's state is one of states; returns the record."""
    def reached():
        rec = get_record(svc, image_id=image_id, key=key, headers=headers)
        return rec if rec and rec['state'] in states else None
    return wait_for(reached, timeout, interval=interval,
                    what='%s in state %s' % ('image ' + image_id if image_id else key,
                                             ' or '.join(states)))


# -- waiting ----------------------------------------------------------------------------------

def wait_for(predicate, timeout, *, what, interval=0.1):
    """Calls predicate until it returns something truthy, and returns that. timeout is in
    seconds of a Release build, stretched by harness.scaled() for slow (sanitizer) builds. An
    exception from predicate counts as "not yet" (a server still starting refuses connections).
    After timeout raises AssertionError naming what was awaited, the last result and the last
    exception."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    result, error = None, None
    while True:
        try:
            result = predicate()
            error = None
            if result:
                return result
        except Exception as e:
            error = e
        if time.monotonic() >= deadline:
            seen = ('last error %s: %s' % (type(error).__name__, error) if error
                    else 'last result %.300r' % (result,))
            raise AssertionError('waited %.1fs for %s; %s' % (limit, what, seen))
        time.sleep(interval)


def without_urls(node):
    """node (a status record, or part of one) with every "url" member removed, at any depth:
    variants and their files carry presigned URLs, which each replica and each read signs
    anew."""
    if isinstance(node, dict):
        return {k: without_urls(v) for k, v in node.items() if k != 'url'}
    if isinstance(node, list):
        return [without_urls(v) for v in node]
    return node


# -- errors -----------------------------------------------------------------------------------

def assert_error(resp, status, code):
    """resp is (status, headers, body) as harness.http()/json_http()/post_event() return it
    (body parsed JSON, or bytes). Asserts the API's error answer: that status, a body that is
    exactly {"error": {"code", "message", "request_id"}}, that code, a one-line printable
    message, and request_id equal to the X-Request-Id header. Returns the error object (for
    checks of its message)."""
    got, headers, body = resp
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            raise AssertionError('%d with a non-JSON body, want a %d %s error: %.300r'
                                 % (got, status, code, body))
    if got != status:
        raise AssertionError('status %d, want %d (%s): %.500r' % (got, status, code, body))
    if not isinstance(body, dict) or set(body) != {'error'} or not isinstance(body['error'], dict):
        raise AssertionError('%d body is not {"error": {...}}: %.500r' % (got, body))
    err = body['error']
    if set(err) != {'code', 'message', 'request_id'}:
        raise AssertionError('error fields %s, want code, message, request_id: %.500r'
                             % (sorted(err), body))
    if err['code'] != code:
        raise AssertionError('error code %r, want %r: %.500r' % (err['code'], code, body))
    msg = err['message']
    if not isinstance(msg, str) or not msg or not all(32 <= ord(c) < 127 for c in msg):
        raise AssertionError('error message is not one printable line: %.500r' % (body,))
    want_id = (headers or {}).get('x-request-id')
    if not err['request_id'] or (headers is not None and err['request_id'] != want_id):
        raise AssertionError('request_id %r, X-Request-Id %r' % (err['request_id'], want_id))
    return err


# -- metrics ------------------------------------------------------------------------------

def metrics_text(svc):
    """GET /metrics as text; any answer but 200 raises AssertionError."""
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


# -- the process --------------------------------------------------------------------------

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
