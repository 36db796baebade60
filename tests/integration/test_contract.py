#!/usr/bin/python3
"""The contract: every route of the service, driven to every status the document gives it
that a client can cause, each response checked against openapi/openapi.yaml by contract.py
(through harness.http, with the check always on here), and the served /openapi.yaml equal to
the file. The last test fails if a documented status was never seen, so the document cannot
promise what the service does not do, nor the service answer what the document does not say.

Services: one wired normally (the real pipeline: a presigned PUT, events, variants, a failure
and its retry); one whose S3 is a black hole that accepts connections and never answers (its
one worker stays busy, so the queue fills: 429, and read-through fails: 503; then SIGTERM:
draining); one whose credentials endpoint is down (503)."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (API_TOKEN, EVENTS_API_KEY, Resizer, S3Server, free_port, http,  # noqa: E402
                     json_http, scaled, wait_until)
import contract  # noqa: E402

harness.CONTRACT = True  # this program checks every response, whatever RESIZER_CONTRACT says

AUTH = {'Authorization': 'Bearer ' + API_TOKEN}
EVENTS = {'x-api-key': EVENTS_API_KEY}
BASIC_AUTH = 'hook:hook-secret-0123'
CORPUS = os.path.join(harness.SOURCE_DIR, 'tests', 'corpus', 'make_corpus.sh')

# Documented statuses no test here can cause, and why.
UNREACHABLE = {
    ('GET', '/metrics', 503): 'only when rendering the metrics runs out of memory',
}


def eventbridge(bucket, key, size=1, etag=None):
    return {
        'version': '0', 'id': str(uuid.uuid4()), 'detail-type': 'Object Created',
        'source': 'aws.s3', 'account': '000000000000', 'time': '2025-01-01T12:00:00Z',
        'region': 'us-east-1', 'resources': ['arn:aws:s3:::' + bucket],
        'detail': {'version': '0', 'bucket': {'name': bucket},
                   'object': {'key': key, 'size': size, 'etag': etag or uuid.uuid4().hex,
                              'sequencer': '00617F08299329D189'},
                   'reason': 'PutObject'},
    }


def record(bucket, key, source='aws:s3', version='2.1', size=1, etag=None):
    return {'eventVersion': version, 'eventSource': source, 'awsRegion': 'us-east-1',
            'eventTime': '2025-01-01T12:00:00.000Z', 'eventName': 'ObjectCreated:Put',
            's3': {'s3SchemaVersion': '1.0', 'bucket': {'name': bucket},
                   'object': {'key': key, 'size': size, 'eTag': etag or uuid.uuid4().hex}}}


def post_event(svc, body, headers=EVENTS):
    return json_http('POST', svc.url('/v1/events'), body, headers=headers)


class BlackHole:
    """A TCP port that takes connections and never answers: an S3 that hangs."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(128)
        self.endpoint = 'http://127.0.0.1:%d' % self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


class ContractTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s3 = S3Server()
        cls.svc = Resizer(cls.s3, env={'EVENTS_BASIC_AUTH': BASIC_AUTH, 'WORKERS': '2'})
        cls.client = cls.s3.client()
        cls.corpus = tempfile.mkdtemp(prefix='resizer-contract-')
        subprocess.run([CORPUS, cls.corpus], check=True, stdout=subprocess.DEVNULL,
                       timeout=scaled(120))

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()
        cls.s3.close()
        subprocess.run(['rm', '-rf', cls.corpus], check=False)

    # -- helpers --------------------------------------------------------------------------

    def get(self, path, headers=AUTH):
        return json_http('GET', self.svc.url(path), headers=headers)

    def assert_error(self, resp, status, code):
        got, _, body = resp
        self.assertEqual(got, status, body)
        self.assertEqual(body['error']['code'], code, body)

    def corpus_bytes(self, name):
        with open(os.path.join(self.corpus, name), 'rb') as f:
            return f.read()

    def put_source(self, key, data):
        """Puts data at key in the source bucket; returns its ETag."""
        r = self.client.put_object(Bucket=self.svc.src_bucket, Key=key, Body=data,
                                   ContentType='image/jpeg')
        return r['ETag'].strip('"')

    def wait_state(self, image_id, states=('done', 'failed'), svc=None):
        svc = svc or self.svc

        def state():
            status, _, body = json_http('GET', svc.url('/v1/images/' + image_id), headers=AUTH)
            return body if status == 200 and body['state'] in states else None
        return wait_until(state, timeout=scaled(30), what='image %s in %s' % (image_id, states))

    def upload_and_process(self, data, content_type='image/jpeg'):
        """The client's flow: POST /v1/uploads, the presigned PUT, the event. Returns the
        final status record."""
        status, headers, up = json_http('POST', self.svc.url('/v1/uploads'),
                                        {'filename': 'cat.jpg', 'content_type': content_type},
                                        headers=AUTH)
        self.assertEqual(status, 201, up)
        self.assertEqual(headers['location'], up['status_url'])
        status, _, body = http('PUT', up['upload']['url'], headers=up['upload']['headers'],
                               body=data)
        self.assertEqual(status, 200, body)
        head = self.client.head_object(Bucket=self.svc.src_bucket, Key=up['key'])
        status, _, res = post_event(self.svc, eventbridge(self.svc.src_bucket, up['key'],
                                                          len(data), head['ETag'].strip('"')))
        self.assertEqual((status, res['accepted']), (202, 1), res)
        return self.wait_state(up['id'])

    # -- operations -----------------------------------------------------------------------

    def test_operations_routes(self):
        self.assertEqual(self.get('/healthz', {})[2], {'status': 'ok'})
        self.assertEqual(http('HEAD', self.svc.url('/healthz'))[0], 200)
        status, _, body = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(
            self.get('/readyz', {})), timeout=scaled(15), what='/readyz 200')
        self.assertEqual(body['status'], 'ready')
        status, headers, text = http('GET', self.svc.url('/metrics'))
        self.assertEqual(status, 200)
        self.assertIn(b'resizer_http_requests_total', text)

    def test_openapi_served_byte_for_byte(self):
        status, headers, body = http('GET', self.svc.url('/openapi.yaml'))
        self.assertEqual(status, 200)
        self.assertEqual(headers['content-type'], 'application/yaml')
        with open(contract.SPEC_PATH, 'rb') as f:
            self.assertEqual(body, f.read())

    def test_unrouted_paths_and_methods(self):
        for path in ('/', '/nope', '/v1/images/%s/variants' % uuid.uuid4(), '/v1/uploads/x'):
            self.assert_error(self.get(path), 404, 'not_found')
        some_id = str(uuid.uuid4())
        for method, path, allow in (('GET', '/v1/uploads', 'POST'),
                                    ('PUT', '/v1/events', 'POST, HEAD'),
                                    ('POST', '/healthz', 'GET, HEAD'),
                                    ('DELETE', '/v1/images/' + some_id, 'GET, HEAD'),
                                    ('GET', '/v1/images/%s/retry' % some_id, 'POST'),
                                    ('POST', '/openapi.yaml', 'GET, HEAD')):
            status, headers, body = json_http(method, self.svc.url(path), headers=AUTH)
            self.assertEqual((status, headers['allow']), (405, allow), (method, path, body))
        # Header fields over libmicrohttpd's memory limit: its own answer, before routing.
        status, _, _ = http('GET', self.svc.url('/healthz'), headers={'X-Big': 'b' * 40000})
        self.assertEqual(status, 431)

    # -- uploads --------------------------------------------------------------------------

    def test_uploads_put_and_post(self):
        for method, field in (('PUT', 'headers'), ('POST', 'fields')):
            status, _, body = json_http('POST', self.svc.url('/v1/uploads'),
                                        {'filename': 'cat.png', 'content_type': 'image/png',
                                         'method': method}, headers=AUTH)
            self.assertEqual(status, 201, body)
            self.assertEqual(body['upload'][field]['Content-Type'], 'image/png')
            self.assertTrue(body['key'].endswith('.png'))

    def test_uploads_refusals(self):
        url = self.svc.url('/v1/uploads')
        cases = [
            (b'{"content_type":', 'invalid_json'),
            (b'', 'invalid_request'),
            (b'["image/jpeg"]', 'invalid_request'),
            (b'{"filename":"cat.jpg"}', 'invalid_field'),
            (b'{"filename":"a\\nb.jpg","content_type":"image/jpeg"}', 'invalid_field'),
            (b'{"content_type":"image/jpeg","method":"GET"}', 'invalid_field'),
            (b'{"content_type":"text/plain"}', 'unsupported_content_type'),
        ]
        for raw, code in cases:
            self.assert_error(json_http('POST', url, body=raw, headers=AUTH), 400, code)
        status, headers, body = json_http('POST', url, {'content_type': 'image/jpeg'})
        self.assertEqual((status, headers['www-authenticate']), (401, 'Bearer'), body)
        self.assert_error(json_http('POST', url, {'content_type': 'image/jpeg'},
                                    headers={'Authorization': 'Bearer wrong-token-0123456789'}),
                          401, 'unauthorized')
        big = json.dumps({'content_type': 'image/jpeg', 'filename': 'a' * 20000})
        self.assert_error(json_http('POST', url, body=big, headers=AUTH), 413, 'too_large')

    # -- events ---------------------------------------------------------------------------

    def test_event_shapes_each_answered(self):
        bucket = self.svc.src_bucket
        key = 'images/shape-%s.jpg' % uuid.uuid4().hex
        status, _, body = post_event(self.svc, eventbridge(bucket, key))
        self.assertEqual((status, body['accepted']), (202, 1), body)
        status, _, body = post_event(self.svc, eventbridge(bucket, key))
        self.assertEqual((status, body['duplicates']), (202, 1), body)
        status, _, body = post_event(self.svc, {'Records': [record(bucket, 'images/r%s.jpg'
                                                                  % uuid.uuid4().hex),
                                                            record('other-bucket', 'images/x.jpg')]})
        self.assertEqual(body, {'accepted': 1, 'duplicates': 0, 'ignored': 1})
        test_event = {'Service': 'Amazon S3', 'Event': 's3:TestEvent', 'Bucket': bucket,
                      'Time': '2025-01-01T12:00:00.000Z', 'RequestId': '5582815E1AEA5ADF',
                      'HostId': 'x'}
        self.assertEqual(post_event(self.svc, test_event)[2],
                         {'accepted': 0, 'duplicates': 0, 'ignored': 1})
        minio_key = 'images/minio-%s.jpg' % uuid.uuid4().hex
        minio = {'EventName': 's3:ObjectCreated:Put', 'Key': bucket + '/' + minio_key,
                 'Records': [dict(record(bucket, minio_key, source='minio:s3', version='2.0'),
                                  eventName='s3:ObjectCreated:Put')]}
        self.assertEqual(post_event(self.svc, minio)[2]['accepted'], 1)
        basic = 'Basic ' + base64.b64encode(BASIC_AUTH.encode()).decode()
        self.assertEqual(post_event(self.svc, test_event, {'Authorization': basic})[0], 202)
        self.assertEqual(http('HEAD', self.svc.url('/v1/events'))[0], 200)

    def test_event_refusals(self):
        bucket = self.svc.src_bucket
        self.assert_error(post_event(self.svc, eventbridge(bucket, 'images/a.jpg'), {}),
                          401, 'unauthorized')
        self.assert_error(post_event(self.svc, eventbridge(bucket, 'images/a.jpg'),
                                     {'x-api-key': 'wrong'}), 401, 'unauthorized')
        self.assert_error(post_event(self.svc, eventbridge(bucket, 'images/a.jpg'),
                                     {'Authorization': 'Basic aG9vazp3cm9uZw=='}),
                          401, 'unauthorized')
        self.assert_error(json_http('POST', self.svc.url('/v1/events'), body=b'{"Records":',
                                    headers=EVENTS), 400, 'invalid_event')
        self.assert_error(post_event(self.svc, {'Records': [{'eventVersion': '2.1'}]}),
                          400, 'invalid_event')
        many = {'Records': [record(bucket, 'images/%d.jpg' % i) for i in range(1001)]}
        self.assert_error(post_event(self.svc, many), 413, 'too_large')
        huge = b'{"pad":"' + b'x' * (300 * 1024) + b'"}'
        self.assert_error(json_http('POST', self.svc.url('/v1/events'), body=huge,
                                    headers=EVENTS), 413, 'too_large')

    # -- images ---------------------------------------------------------------------------

    def test_done_image_status_variants_and_no_retry(self):
        done = self.upload_and_process(self.corpus_bytes('small.jpg'))
        self.assertEqual(done['state'], 'done', done)
        self.assertEqual(sorted(v['name'] for v in done['variants']),
                         ['desktop', 'phone', 'tablet'])
        base = '/v1/images/%s' % done['id']
        status, headers, _ = http('GET', self.svc.url(base + '/variants/phone'), headers=AUTH)
        self.assertEqual(status, 302)
        status, _, jpeg = http('GET', headers['location'])
        self.assertEqual((status, jpeg[:3]), (200, b'\xff\xd8\xff'))
        self.assert_error(self.get(base + '/variants/poster'), 404, 'not_found')
        # Only a JPEG is stored (OUTPUT_FORMATS=same): a client that takes only WebP gets 406.
        self.assert_error(self.get(base + '/variants/phone', dict(AUTH, Accept='image/webp')),
                          406, 'not_acceptable')
        self.assert_error(self.get(base + '/variants/phone?format=bmp'), 400,
                          'invalid_parameter')
        self.assert_error(json_http('POST', self.svc.url(base + '/retry'), headers=AUTH),
                          409, 'not_failed')
        # The same record by key, in the list shape.
        status, _, page = self.get('/v1/images?key=' + done['source']['key'])
        self.assertEqual([i['id'] for i in page['items']], [done['id']])

    def test_failed_image_listed_and_retried(self):
        key = 'images/broken-%s.jpg' % uuid.uuid4().hex
        etag = self.put_source(key, self.corpus_bytes('text.jpg'))
        status, _, res = post_event(self.svc, {'Records': [record(self.svc.src_bucket, key,
                                                                  etag=etag)]})
        self.assertEqual(res['accepted'], 1, res)
        page = wait_until(lambda: (lambda p: p if p['items'] and p['items'][0]['state']
                                   == 'failed' else None)(self.get('/v1/images?key=' + key)[2]),
                          timeout=scaled(30), what='a failed record for ' + key)
        failed = page['items'][0]
        self.assertEqual(failed['error']['code'], 'unsupported_format')
        status, _, listed = self.get('/v1/images?state=failed&limit=200')
        self.assertIn(failed['id'], [i['id'] for i in listed['items']])
        base = '/v1/images/%s' % failed['id']
        self.assert_error(json_http('POST', self.svc.url(base + '/retry'), body=b'{}',
                                    headers=AUTH), 413, 'too_large')
        status, _, body = json_http('POST', self.svc.url(base + '/retry'), headers=AUTH)
        self.assertEqual((status, body), (202, {'id': failed['id'], 'state': 'queued'}))
        again = self.wait_state(failed['id'], ('failed',))
        self.assertEqual(again['attempts'], 2, again)

    def test_pending_image_and_pages(self):
        ids = []
        for _ in range(3):
            status, _, up = json_http('POST', self.svc.url('/v1/uploads'),
                                      {'content_type': 'image/webp'}, headers=AUTH)
            ids.append(up['id'])
        status, _, rec = self.get('/v1/images/' + ids[0])
        self.assertEqual((status, rec['state']), (200, 'pending'))
        self.assert_error(self.get('/v1/images/%s/variants/phone' % ids[0]), 404, 'not_found')
        status, _, page = self.get('/v1/images?state=pending&limit=2')
        self.assertEqual(len(page['items']), 2)
        self.assertTrue(page['next_cursor'])
        status, _, page2 = self.get('/v1/images?state=pending&limit=2&cursor='
                                    + page['next_cursor'])
        self.assertEqual(status, 200)
        self.assertFalse({i['id'] for i in page['items']} & {i['id'] for i in page2['items']})

    def test_images_refusals(self):
        missing = str(uuid.uuid4())
        for path in ('/v1/images/' + missing, '/v1/images/%s/variants/phone' % missing):
            self.assert_error(self.get(path), 404, 'not_found')
            self.assert_error(self.get(path, {}), 401, 'unauthorized')
            self.assert_error(self.get(path.replace(missing, 'NOT-A-UUID')), 400, 'invalid_id')
        retry = self.svc.url('/v1/images/%s/retry' % missing)
        self.assert_error(json_http('POST', retry, headers=AUTH), 404, 'not_found')
        self.assert_error(json_http('POST', retry), 401, 'unauthorized')
        self.assert_error(json_http('POST', retry.replace(missing, missing.upper()),
                                    headers=AUTH), 400, 'invalid_id')
        self.assert_error(self.get('/v1/images', {}), 401, 'unauthorized')
        for query in ('state=bogus', 'limit=0', 'limit=201', 'limit=x', 'cursor=zz',
                      'cursor=c', 'key=', 'key=' + 'k' * 1025):
            self.assert_error(self.get('/v1/images?' + query), 400, 'invalid_parameter')

    def test_unusable_status_record_is_404(self):
        # A record in the destination bucket that is not one of ours (not JSON, not a
        # record): outside input, logged and ignored, so as far as a client knows there is
        # no such image.
        image_id = str(uuid.uuid4())
        self.client.put_object(Bucket=self.svc.dest_bucket, Key='_status/ids/' + image_id,
                               Body=b'{"not": "a record"')
        self.client.put_object(Bucket=self.svc.dest_bucket, Key='_status/keys/garbled.jpg',
                               Body=b'[]')
        base = '/v1/images/' + image_id
        self.assert_error(self.get(base), 404, 'not_found')
        self.assert_error(self.get(base + '/variants/phone'), 404, 'not_found')
        self.assert_error(json_http('POST', self.svc.url(base + '/retry'), headers=AUTH),
                          404, 'not_found')
        status, _, body = self.get('/v1/images?key=images/garbled.jpg')
        self.assertEqual((status, body), (200, {'items': [], 'next_cursor': None}))
        self.assertIn('"status_record_rejected"', self.svc.log_text())

    def test_metrics_token(self):
        with Resizer(self.s3, env={'METRICS_TOKEN': 'metrics-token-0123456789'}) as svc:
            status, headers, body = json_http('GET', svc.url('/metrics'))
            self.assertEqual((status, body['error']['code']), (401, 'unauthorized'))
            self.assertEqual(headers['www-authenticate'], 'Bearer realm="metrics"')
            status, _, _ = http('GET', svc.url('/metrics'),
                                headers={'Authorization': 'Bearer metrics-token-0123456789'})
            self.assertEqual(status, 200)


class FullIndexTest(unittest.TestCase):
    def test_upload_urls_give_way_to_work_then_429_when_all_is_in_flight(self):
        """Pending uploads never block intake: events push them out of a full index. Only an
        index full of work in flight (an S3 that hangs, so nothing finishes) refuses more."""
        hole = BlackHole()
        self.addCleanup(hole.close)
        s3 = S3Server()
        self.addCleanup(s3.close)
        env = {'INDEX_MAX_ENTRIES': '100', 'S3_ENDPOINT': hole.endpoint, 'WORKERS': '1',
               'QUEUE_SIZE': '200', 'S3_TIMEOUT': '60', 'SHUTDOWN_GRACE': '1'}
        with Resizer(s3, env=env) as svc:
            for i in range(100):
                status, _, body = json_http('POST', svc.url('/v1/uploads'),
                                            {'content_type': 'image/jpeg'}, headers=AUTH)
                self.assertEqual(status, 201, (i, body))
            for i in range(100):
                status, _, body = post_event(svc, eventbridge(svc.src_bucket, 'images/e%d.jpg' % i))
                self.assertEqual((status, body['accepted']), (202, 1), (i, body))
            status, headers, body = json_http('POST', svc.url('/v1/uploads'),
                                              {'content_type': 'image/jpeg'}, headers=AUTH)
            self.assertEqual((status, body['error']['code']), (429, 'busy'))
            self.assertEqual(headers['retry-after'], '1')
            status, _, body = post_event(svc, eventbridge(svc.src_bucket, 'images/more.jpg'))
            self.assertEqual((status, body['error']['code']), (429, 'busy'))


class CredentialsDownTest(unittest.TestCase):
    def test_upload_when_credentials_cannot_be_had_is_503(self):
        s3 = S3Server()
        self.addCleanup(s3.close)
        dead = 'http://127.0.0.1:%d/creds' % free_port()
        env = {'AWS_ACCESS_KEY_ID': None, 'AWS_SECRET_ACCESS_KEY': None,
               'AWS_CONTAINER_CREDENTIALS_FULL_URI': dead}
        with Resizer(s3, env=env) as svc:
            status, headers, body = json_http('POST', svc.url('/v1/uploads'),
                                              {'content_type': 'image/jpeg'}, headers=AUTH)
            self.assertEqual(status, 503, body)
            self.assertEqual(body['error']['code'], 'upstream_unavailable')
            self.assertTrue(int(headers['retry-after']) >= 1)


class LookupFloodTest(unittest.TestCase):
    """Status reads of unknown ids against an S3 that hangs run on look-up threads, not on
    the HTTP threads: /healthz stays fast while 40 of them wait, and each is answered 503
    in bounded time (the 2 s read timeout, or 2 s queued behind the stalled ones)."""

    def test_unknown_ids_do_not_stall_healthz(self):
        hole = BlackHole()
        self.addCleanup(hole.close)
        s3 = S3Server()
        self.addCleanup(s3.close)
        env = {'S3_ENDPOINT': hole.endpoint, 'HTTP_THREADS': '2', 'SHUTDOWN_GRACE': '1'}
        with Resizer(s3, env=env) as svc:
            answers = []

            def lookup():
                start = time.monotonic()
                status = json_http('GET', svc.url('/v1/images/' + str(uuid.uuid4())),
                                   headers=AUTH, timeout=30)[0]
                answers.append((status, time.monotonic() - start))

            flood = [threading.Thread(target=lookup) for _ in range(40)]
            for t in flood:
                t.start()
            healthz = []
            while any(t.is_alive() for t in flood) and len(healthz) < 40:
                start = time.monotonic()
                self.assertEqual(http('GET', svc.url('/healthz'), timeout=10)[0], 200)
                healthz.append(time.monotonic() - start)
                time.sleep(0.05)
            for t in flood:
                t.join()
            self.assertEqual(sorted({s for s, _ in answers}), [503], answers)
            self.assertLess(max(secs for _, secs in answers), scaled(8), answers)
            self.assertGreater(len(healthz), 10)
            self.assertLess(max(healthz), scaled(0.5), healthz)
            sys.stderr.write('\n40 look-ups on a hung S3: all 503 within %.1f s; /healthz max '
                             '%.0f ms over %d probes\n' % (max(s for _, s in answers),
                                                          max(healthz) * 1000, len(healthz)))


class StuckS3Test(unittest.TestCase):
    """An S3 that never answers: one worker stuck on the first job, a queue of one."""

    def test_back_pressure_then_draining(self):
        hole = BlackHole()
        self.addCleanup(hole.close)
        s3 = S3Server()
        self.addCleanup(s3.close)
        env = {'S3_ENDPOINT': hole.endpoint, 'WORKERS': '1', 'QUEUE_SIZE': '1',
               'S3_TIMEOUT': '60', 'SHUTDOWN_GRACE': '30'}
        svc = Resizer(s3, env=env)
        self.addCleanup(svc.close)
        bucket = svc.src_bucket

        def get(path):
            return json_http('GET', svc.url(path), headers=AUTH)

        def event(key):
            return post_event(svc, eventbridge(bucket, key))

        # Read-through to the hanging S3 gives up after its short timeout.
        some_id = str(uuid.uuid4())
        for path in ('/v1/images/' + some_id, '/v1/images/%s/variants/phone' % some_id,
                     '/v1/images?key=images/unknown.jpg'):
            status, headers, body = get(path)
            self.assertEqual((status, body['error']['code']), (503, 'upstream_unavailable'))
            self.assertIn('retry-after', headers)
        status, _, body = json_http('POST', svc.url('/v1/images/%s/retry' % some_id),
                                    headers=AUTH)
        self.assertEqual(status, 503, body)
        # The first job occupies the worker, the second fills the queue, the third is refused.
        self.assertEqual(event('images/a.jpg')[2]['accepted'], 1)
        first = wait_until(lambda: (lambda p: p['items'][0] if p['items'] and p['items'][0][
            'state'] == 'processing' else None)(get('/v1/images?key=images/a.jpg')[2]),
            timeout=scaled(10), what='the first job processing')
        self.assertEqual(event('images/b.jpg')[2]['accepted'], 1)
        status, headers, body = event('images/c.jpg')
        self.assertEqual((status, body['error']['code']), (429, 'busy'))
        self.assertEqual(headers['retry-after'], '1')
        retry = svc.url('/v1/images/%s/retry' % first['id'])
        self.assertEqual(json_http('POST', retry, headers=AUTH)[0], 429)
        status, _, body = json_http('GET', svc.url('/readyz'))
        self.assertEqual((status, body['status']), (503, 'not_ready'))
        # SIGTERM: the stuck job keeps the process draining for SHUTDOWN_GRACE.
        svc.proc.send_signal(signal.SIGTERM)
        status, headers, body = wait_until(
            lambda: (lambda r: r if r[0] == 503 else None)(event('images/d.jpg')),
            timeout=scaled(10), what='events refused while draining')
        self.assertEqual(body['error']['code'], 'draining')
        self.assertEqual(json_http('POST', retry, headers=AUTH)[2]['error']['code'], 'draining')
        status, _, body = json_http('GET', svc.url('/readyz'))
        self.assertIn('draining', body['reason'])


class CheckerTest(unittest.TestCase):
    """The check itself fails on what a client would trip over: real responses, altered."""

    @classmethod
    def setUpClass(cls):
        cls.s3 = S3Server()
        cls.svc = Resizer(cls.s3)
        cls.checker = contract.Contract()  # not the shared one: these failures are wanted

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()
        cls.s3.close()

    def raw(self, method, path, body=None, headers=AUTH):
        # harness.http would check the real response with the shared contract; fine, it
        # must pass. The alterations below go to self.checker only.
        return http(method, self.svc.url(path), headers=headers, body=body)

    def assert_rejected(self, method, path, status, headers, body, why):
        with self.assertRaises(AssertionError) as ctx:
            self.checker.check(method, path, status, headers, body)
        self.assertIn(why, str(ctx.exception))
        self.assertIn('%s %s -> %d' % (method, path, status), str(ctx.exception))

    def test_alterations_are_caught(self):
        status, headers, body = self.raw('GET', '/healthz')
        self.checker.check('GET', '/healthz', status, headers, body)  # as sent: fine
        self.assert_rejected('GET', '/healthz', 201, headers, body, 'not documented')
        self.assert_rejected('GET', '/healthz', 200, headers, b'{"status":"ok","x":1}',
                             'Additional properties')
        self.assert_rejected('GET', '/healthz', 200, {k: v for k, v in headers.items()
                                                      if k != 'x-request-id'}, body,
                             'X-Request-Id is missing')
        self.assert_rejected('GET', '/healthz', 200, dict(headers, **{'content-type':
                                                                      'text/html'}), body,
                             'Content-Type')
        self.assert_rejected('GET', '/nope', 200, headers, body, 'matches no route')
        status, headers, body = self.raw('POST', '/v1/uploads', b'{"content_type":"image/png"}')
        self.checker.check('POST', '/v1/uploads', status, headers, body)
        self.assert_rejected('POST', '/v1/uploads', status,
                             {k: v for k, v in headers.items() if k != 'location'}, body,
                             'Location is missing')
        up = json.loads(body)
        up['upload']['expires_at'] = 'tomorrow'
        self.assert_rejected('POST', '/v1/uploads', status, headers, json.dumps(up).encode(),
                             'date-time')
        status, headers, body = self.raw('DELETE', '/v1/events')
        self.checker.check('DELETE', '/v1/events', status, headers, body)
        self.assert_rejected('DELETE', '/v1/events', status, dict(headers, allow='POST'), body,
                             'Allow')
        status, headers, body = self.raw('GET', '/v1/images/%s' % uuid.uuid4(), headers={})
        self.assert_rejected('GET', '/v1/images/x', status, {k: v for k, v in headers.items()
                                                             if k != 'www-authenticate'},
                             body, 'WWW-Authenticate is missing')
        self.assert_rejected('GET', '/v1/images/x', status, dict(headers, **{'x-request-id':
                                                                             'other'}),
                             body, 'request_id')


class ZzCoverageTest(unittest.TestCase):
    """Runs last (unittest sorts classes by name)."""

    def test_every_documented_status_was_seen(self):
        c = contract.shared()
        documented = set()
        for template, item in c.doc['paths'].items():
            for method in contract.METHODS:
                for status in item.get(method, {}).get('responses', {}):
                    documented.add((method.upper(), template, int(status)))
        seen = {(('GET' if m == 'HEAD' and (m, t, s) not in documented else m), t, s)
                for m, t, s in c.seen}
        missing = sorted(documented - seen - set(UNREACHABLE))
        self.assertEqual(missing, [], 'documented but never caused here')
        self.assertIn(('GET', 'unrouted', 404), c.seen)
        self.assertTrue(any(s == 405 for _, _, s in c.seen))
        self.assertIn(('GET', 'unrouted', 431), c.seen)
        self.assertFalse(c.violations, c.violations)
        sys.stderr.write('contract: %d responses checked, %d of %d documented statuses seen\n'
                         % (c.checked, len(documented & seen), len(documented)))


if __name__ == '__main__':
    unittest.main(verbosity=2)
