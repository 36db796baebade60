#!/usr/bin/python3
"""test_iam.py - the IAM coverage check's own parts can tell allowed from denied.

The check itself (tests/integration/iam_coverage.py) runs at the end of scripts/test over the
whole suite's requests. Here: the evaluator against the template's task role for the requests
the service makes and their near misses; the access-log reader against the real local S3
server's log lines (path quoting, queries, presigned URLs); the DynamoDB recording proxy
forwarding real HTTP and recording action, table and index; and the check failing on a
template that lacks a statement the requests need, and on a statement no request used.
Run by ctest with Debian's /usr/bin/python3 (python3-yaml, python3-botocore)."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cfn  # noqa: E402
import fixtures  # noqa: E402
import harness  # noqa: E402
import iam  # noqa: E402

SRC, DEST = 'manara-image-resize-uploader', 'manara-image-resize-reciever'
SERVICE = {'SRC_BUCKET': SRC, 'DEST_BUCKET': DEST}
TABLE = 'resizer-state'


def s3(method, path, query=None):
    return iam.s3_request(method, path, query or {}, 'test')


class Evaluator(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = cfn.load_template()

    def judge(self, req, cfg=SERVICE):
        cov = iam.Coverage(self.doc, [cfg])
        cov.add(req)
        return not cov.denied

    def test_what_the_service_does_is_allowed(self):
        for req in (s3('GET', '/%s/images/a b+c%%41.jpg' % SRC),
                    s3('HEAD', '/%s/_status/probe' % DEST),
                    s3('PUT', '/%s/desktop/a.jpg' % DEST),
                    s3('PUT', '/%s/_status/keys/a.jpg' % DEST),
                    s3('PUT', '/%s/images/0f.jpg' % SRC),       # a presigned upload
                    s3('GET', '/%s/phone/a.jpg' % DEST),        # a presigned download
                    s3('GET', '/' + SRC, {'list-type': '2', 'prefix': 'images/', 'max-keys': '1'}),
                    s3('GET', '/' + DEST, {'list-type': '2', 'prefix': '_status/keys/'})):
            self.assertTrue(self.judge(req), req)

    def test_near_misses_are_denied(self):
        for req in (s3('GET', '/' + SRC, {'list-type': '2', 'prefix': 'desktop/'}),
                    s3('GET', '/' + SRC, {'list-type': '2'}),           # no prefix: whole bucket
                    s3('GET', '/' + DEST, {'list-type': '2', 'prefix': 'desktop/'}),
                    s3('HEAD', '/' + SRC),                              # HeadBucket: no s3:prefix
                    s3('PUT', '/%s/other/a.jpg' % SRC),                 # outside the upload prefix
                    s3('PUT', '/%s/imagesX/a.jpg' % SRC),
                    s3('DELETE', '/%s/images/a.jpg' % SRC),
                    s3('DELETE', '/%s/desktop/a.jpg' % DEST)):
            self.assertFalse(self.judge(req), req)

    def test_prefix_follows_the_instance(self):
        cfg = dict(SERVICE, SRC_PREFIX='uploads/')
        self.assertTrue(self.judge(s3('PUT', '/%s/uploads/a.jpg' % SRC), cfg))
        self.assertFalse(self.judge(s3('PUT', '/%s/images/a.jpg' % SRC), cfg))

    def test_sse_kms_needs_the_key_too(self):
        key = 'arn:aws:kms:us-east-1:123456789012:key/0a1b'
        cfg = dict(SERVICE, SSE='aws:kms', SSE_KMS_KEY_ID=key)
        cov = iam.Coverage(self.doc, [cfg])
        cov.add(s3('PUT', '/%s/desktop/a.jpg' % DEST))
        cov.add(s3('GET', '/%s/images/a.jpg' % SRC))
        self.assertEqual(cov.denied, [])
        self.assertEqual(cov.used['UseBucketKmsKey'].resource, key)
        # Without the KMS statement (a template where SSE-KMS forgot the key), both fail.
        doc = json.loads(json.dumps(self.doc))
        stmts = doc['Resources']['TaskRole']['Properties']['Policies'][0]['PolicyDocument']
        stmts['Statement'] = [s for s in stmts['Statement'] if 'Fn::If' not in s]
        cov = iam.Coverage(doc, [cfg])
        cov.add(s3('PUT', '/%s/desktop/a.jpg' % DEST))
        self.assertEqual(len(cov.denied), 1)
        self.assertIn('kms:GenerateDataKey', cov.denied[0][1])

    def test_unknown_requests_are_not_guessed(self):
        for method, path, query in (('GET', '/%s/a' % SRC, {'acl': ''}),
                                    ('POST', '/' + SRC, {'delete': ''}),
                                    ('POST', '/' + SRC, {}),      # a POST form: key in the body
                                    ('GET', '/', {})):
            with self.assertRaises(ValueError):
                iam.s3_request(method, path, query)

    def test_dynamodb_requests_plug_in(self):
        """Records of another service judged the same way: against a role with a table and its
        indexes (as the DynamoDB store's template adds), and denied without one."""
        doc = json.loads(json.dumps(self.doc))
        doc['Resources']['StateTable'] = {'Type': 'AWS::DynamoDB::Table', 'Properties': {}}
        doc['Resources']['TaskRole']['Properties']['Policies'].append({
            'PolicyName': 'resizer-dynamodb', 'PolicyDocument': {'Statement': [
                {'Sid': 'StateItems', 'Effect': 'Allow',
                 'Action': ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query'],
                 'Resource': {'Fn::GetAtt': ['StateTable', 'Arn']}},
                {'Sid': 'StateIndexes', 'Effect': 'Allow', 'Action': 'dynamodb:Query',
                 'Resource': {'Fn::Sub': '${StateTable.Arn}/index/*'}}]}})
        cfg = dict(SERVICE, STATE_STORE='dynamodb', DYNAMODB_TABLE=TABLE)
        cov = iam.Coverage(doc, [cfg])
        for rec in ({'service': 'dynamodb', 'action': 'GetItem', 'table': TABLE},
                    {'service': 'dynamodb', 'action': 'Query', 'table': TABLE, 'index': 'by_state'}):
            cov.add(iam.record_request(rec))
        self.assertEqual(cov.denied, [])
        self.assertIn('StateIndexes', cov.used)
        self.assertEqual(cov.unused(), ['ReadOriginals', 'ListUploadPrefix', 'ListStatusRecords',
                                        'WriteVariants', 'PresignUploads', 'ReadVariants',
                                        'UseBucketKmsKey'])
        cov.add(iam.record_request({'service': 'dynamodb', 'action': 'Scan', 'table': TABLE}))
        cov.add(iam.record_request({'service': 'dynamodb', 'action': 'UpdateItem',
                                    'table': TABLE, 'index': 'inflight'}))
        self.assertEqual(len(cov.denied), 2)

    def test_a_statement_no_request_needs_is_reported(self):
        cov = iam.Coverage(self.doc, [SERVICE])
        cov.add(s3('GET', '/%s/images/a.jpg' % SRC))
        self.assertIn('ListStatusRecords', cov.unused())
        self.assertNotIn('ReadOriginals', cov.unused())
        # A request of a bucket no instance used is not silently judged.
        cov.add(s3('GET', '/unrelated/images/a.jpg'))
        self.assertEqual(len(cov.unattributed), 1)


class AccessLog(unittest.TestCase):
    """The real S3 server's access log, as the check reads it."""

    def test_requests_read_back_from_the_log(self):
        server = harness.S3Server()
        self.addCleanup(server.close)
        bucket = server.create_bucket(prefix='iam')
        log = os.path.join(server.dir, 'log', 'proxy-server.log')
        since = os.path.getsize(log)
        c = server.client()
        key = 'images/a b+c%41/é.jpg'
        c.put_object(Bucket=bucket, Key=key, Body=b'x')
        c.head_object(Bucket=bucket, Key=key)
        c.list_objects_v2(Bucket=bucket, Prefix='images/a b', MaxKeys=1)
        url = c.generate_presigned_url('get_object', Params={'Bucket': bucket, 'Key': key})
        with urllib.request.urlopen(url, timeout=10) as r:
            self.assertEqual(r.read(), b'x')
        c.delete_object(Bucket=bucket, Key=key)
        # A browser's POST form upload: signature and key only in the body.
        form = c.generate_presigned_post(bucket, 'images/form.jpg')
        fields = [a for k, v in form['fields'].items() for a in ('-F', '%s=%s' % (k, v))]
        subprocess.run(['curl', '-s', '-o', '/dev/null', '--max-time', '10'] + fields +
                       ['-F', 'file=@-', form['url']], input=b'x', check=False, timeout=20)

        def mine():
            return [e for e in iam.s3_log_entries(log, since) if e[1].split('/')[1] == bucket]
        entries = fixtures.wait_for(lambda: len(mine()) >= 6 and mine(), 10, what='log lines')
        (post,) = [e for e in entries if e[0] == 'POST']
        self.assertTrue(iam.is_form_upload(*post[:3]), post)
        self.assertFalse(iam.is_presigned(post[2]), 'the form is signed in its body')
        with self.assertRaisesRegex(ValueError, 'form body'):
            iam.s3_request(*post[:3])
        entries.remove(post)
        self.assertEqual([iam.is_form_upload(*e[:3]) for e in entries], [False] * 5)
        got = [iam.s3_request(m, p, q) for m, p, q, _, _ in entries]
        obj = 'arn:aws:s3:::%s/%s' % (bucket, key)
        self.assertEqual([(r.action, r.resource, r.context) for r in got], [
            ('s3:PutObject', obj, {}), ('s3:GetObject', obj, {}),
            ('s3:ListBucket', 'arn:aws:s3:::' + bucket, {'s3:prefix': 'images/a b'}),
            ('s3:GetObject', obj, {}), ('s3:DeleteObject', obj, {})])
        self.assertEqual([iam.is_presigned(q) for _, _, q, _, _ in entries],
                         [False, False, False, True, False])
        self.assertTrue(entries[0][3].startswith('Botocore/'), entries[0][3])
        self.assertEqual([e[4] for e in entries], [200, 200, 200, 200, 204])


class Upstream(BaseHTTPRequestHandler):
    """A stand-in for the DynamoDB endpoint behind the proxy: answers each request with what it
    received, so the test sees that the proxy forwarded it unchanged."""
    protocol_version = 'HTTP/1.1'

    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        out = json.dumps({'target': self.headers['X-Amz-Target'], 'body': body.decode(),
                          'auth': self.headers.get('Authorization')}).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/x-amz-json-1.0')
        self.send_header('Content-Length', str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


class Recording(unittest.TestCase):
    def test_proxy_forwards_and_records(self):
        up = ThreadingHTTPServer(('127.0.0.1', 0), Upstream)
        threading.Thread(target=up.serve_forever, daemon=True).start()
        tmp = tempfile.mkdtemp(prefix='iam-rec-')
        out = os.path.join(tmp, 'dynamodb.requests.jsonl')
        proxy = iam.RecordingProxy('http://127.0.0.1:%d' % up.server_address[1], out)
        try:
            calls = [('GetItem', {'TableName': TABLE, 'Key': {}}),
                     ('Query', {'TableName': TABLE, 'IndexName': 'by_state'}),
                     ('TransactWriteItems', {'TransactItems': [
                         {'Put': {'TableName': TABLE}},
                         {'ConditionCheck': {'TableName': TABLE}}]})]
            for action, body in calls:
                data = json.dumps(body).encode()
                req = urllib.request.Request(proxy.endpoint + '/', data=data, method='POST', headers={
                    'X-Amz-Target': 'DynamoDB_20120810.' + action, 'Authorization': 'AWS4 sig',
                    'Content-Type': 'application/x-amz-json-1.0'})
                with urllib.request.urlopen(req, timeout=10) as r:
                    echo = json.loads(r.read())
                self.assertEqual(echo, {'target': 'DynamoDB_20120810.' + action,
                                        'body': data.decode(), 'auth': 'AWS4 sig'})
        finally:
            proxy.close()
            up.shutdown()
            up.server_close()
        recs = iam.read_records(tmp)
        self.assertEqual([(r['action'], r['table'], r.get('index')) for r in recs],
                         [('GetItem', TABLE, None), ('Query', TABLE, 'by_state'),
                          ('PutItem', TABLE, None), ('ConditionCheckItem', TABLE, None)])
        self.assertEqual(iam.record_request(recs[1]).resource,
                         'arn:aws:dynamodb:us-east-1:123456789012:table/%s/index/by_state' % TABLE)


if __name__ == '__main__':
    unittest.main(verbosity=2)
