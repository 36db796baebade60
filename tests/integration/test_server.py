#!/usr/bin/python3
"""The server core, as an ALB, an operator and a careless client see it: health and
readiness (following S3 going away and coming back), errors with one shape, request ids,
body caps, configuration errors, and SIGTERM."""

import os
import signal
import socket
import subprocess
import time
import unittest
import uuid

from fixtures import AUTH, assert_error, wait_for
from harness import API_TOKEN, Resizer, S3Server, http, json_http, scaled


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s3 = S3Server()
        cls.svc = Resizer(cls.s3)

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()
        cls.s3.close()

    def test_healthz(self):
        status, headers, body = json_http('GET', self.svc.url('/healthz'))
        self.assertEqual(status, 200)
        self.assertEqual(body, {'status': 'ok'})
        self.assertTrue(headers.get('x-request-id'))

    def test_head_where_get_exists(self):
        status, headers, body = http('HEAD', self.svc.url('/healthz'))
        self.assertEqual(status, 200)
        self.assertEqual(body, b'')

    def test_unknown_route_is_404_json(self):
        assert_error(json_http('GET', self.svc.url('/nope')), 404, 'not_found')

    def test_wrong_method_is_405_with_allow(self):
        refused = json_http('DELETE', self.svc.url('/v1/uploads'))
        assert_error(refused, 405, 'method_not_allowed')
        self.assertEqual(refused[1]['allow'], 'POST, OPTIONS')
        status, headers, _ = json_http('PUT', self.svc.url('/v1/events'))
        self.assertEqual(status, 405)
        self.assertEqual(headers['allow'], 'POST, HEAD')

    def test_oversized_body_refused_from_content_length(self):
        big = b'{"filename":"' + b'a' * (20 * 1024) + b'"}'
        assert_error(json_http('POST', self.svc.url('/v1/uploads'), body=big, headers=AUTH), 413,
                     'too_large')

    def test_oversized_chunked_body_refused(self):
        # No Content-Length: the cap is enforced while reading.
        port = self.svc.port
        with socket.create_connection(('127.0.0.1', port), timeout=10) as s:
            s.sendall(b'POST /v1/uploads HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n'
                      b'Authorization: Bearer ' + API_TOKEN.encode() + b'\r\n'
                      b'Content-Type: application/json\r\n\r\n')
            chunk = b'a' * 8192
            for _ in range(4):
                s.sendall(b'%x\r\n%s\r\n' % (len(chunk), chunk))
            s.sendall(b'0\r\n\r\n')
            reply = s.recv(4096)
        self.assertTrue(reply.startswith(b'HTTP/1.1 413'), reply[:100])

    def test_request_id_round_trips_when_sane(self):
        status, headers, _ = http('GET', self.svc.url('/healthz'),
                                  headers={'X-Request-Id': 'abc-123.x_y'})
        self.assertEqual(headers['x-request-id'], 'abc-123.x_y')
        for insane in ('bad id{}', 'x' * 65, 'a"b', 'line\tbreak'):
            status, headers, _ = http('GET', self.svc.url('/healthz'),
                                      headers={'X-Request-Id': insane})
            # Replaced by a fresh UUID of our own, never echoed (log injection).
            made = headers['x-request-id']
            self.assertNotEqual(made, insane)
            self.assertEqual(str(uuid.UUID(made)), made)

    def test_metrics_count_requests_by_route_and_status(self):
        http('GET', self.svc.url('/healthz'))
        status, headers, body = http('GET', self.svc.url('/metrics'))
        self.assertEqual(status, 200)
        self.assertTrue(headers['content-type'].startswith('text/plain; version=0.0.4'))
        text = body.decode()
        self.assertIn('resizer_http_requests_total{route="/healthz",method="GET",status="200"}',
                      text)
        self.assertIn('resizer_http_request_duration_seconds_bucket{route="/healthz",le="+Inf"}',
                      text)
        self.assertIn('# TYPE resizer_queue_depth gauge', text)

    def test_metrics_show_the_index_by_state(self):
        status, _, _ = json_http('POST', self.svc.url('/v1/uploads'),
                                 obj={'content_type': 'image/png'},
                                 headers={'Authorization': 'Bearer ' + API_TOKEN})
        self.assertEqual(status, 201)
        text = http('GET', self.svc.url('/metrics'))[2].decode()
        values = dict(line.rsplit(' ', 1) for line in text.splitlines()
                      if line.startswith('resizer_index_'))
        self.assertGreaterEqual(float(values['resizer_index_entries{state="pending"}']), 1)
        self.assertEqual(float(values['resizer_index_entries{state="processing"}']), 0)
        self.assertEqual(float(values['resizer_index_capacity']), 100000)

    def test_openapi_served_byte_for_byte(self):
        status, headers, body = http('GET', self.svc.url('/openapi.yaml'))
        self.assertEqual(status, 200)
        src = os.environ.get('RESIZER_SOURCE_DIR', os.path.join(os.path.dirname(__file__), '..', '..'))
        with open(os.path.join(src, 'openapi', 'openapi.yaml'), 'rb') as f:
            self.assertEqual(body, f.read())


class ReadinessTest(unittest.TestCase):
    """/readyz follows S3: 200, then 503 once S3 stops answering, 200 when it is back."""

    def test_readyz_follows_s3(self):
        with S3Server(private=True) as s3, Resizer(s3) as svc:
            status, _, body = json_http('GET', svc.url('/readyz'))
            self.assertEqual(status, 200, body)
            s3.stop()
            wait_for(lambda: json_http('GET', svc.url('/readyz'))[0] == 503, 20,
                     what='/readyz 503 after S3 stopped')
            status, _, body = json_http('GET', svc.url('/readyz'))
            # Our words only: S3's error text (which can name the account) stays in the log.
            self.assertEqual(body['reason'], 's3 unreachable')
            # Liveness does not depend on S3.
            self.assertEqual(json_http('GET', svc.url('/healthz'))[0], 200)
            s3.start()
            wait_for(lambda: json_http('GET', svc.url('/readyz'))[0] == 200, 30,
                     what='/readyz 200 after S3 came back')


class LifecycleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s3 = S3Server()

    @classmethod
    def tearDownClass(cls):
        cls.s3.close()

    def test_sigterm_exits_zero_within_grace(self):
        with Resizer(self.s3, env={'SHUTDOWN_GRACE': '5'}) as svc:
            start = time.monotonic()
            code = svc.stop(signal.SIGTERM, timeout=15)
            self.assertEqual(code, 0, svc.log_text()[-2000:])
            self.assertLess(time.monotonic() - start, scaled(8))
            self.assertIn('"event":"draining"', svc.log_text())

    def run_binary(self, env, *args):
        base = {k: v for k, v in os.environ.items() if k.startswith(('ASAN', 'LSAN', 'UBSAN'))}
        base['PATH'] = os.environ.get('PATH', '/usr/bin:/bin')
        base.update(env)
        return subprocess.run([os.environ['RESIZER_BIN']] + list(args), env=base,
                              capture_output=True, text=True, timeout=scaled(30))

    def test_bad_config_exits_2_naming_the_variable(self):
        env = dict(self.s3.env(), DEST_BUCKET='dest-bucket', API_TOKENS=API_TOKEN,
                   EVENTS_API_KEY='k', PORT='99999')
        res = self.run_binary(env)
        self.assertEqual(res.returncode, 2)
        self.assertEqual(len(res.stderr.strip().splitlines()), 1, res.stderr)
        self.assertIn('PORT', res.stderr)
        env.pop('PORT')
        env.pop('DEST_BUCKET')
        res = self.run_binary(env)
        self.assertEqual(res.returncode, 2)
        self.assertIn('DEST_BUCKET', res.stderr)

    def test_help_and_version(self):
        res = self.run_binary({}, '--help')
        self.assertEqual(res.returncode, 0)
        for name in ('DEST_BUCKET', 'SRC_BUCKET', 'VARIANTS', 'MAX_PIXELS', 'RECONCILE_INTERVAL'):
            self.assertIn(name, res.stdout)
        res = self.run_binary({}, '--version')
        self.assertEqual(res.returncode, 0)
        self.assertTrue(res.stdout.startswith('resizer '))


if __name__ == '__main__':
    unittest.main(verbosity=2)
