#!/usr/bin/python3
"""Auth is decided from the headers, before one byte of body is read: the Basic-auth inputs
that once crashed the process get 401 and the process lives; an unauthenticated request that
announces a large body is answered 401 at once, without the body being sent."""

import base64
import socket
import unittest

from fixtures import post_event
from harness import API_TOKEN, EVENTS_API_KEY, Resizer, S3Server, http

BASIC = 'evuser:evpass-0123456789'


def raw_exchange(port, head, body=b'', timeout=5):
    """Sends head (and body) on a fresh connection; returns the status line and the bytes
    received until the server closed or went quiet."""
    s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    try:
        s.sendall(head + body)
        data = b''
        while b'\r\n\r\n' not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.split(b'\r\n', 1)[0], data
    finally:
        s.close()


class HttpAuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s3 = S3Server()
        cls.svc = Resizer(cls.s3, env={'EVENTS_BASIC_AUTH': BASIC,
                                       'EVENTS_API_KEY': EVENTS_API_KEY + ',next-events-key'})

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()
        cls.s3.close()

    def post_event_auth(self, authorization):
        head = ('POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n'
                'Content-Type: application/json\r\nContent-Length: 2\r\n\r\n'
                % authorization).encode('latin-1')
        return raw_exchange(self.svc.port, head, b'{}')

    def test_hostile_basic_headers_are_401(self):
        good = base64.b64encode(BASIC.encode()).decode()
        hostile = [
            'Basic ' + '=' * 300,              # the input that crashed the decoder
            'Basic ' + '=' * 4,
            'Basic ' + 'QQ' + '=' * 298,
            'Basic ' + good + '=' * 40,
            'Basic ' + good[:-1],
            'Basic ' + 'A' * 6000,             # longer than any credential we accept
            'Basic ' + base64.b64encode(b'evuser:evpass-0123456789\x00x').decode(),
            'Basic ' + base64.b64encode(b'\x00' * 30).decode(),
            'Basic ' + good.replace('=', '') + '%%',
            'Basic',
            'Basic ',
            'basic ' + good[:8] + ' ' + good[8:],
        ]
        for h in hostile:
            status, _ = self.post_event_auth(h)
            self.assertIn(b' 401 ', status, h[:40])
        self.assertTrue(self.svc.running())
        status, _, _ = http('GET', self.svc.url('/healthz'))
        self.assertEqual(status, 200)
        # And the real credentials still work ({} is no S3 event: accepted, nothing to do).
        status, _ = self.post_event_auth('Basic ' + good)
        self.assertIn(b' 202 ', status)

    def test_both_event_keys_accepted_while_rotating(self):
        for key, want in ((EVENTS_API_KEY, 202), ('next-events-key', 202), ('other-key', 401)):
            status, _, body = post_event(self.svc, b'{}', {'x-api-key': key})
            self.assertEqual(status, want, (key, body))

    def test_401_before_the_body(self):
        """A 1 MiB body announced without credentials: the answer comes from the headers
        alone (the body is never sent), on every authenticated route."""
        for method, path in (('POST', '/v1/events'), ('POST', '/v1/uploads'),
                             ('GET', '/v1/images'), ('POST', '/v1/images/x/retry')):
            head = ('%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                    'Content-Length: 1048576\r\n\r\n' % (method, path)).encode()
            status, data = raw_exchange(self.svc.port, head)
            self.assertIn(b' 401 ', status, (method, path, data[:200]))
        # Authenticated, the same announcement is judged by the body cap instead.
        head = ('POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n'
                'Content-Length: 1048576\r\n\r\n' % API_TOKEN).encode()
        status, _ = raw_exchange(self.svc.port, head)
        self.assertIn(b' 413 ', status)


if __name__ == '__main__':
    unittest.main()
