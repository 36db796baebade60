#!/usr/bin/python3
"""test_local_s3.py - the local S3 server the other integration tests rely on behaves like S3.

Uses only harness.S3Server (no resizer binary): buckets, put/get/list through botocore, a
botocore presigned PUT and GET used by curl (what a client of /v1/uploads does), and an outage:
a stopped server refuses connections, a restarted one has the same endpoint and the data.
Run by ctest with Debian's /usr/bin/python3 (python3-botocore)."""

import os
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def curl(*args):
    """curl's HTTP status and body; --globoff: presigned URLs are not patterns."""
    with tempfile.NamedTemporaryFile() as out:
        proc = subprocess.run(['curl', '-sS', '--globoff', '-o', out.name, '-w', '%{http_code}']
                              + list(args), capture_output=True, timeout=30)
        if proc.returncode != 0:
            raise AssertionError('curl failed: %s' % proc.stderr.decode(errors='replace'))
        return int(proc.stdout), out.read()


class SharedServer(unittest.TestCase):
    """Against the server of the test command (or a private one when run alone)."""

    @classmethod
    def setUpClass(cls):
        cls.s3 = harness.S3Server()
        cls.addClassCleanup(cls.s3.close)

    def setUp(self):
        self.bucket = self.s3.create_bucket(prefix='smoke')
        self.client = self.s3.client()

    def test_env_names_the_endpoint_and_credentials(self):
        env = self.s3.env()
        self.assertTrue(env['S3_ENDPOINT'].startswith('http://127.0.0.1:'))
        self.assertEqual(env['S3_FORCE_PATH_STYLE'], 'true')
        self.assertEqual(env['AWS_REGION'], 'us-east-1')
        self.assertEqual(env['AWS_ACCESS_KEY_ID'], 'test:tester')
        self.assertTrue(env['AWS_SECRET_ACCESS_KEY'])

    def test_create_bucket_is_idempotent_and_listed(self):
        self.assertEqual(self.s3.create_bucket(self.bucket), self.bucket)
        names = [b['Name'] for b in self.client.list_buckets()['Buckets']]
        self.assertIn(self.bucket, names)

    def test_put_get_list_round_trip(self):
        keys = ['images/a.jpg', 'images/with space+plus ü.png', 'other/b.jpg']
        for i, key in enumerate(keys):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b'x' * (i + 1),
                                   ContentType='image/jpeg', Metadata={'n': str(i)})
        got = self.client.get_object(Bucket=self.bucket, Key=keys[1])
        self.assertEqual(got['Body'].read(), b'xx')
        self.assertEqual(got['ContentType'], 'image/jpeg')
        self.assertEqual(got['Metadata'], {'n': '1'})
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix='images/')
        self.assertEqual(sorted(o['Key'] for o in listed['Contents']), sorted(keys[:2]))
        with self.assertRaises(self.client.exceptions.NoSuchKey):
            self.client.get_object(Bucket=self.bucket, Key='images/missing.jpg')

    def test_presigned_put_then_get_with_curl(self):
        key = 'images/presigned photo.jpg'
        put_url = self.client.generate_presigned_url(
            'put_object', Params={'Bucket': self.bucket, 'Key': key, 'ContentType': 'image/jpeg'},
            ExpiresIn=300)
        self.assertIn('X-Amz-Signature=', put_url)  # SigV4, not the legacy query signature
        status, body = curl('-X', 'PUT', '-H', 'Content-Type: image/jpeg',
                            '--data-binary', 'jpeg bytes', put_url)
        self.assertEqual(status, 200, body)
        # The signature covers Content-Type: another one is refused.
        status, _ = curl('-X', 'PUT', '-H', 'Content-Type: image/png',
                         '--data-binary', 'other', put_url)
        self.assertEqual(status, 403)
        get_url = self.client.generate_presigned_url(
            'get_object', Params={'Bucket': self.bucket, 'Key': key}, ExpiresIn=300)
        status, body = curl(get_url)
        self.assertEqual((status, body), (200, b'jpeg bytes'))
        status, _ = curl(get_url.replace('X-Amz-Signature=', 'X-Amz-Signature=0'))
        self.assertEqual(status, 403)


class PrivateServerOutage(unittest.TestCase):
    """A private server, attached to as the test command's one is, then stopped and started
    again as the outage tests do."""

    def setUp(self):
        self.s3 = harness.S3Server(private=True)
        self.addCleanup(self.s3.close)
        self.bucket = self.s3.create_bucket(prefix='outage')
        self.s3.client().put_object(Bucket=self.bucket, Key='images/kept.jpg', Body=b'kept')

    def test_attached_server_sees_the_data_and_cannot_be_stopped(self):
        with mock.patch.dict(os.environ, {'RESIZER_TEST_S3_DIR': self.s3.dir}):
            attached = harness.S3Server()
        self.assertFalse(attached.owned)
        self.assertEqual(attached.env(), self.s3.env())
        got = attached.client().get_object(Bucket=self.bucket, Key='images/kept.jpg')
        self.assertEqual(got['Body'].read(), b'kept')
        with self.assertRaises(RuntimeError):
            attached.stop()
        attached.close()
        self.s3.check_reachable()

    def test_stop_refuses_connections_and_start_keeps_endpoint_and_data(self):
        endpoint = self.s3.endpoint
        self.s3.stop()
        with self.assertRaises(ConnectionRefusedError):
            harness.http('GET', endpoint + '/healthcheck', timeout=5)
        with self.assertRaises(RuntimeError):
            self.s3.check_reachable()

        self.s3.start()
        self.assertEqual(self.s3.endpoint, endpoint)
        got = self.s3.client().get_object(Bucket=self.bucket, Key='images/kept.jpg')
        self.assertEqual(got['Body'].read(), b'kept')


if __name__ == '__main__':
    unittest.main(verbosity=2)
