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
from harness import Resizer, S3Server, free_port, http, json_http, scaled  # noqa: E402
from fixtures import (AUTH, announce, assert_error, eventbridge_event, post_event,  # noqa: E402
                      put_source, records_event, s3_record, wait_for, wait_record)
import contract  # noqa: E402

harness.CONTRACT = True  # this program checks every response, whatever RESIZER_CONTRACT says

BASIC_AUTH = 'hook:hook-secret-0123'
ORIGINS = ('https://app.example.com', 'http://127.0.0.1:3000')
FOREIGN = 'https://evil.example.com'
EXPOSED = 'X-Request-Id, Location, Retry-After'
CORS_HEADERS = ('access-control-allow-origin', 'access-control-allow-methods',
                'access-control-allow-headers', 'access-control-max-age',
                'access-control-expose-headers')
CORPUS = os.path.join(harness.SOURCE_DIR, 'tests', 'corpus', 'make_corpus.sh')

# Documented statuses no test here can cause, and why.
UNREACHABLE = {
    ('GET', '/metrics', 503): 'only when rendering the metrics runs out of memory',
}


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
        cls.svc = Resizer(cls.s3, env={'EVENTS_BASIC_AUTH': BASIC_AUTH, 'WORKERS': '2',
                                       'CORS_ALLOWED_ORIGINS': ' , '.join(ORIGINS)})
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

    def corpus_bytes(self, name):
        with open(os.path.join(self.corpus, name), 'rb') as f:
            return f.read()

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
        status, _, res = announce(self.svc, up['key'])
        self.assertEqual((status, res['accepted']), (202, 1), res)
        return wait_record(self.svc, image_id=up['id'], timeout=30)

    # -- operations -----------------------------------------------------------------------

    def test_operations_routes(self):
        self.assertEqual(self.get('/healthz', {})[2], {'status': 'ok'})
        self.assertEqual(http('HEAD', self.svc.url('/healthz'))[0], 200)
        status, _, body = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
          self.get('/readyz', {})), 15, what='/readyz 200')
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
        for path in ('/index.html', '/nope', '/v1/images/%s/variants' % uuid.uuid4(),
                     '/v1/uploads/x'):
            assert_error(self.get(path), 404, 'not_found')
        some_id = str(uuid.uuid4())
        for method, path, allow in (('GET', '/v1/uploads', 'POST, OPTIONS'),
                                    ('PUT', '/v1/events', 'POST, HEAD'),
                                    ('OPTIONS', '/v1/events', 'POST, HEAD'),
                                    ('POST', '/healthz', 'GET, HEAD'),
                                    ('OPTIONS', '/healthz', 'GET, HEAD'),
                                    ('DELETE', '/v1/images/' + some_id, 'GET, HEAD, OPTIONS'),
                                    ('GET', '/v1/images/%s/retry' % some_id, 'POST, OPTIONS'),
                                    ('POST', '/openapi.yaml', 'GET, HEAD'),
                                    ('POST', '/', 'GET, HEAD')):
            status, headers, body = json_http(method, self.svc.url(path), headers=AUTH)
            self.assertEqual((status, headers['allow']), (405, allow), (method, path, body))
        # Header fields over libmicrohttpd's memory limit: its own answer, before routing.
        status, _, _ = http('GET', self.svc.url('/healthz'), headers={'X-Big': 'b' * 40000})
        self.assertEqual(status, 431)

    # -- the page ------------------------------------------------------------------------

    def test_page_script_and_style(self):
        for path, ctype, marker in (('/', 'text/html; charset=utf-8', b'<script src="app.js"'),
                                    ('/app.js', 'text/javascript; charset=utf-8', b"'use strict'"),
                                    ('/app.css', 'text/css; charset=utf-8', b':root')):
            status, headers, body = http('GET', self.svc.url(path))
            self.assertEqual((status, headers['content-type']), (200, ctype), path)
            self.assertIn(marker, body)
            with open(os.path.join(harness.SOURCE_DIR, 'web', 'index.html' if path == '/'
                                   else path[1:]), 'rb') as f:
                self.assertEqual(body, f.read(), 'served as built in: ' + path)
            csp = headers['content-security-policy']
            self.assertIn("script-src 'self';", csp)
            self.assertNotIn('unsafe-inline', csp)
            s3 = self.s3.endpoint  # path style here: the endpoint itself, no subdomains
            self.assertIn("img-src 'self' %s;" % s3, csp)
            self.assertIn("connect-src 'self' %s;" % s3, csp)
            self.assertEqual(headers['x-content-type-options'], 'nosniff')
            self.assertNotIn('vary', headers)  # not a CORS route
            self.assertEqual(http('HEAD', self.svc.url(path))[:1], (200,))
        # The page runs no inline script and no inline style, so the policy can forbid both.
        status, _, html = http('GET', self.svc.url('/'))
        self.assertNotRegex(html, rb'<script(?![^>]*\bsrc=)|\son[a-z]+=|<style|style=')

    # -- CORS -----------------------------------------------------------------------------

    def preflight(self, path, origin, method, headers='authorization, content-type'):
        return http('OPTIONS', self.svc.url(path), headers={
            'Origin': origin, 'Access-Control-Request-Method': method,
            'Access-Control-Request-Headers': headers})

    def test_preflights_answered_without_credentials(self):
        some_id = str(uuid.uuid4())
        for path, method, allow in (
                ('/v1/uploads', 'POST', 'POST, OPTIONS'),
                ('/v1/images', 'GET', 'GET, HEAD, OPTIONS'),
                ('/v1/images/' + some_id, 'GET', 'GET, HEAD, OPTIONS'),
                ('/v1/images/%s/variants/phone' % some_id, 'GET', 'GET, HEAD, OPTIONS'),
                ('/v1/images/%s/retry' % some_id, 'POST', 'POST, OPTIONS')):
            for origin in ORIGINS:
                status, headers, body = self.preflight(path, origin, method,
                                                       'Authorization,Content-Type,X-Evil')
                self.assertEqual((status, body), (204, b''), path)
                self.assertEqual(headers['access-control-allow-origin'], origin)
                self.assertEqual(headers['access-control-allow-methods'], allow)
                self.assertEqual(headers['access-control-allow-headers'],
                                 'authorization, content-type')
                self.assertEqual(headers['access-control-max-age'], '600')
                self.assertEqual((headers['vary'], headers['allow']), ('Origin', allow))
                self.assertNotIn('access-control-allow-credentials', headers)
            # A foreign origin, a look-alike, and no Origin at all: answered, never granted.
            for origin in (FOREIGN, ORIGINS[0] + '.evil.com', ORIGINS[0] + '/', 'null', '*'):
                status, headers, body = self.preflight(path, origin, method)
                self.assertEqual((status, headers['vary']), (204, 'Origin'), origin)
                self.assertFalse(set(CORS_HEADERS) & set(headers), (origin, headers))
        status, headers, _ = http('OPTIONS', self.svc.url('/v1/uploads'))
        self.assertEqual((status, headers['allow']), (204, 'POST, OPTIONS'))
        # Only the requested headers that are allowed; none requested, none granted.
        _, headers, _ = self.preflight('/v1/uploads', ORIGINS[1], 'POST', 'content-type')
        self.assertEqual(headers['access-control-allow-headers'], 'content-type')
        _, headers, _ = self.preflight('/v1/uploads', ORIGINS[1], 'POST', 'x-evil')
        self.assertNotIn('access-control-allow-headers', headers)
        # A preflight is decided before any body is read, whatever it claims to carry.
        status, headers, _ = http('OPTIONS', self.svc.url('/v1/uploads'),
                                  headers={'Origin': ORIGINS[0], 'Content-Length': '99999999'})
        self.assertEqual((status, headers['access-control-allow-origin']), (204, ORIGINS[0]))

    def assert_granted(self, headers, origin):
        self.assertEqual(headers['access-control-allow-origin'], origin)
        self.assertEqual(headers['access-control-expose-headers'], EXPOSED)
        self.assertEqual(headers['vary'], 'Origin')

    def test_real_answers_carry_the_grant_for_an_allowed_origin_only(self):
        origin = {'Origin': ORIGINS[0]}
        status, headers, up = json_http('POST', self.svc.url('/v1/uploads'),
                                        {'content_type': 'image/png'},
                                        headers=dict(AUTH, **origin))
        self.assertEqual(status, 201)
        self.assert_granted(headers, ORIGINS[0])
        # Early answers too (before the handler, before the body): 401, 413, 405.
        early = [
            json_http('GET', self.svc.url('/v1/images'), headers=origin),
            json_http('POST', self.svc.url('/v1/uploads'), body=b'x' * 20000,
                      headers=dict(AUTH, **origin)),
            json_http('DELETE', self.svc.url('/v1/uploads'), headers=dict(AUTH, **origin)),
            json_http('GET', self.svc.url('/v1/images/' + str(uuid.uuid4())),
                      headers=dict(AUTH, **origin)),
            json_http('GET', self.svc.url(up['status_url']), headers=dict(AUTH, **origin)),
        ]
        self.assertEqual([r[0] for r in early], [401, 413, 405, 404, 200])
        for status, headers, _ in early:
            self.assert_granted(headers, ORIGINS[0])
        # A foreign origin: the same answers, no grant; Vary always on these paths.
        for headers in ({'Origin': FOREIGN}, {}):
            status, got, _ = json_http('GET', self.svc.url(up['status_url']),
                                       headers=dict(AUTH, **headers))
            self.assertEqual((status, got['vary']), (200, 'Origin'))
            self.assertFalse(set(CORS_HEADERS) & set(got), got)
        # Events and operations are not for browsers: no grant, no Vary.
        for method, path in (('POST', '/v1/events'), ('GET', '/healthz'), ('GET', '/metrics'),
                             ('GET', '/openapi.yaml'), ('GET', '/'), ('GET', '/nope')):
            status, got, _ = http(method, self.svc.url(path), headers=origin)
            self.assertFalse(set(CORS_HEADERS + ('vary',)) & set(got), (path, got))

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
            assert_error(json_http('POST', url, body=raw, headers=AUTH), 400, code)
        status, headers, body = json_http('POST', url, {'content_type': 'image/jpeg'})
        self.assertEqual((status, headers['www-authenticate']), (401, 'Bearer'), body)
        assert_error(json_http('POST', url, {'content_type': 'image/jpeg'},
                                    headers={'Authorization': 'Bearer wrong-token-0123456789'}),
                          401, 'unauthorized')
        big = json.dumps({'content_type': 'image/jpeg', 'filename': 'a' * 20000})
        assert_error(json_http('POST', url, body=big, headers=AUTH), 413, 'too_large')

    # -- events ---------------------------------------------------------------------------

    def test_event_shapes_each_answered(self):
        bucket = self.svc.src_bucket
        key = 'images/shape-%s.jpg' % uuid.uuid4().hex
        status, _, body = post_event(self.svc, eventbridge_event(bucket=bucket, key=key, size=1))
        self.assertEqual((status, body['accepted']), (202, 1), body)
        status, _, body = post_event(self.svc, eventbridge_event(bucket=bucket, key=key, size=1))
        self.assertEqual((status, body['duplicates']), (202, 1), body)
        status, _, body = post_event(self.svc, records_event([
            s3_record(bucket=bucket, key='images/r%s.jpg' % uuid.uuid4().hex, size=1),
            s3_record(bucket='other-bucket', key='images/x.jpg', size=1)]))
        self.assertEqual(body, {'accepted': 1, 'duplicates': 0, 'ignored': 1})
        test_event = {'Service': 'Amazon S3', 'Event': 's3:TestEvent', 'Bucket': bucket,
                      'Time': '2025-01-01T12:00:00.000Z', 'RequestId': '5582815E1AEA5ADF',
                      'HostId': 'x'}
        self.assertEqual(post_event(self.svc, test_event)[2],
                         {'accepted': 0, 'duplicates': 0, 'ignored': 1})
        minio_key = 'images/minio-%s.jpg' % uuid.uuid4().hex
        minio = {'EventName': 's3:ObjectCreated:Put', 'Key': bucket + '/' + minio_key,
                 'Records': [s3_record(bucket=bucket, key=minio_key, size=1,
                                       event_source='minio:s3', event_version='2.0',
                                       event_name='s3:ObjectCreated:Put')]}
        self.assertEqual(post_event(self.svc, minio)[2]['accepted'], 1)
        basic = 'Basic ' + base64.b64encode(BASIC_AUTH.encode()).decode()
        self.assertEqual(post_event(self.svc, test_event,
                                    {'x-api-key': None, 'Authorization': basic})[0], 202)
        self.assertEqual(http('HEAD', self.svc.url('/v1/events'))[0], 200)

    def test_event_refusals(self):
        bucket = self.svc.src_bucket
        event = eventbridge_event(bucket=bucket, key='images/a.jpg', size=1)
        assert_error(post_event(self.svc, event, {'x-api-key': None}), 401, 'unauthorized')
        assert_error(post_event(self.svc, event, {'x-api-key': 'wrong'}), 401, 'unauthorized')
        assert_error(post_event(self.svc, event, {'x-api-key': None,
                                                  'Authorization': 'Basic aG9vazp3cm9uZw=='}),
                     401, 'unauthorized')
        assert_error(post_event(self.svc, b'{"Records":'), 400, 'invalid_event')
        assert_error(post_event(self.svc, {'Records': [{'eventVersion': '2.1'}]}),
                     400, 'invalid_event')
        # One record over the cap, each short enough that the batch stays under the body cap
        # (the count is checked before any bucket filter): the record cap must say no.
        many = records_event(s3_record(bucket='b', key='images/%d.jpg' % i, size=1)
                             for i in range(1001))
        err = assert_error(post_event(self.svc, many), 413, 'too_large')
        self.assertIn('1001 records', err['message'])
        huge = b'{"pad":"' + b'x' * (300 * 1024) + b'"}'
        assert_error(post_event(self.svc, huge), 413, 'too_large')

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
        assert_error(self.get(base + '/variants/poster'), 404, 'not_found')
        # Only a JPEG is stored (OUTPUT_FORMATS=same): a client that takes only WebP gets 406.
        assert_error(self.get(base + '/variants/phone', dict(AUTH, Accept='image/webp')),
                          406, 'not_acceptable')
        assert_error(self.get(base + '/variants/phone?format=bmp'), 400,
                          'invalid_parameter')
        assert_error(json_http('POST', self.svc.url(base + '/retry'), headers=AUTH),
                          409, 'not_failed')
        # The same record by key, in the list shape.
        status, _, page = self.get('/v1/images?key=' + done['source']['key'])
        self.assertEqual([i['id'] for i in page['items']], [done['id']])

    def test_failed_image_listed_and_retried(self):
        key = 'images/broken-%s.jpg' % uuid.uuid4().hex
        size, etag = put_source(self.svc, key, self.corpus_bytes('text.jpg'))
        status, _, res = post_event(self.svc, records_event([
            s3_record(bucket=self.svc.src_bucket, key=key, size=size, etag=etag)]))
        self.assertEqual(res['accepted'], 1, res)
        failed = wait_record(self.svc, key=key, states=('failed',), timeout=30)
        self.assertEqual(failed['error']['code'], 'unsupported_format')
        status, _, listed = self.get('/v1/images?state=failed&limit=200')
        self.assertIn(failed['id'], [i['id'] for i in listed['items']])
        base = '/v1/images/%s' % failed['id']
        assert_error(json_http('POST', self.svc.url(base + '/retry'), body=b'{}', headers=AUTH),
                     413, 'too_large')
        status, _, body = json_http('POST', self.svc.url(base + '/retry'), headers=AUTH)
        self.assertEqual((status, body), (202, {'id': failed['id'], 'state': 'queued'}))
        again = wait_record(self.svc, image_id=failed['id'], states=('failed',), timeout=30)
        self.assertEqual(again['attempts'], 2, again)

    def test_pending_image_and_pages(self):
        ids = []
        for _ in range(3):
            status, _, up = json_http('POST', self.svc.url('/v1/uploads'),
                                      {'content_type': 'image/webp'}, headers=AUTH)
            ids.append(up['id'])
        status, _, rec = self.get('/v1/images/' + ids[0])
        self.assertEqual((status, rec['state']), (200, 'pending'))
        assert_error(self.get('/v1/images/%s/variants/phone' % ids[0]), 404, 'not_found')
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
            assert_error(self.get(path), 404, 'not_found')
            assert_error(self.get(path, {}), 401, 'unauthorized')
            assert_error(self.get(path.replace(missing, 'NOT-A-UUID')), 400, 'invalid_id')
        retry = self.svc.url('/v1/images/%s/retry' % missing)
        assert_error(json_http('POST', retry, headers=AUTH), 404, 'not_found')
        assert_error(json_http('POST', retry), 401, 'unauthorized')
        assert_error(json_http('POST', retry.replace(missing, missing.upper()),
                                    headers=AUTH), 400, 'invalid_id')
        assert_error(self.get('/v1/images', {}), 401, 'unauthorized')
        for query in ('state=bogus', 'limit=0', 'limit=201', 'limit=x', 'cursor=zz',
                      'cursor=c', 'key=', 'key=' + 'k' * 1025):
            assert_error(self.get('/v1/images?' + query), 400, 'invalid_parameter')

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
        assert_error(self.get(base), 404, 'not_found')
        assert_error(self.get(base + '/variants/phone'), 404, 'not_found')
        assert_error(json_http('POST', self.svc.url(base + '/retry'), headers=AUTH),
                          404, 'not_found')
        status, _, body = self.get('/v1/images?key=images/garbled.jpg')
        self.assertEqual((status, body), (200, {'items': [], 'next_cursor': None}))
        self.assertIn('"status_record_rejected"', self.svc.log_text())

    def test_metrics_token(self):
        with Resizer(self.s3, env={'METRICS_TOKEN': 'metrics-token-0123456789'}) as svc:
            refused = json_http('GET', svc.url('/metrics'))
            assert_error(refused, 401, 'unauthorized')
            self.assertEqual(refused[1]['www-authenticate'], 'Bearer realm="metrics"')
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
                status, _, body = post_event(svc, eventbridge_event(
                    bucket=svc.src_bucket, key='images/e%d.jpg' % i, size=1))
                self.assertEqual((status, body['accepted']), (202, 1), (i, body))
            refused = json_http('POST', svc.url('/v1/uploads'), {'content_type': 'image/jpeg'},
                                headers=AUTH)
            assert_error(refused, 429, 'busy')
            self.assertEqual(refused[1]['retry-after'], '1')
            assert_error(post_event(svc, eventbridge_event(bucket=svc.src_bucket,
                                                           key='images/more.jpg', size=1)),
                         429, 'busy')


class CredentialsDownTest(unittest.TestCase):
    def test_upload_when_credentials_cannot_be_had_is_503(self):
        s3 = S3Server()
        self.addCleanup(s3.close)
        dead = 'http://127.0.0.1:%d/creds' % free_port()
        env = {'AWS_ACCESS_KEY_ID': None, 'AWS_SECRET_ACCESS_KEY': None,
               'AWS_CONTAINER_CREDENTIALS_FULL_URI': dead}
        with Resizer(s3, env=env) as svc:
            refused = json_http('POST', svc.url('/v1/uploads'), {'content_type': 'image/jpeg'},
                                headers=AUTH)
            assert_error(refused, 503, 'upstream_unavailable')
            self.assertTrue(int(refused[1]['retry-after']) >= 1)


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
            return post_event(svc, eventbridge_event(bucket=bucket, key=key, size=1))

        # Read-through to the hanging S3 gives up after its short timeout.
        some_id = str(uuid.uuid4())
        for path in ('/v1/images/' + some_id, '/v1/images/%s/variants/phone' % some_id,
                     '/v1/images?key=images/unknown.jpg'):
            refused = get(path)
            assert_error(refused, 503, 'upstream_unavailable')
            self.assertIn('retry-after', refused[1])
        assert_error(json_http('POST', svc.url('/v1/images/%s/retry' % some_id), headers=AUTH),
                     503, 'upstream_unavailable')
        # The first job occupies the worker, the second fills the queue, the third is refused.
        self.assertEqual(event('images/a.jpg')[2]['accepted'], 1)
        first = wait_record(svc, key='images/a.jpg', states=('processing',), timeout=10,
                            interval=0.1)
        self.assertEqual(event('images/b.jpg')[2]['accepted'], 1)
        refused = event('images/c.jpg')
        assert_error(refused, 429, 'busy')
        self.assertEqual(refused[1]['retry-after'], '1')
        retry = svc.url('/v1/images/%s/retry' % first['id'])
        assert_error(json_http('POST', retry, headers=AUTH), 429, 'busy')
        status, _, body = json_http('GET', svc.url('/readyz'))
        self.assertEqual((status, body['status']), (503, 'not_ready'))
        # SIGTERM: the stuck job keeps the process draining for SHUTDOWN_GRACE.
        svc.proc.send_signal(signal.SIGTERM)
        refused = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(event('images/d.jpg')),
                           10, what='events refused while draining')
        assert_error(refused, 503, 'draining')
        assert_error(json_http('POST', retry, headers=AUTH), 503, 'draining')
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
