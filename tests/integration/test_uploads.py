#!/usr/bin/python3
"""POST /v1/uploads as a client, S3 and an operator see it (issue 3: SigV4 signer, AWS
credentials and the upload API), against the local Swift S3, which verifies signatures.

- PUT: a client that knows only the API's answer uploads a real photo with the curl binary;
  S3 refuses another Content-Type, a changed signature and an expired URL; after the event, the
  presigned GETs of the variants (and the /variants/phone redirect) give valid JPEGs.
- POST form: Swift has no browser POST (412), so the form is checked the way S3 would check
  it: the decoded policy pins bucket, key, Content-Type, size range and x-amz-* fields, and its
  signature is recomputed independently (hashlib/hmac) and with botocore.
- Credentials from an ECS-style container endpoint run by this test: uploads and processing
  work, credentials close to expiry are fetched again, and no URL outlives them.
- Bad input: each refusal has its status and a message naming the field.
- The pending record, and the README's "Walkthrough with curl" commands, run as written.
"""

import base64
import calendar
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fixtures import AUTH, announce, assert_error, wait_record
from harness import API_TOKEN, SOURCE_DIR, Resizer, S3Server, json_http, scaled

CORPUS = None  # dir made by tests/corpus/make_corpus.sh in setUpModule
S3 = None
# The default variants (VARIANTS unset) for the 2000x1500 corpus photo.
PHOTO_VARIANTS = {'desktop': (1920, 1440), 'tablet': (1024, 768), 'phone': (640, 480)}


def setUpModule():
    global CORPUS, S3
    CORPUS = tempfile.mkdtemp(prefix='resizer-uploads-corpus-')
    subprocess.run([os.path.join(SOURCE_DIR, 'tests', 'corpus', 'make_corpus.sh'), CORPUS],
                   check=True, stdout=subprocess.DEVNULL)
    S3 = S3Server()


def tearDownModule():
    S3.close()
    shutil.rmtree(CORPUS, ignore_errors=True)


def corpus(name):
    return os.path.join(CORPUS, name)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def iso_time(s):
    """'2026-11-26T16:13:10Z' -> epoch seconds."""
    return calendar.timegm(time.strptime(s, '%Y-%m-%dT%H:%M:%SZ'))


def curl(*args, timeout=60):
    """Runs the curl binary; returns (HTTP status, body bytes). -w puts the status after the
    body on a line of its own."""
    proc = subprocess.run(['curl', '-sS', '-w', '\n%{http_code}'] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError('curl %r failed (%d): %s' % (args, proc.returncode, proc.stderr))
    body, _, code = proc.stdout.rpartition(b'\n')
    return int(code), body


def curl_put(upload, path, headers=None, url=None):
    """PUTs the file at path the way a client that read only `upload` (the API's answer) would:
    curl -X PUT --data-binary @file plus exactly the headers given (default: upload's)."""
    args = ['-X', 'PUT', '--data-binary', '@' + path]
    for name, value in (upload['headers'] if headers is None else headers).items():
        args += ['-H', '%s: %s' % (name, value)]
    return curl(*(args + [url or upload['url']]))


def json_values(data):
    """The JSON documents printed one after another (curl adds no newline)."""
    text, out, pos = data.decode(), [], 0
    decoder = json.JSONDecoder()
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return out
        value, pos = decoder.raw_decode(text, pos)
        out.append(value)


def vips_field(path, field):
    proc = subprocess.run(['vipsheader', '-f', field, path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30)
    if proc.returncode != 0:
        raise AssertionError('vipsheader %s: %s' % (path, proc.stderr.decode(errors='replace')))
    return proc.stdout.decode().strip()


def create_upload(svc, content_type='image/jpeg', method='PUT', filename='cat.jpg'):
    body = {'content_type': content_type, 'method': method}
    if filename is not None:
        body['filename'] = filename
    status, headers, reply = json_http('POST', svc.url('/v1/uploads'), body, headers=AUTH)
    if status != 201:
        raise AssertionError('POST /v1/uploads %r -> %d %r' % (body, status, reply))
    return reply


def deliver_event(svc, key):
    """What EventBridge does once the object is in: the event, which must be taken."""
    status, _, body = announce(svc, key)
    if status != 202 or body.get('accepted') != 1:
        raise AssertionError('POST /v1/events -> %d %r' % (status, body))


def wait_done(svc, image_id, timeout=40):
    """wait_record(), which must end done; failures quote the service's log."""
    try:
        rec = wait_record(svc, image_id=image_id, timeout=timeout)
    except AssertionError as e:
        raise AssertionError('%s\nservice log tail:\n%s' % (e, svc.log_text()[-3000:]))
    if rec['state'] != 'done':
        raise AssertionError('image failed: %r\nservice log tail:\n%s'
                             % (rec, svc.log_text()[-3000:]))
    return rec


def sigv4_signing_key(secret, date, region, service):
    """The SigV4 key chain (AWS docs), written out independently of the service and botocore."""
    k = hmac.new(('AWS4' + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, 'aws4_request'):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


class Check:
    """Assertions the test classes share."""

    def assert_photo_processed(self, svc, reply, photo):
        """After the upload: the event, then done, then every variant's presigned url gives
        a valid JPEG of the right size, and /variants/phone (curl -L) the same bytes."""
        deliver_event(svc, reply['key'])
        record = wait_done(svc, reply['id'])
        self.assertEqual(record['source']['bytes'], len(read(photo)))
        self.assertEqual(sorted(v['name'] for v in record['variants']),
                         sorted(PHOTO_VARIANTS))
        tmp = tempfile.mkdtemp(prefix='resizer-uploads-')
        self.addCleanup(shutil.rmtree, tmp, True)
        got = {}
        for v in record['variants']:
            status, data = curl(v['url'])
            self.assertEqual(status, 200, (v['name'], data[:300]))
            path = os.path.join(tmp, v['name'] + '.jpg')
            with open(path, 'wb') as f:
                f.write(data)
            self.assertEqual(vips_field(path, 'vips-loader'), 'jpegload', v['name'])
            size = (int(vips_field(path, 'width')), int(vips_field(path, 'height')))
            self.assertEqual(size, PHOTO_VARIANTS[v['name']], v['name'])
            stored = svc.s3.client().get_object(Bucket=svc.dest_bucket, Key=v['key'])
            self.assertEqual(stored['Body'].read(), data, v['name'])
            got[v['name']] = data
        status, data = curl('-L', '-H', 'Authorization: ' + AUTH['Authorization'],
                            svc.url('/v1/images/%s/variants/phone' % reply['id']))
        self.assertEqual(status, 200, data[:300])
        self.assertEqual(data, got['phone'])
        return record


class PutUploadTest(unittest.TestCase, Check):
    @classmethod
    def setUpClass(cls):
        cls.svc = Resizer(S3)

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()

    def object_missing(self, key):
        client = self.svc.s3.client()
        try:
            client.head_object(Bucket=self.svc.src_bucket, Key=key)
        except client.exceptions.ClientError as e:
            return e.response['Error']['Code'] in ('404', 'NoSuchKey')
        return False

    def test_put_reply_shape(self):
        before = int(time.time())
        reply = create_upload(self.svc)
        after = int(time.time())
        self.assertRegex(reply['id'], r'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-'
                                      r'[0-9a-f]{12}$')
        self.assertEqual(reply['key'], 'images/%s.jpg' % reply['id'])
        self.assertEqual(reply['status_url'], '/v1/images/' + reply['id'])
        up = reply['upload']
        self.assertEqual(up['method'], 'PUT')
        self.assertEqual(up['headers'], {'Content-Type': 'image/jpeg'})
        parts = urlsplit(up['url'])
        self.assertEqual('%s://%s' % (parts.scheme, parts.netloc), S3.endpoint)
        self.assertEqual(parts.path, '/%s/%s' % (self.svc.src_bucket, reply['key']))
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.assertEqual(q['X-Amz-Algorithm'], 'AWS4-HMAC-SHA256')
        self.assertEqual(q['X-Amz-SignedHeaders'], 'content-type;host')
        self.assertEqual(q['X-Amz-Expires'], '900')
        self.assertNotIn('X-Amz-Security-Token', q)
        self.assertTrue(q['X-Amz-Credential'].startswith(S3.env()['AWS_ACCESS_KEY_ID'] + '/'))
        self.assertNotIn(S3.env()['AWS_SECRET_ACCESS_KEY'], json.dumps(reply))
        self.assertTrue(before + 900 <= iso_time(up['expires_at']) <= after + 900)

    def test_client_uploads_photo_with_curl_and_s3_checks_signature(self):
        photo = corpus('photo.jpg')
        reply = create_upload(self.svc)
        up = reply['upload']
        # Refused by S3 before anything is stored: another type, a changed signature.
        status, body = curl_put(up, photo, headers={'Content-Type': 'image/png'})
        self.assertEqual(status, 403, body)
        self.assertIn(b'SignatureDoesNotMatch', body)
        sig = re.search(r'X-Amz-Signature=([0-9a-f]{64})$', up['url'])
        self.assertTrue(sig, up['url'])
        last = sig.group(1)[-1]
        bad_url = up['url'][:-1] + ('0' if last != '0' else '1')
        status, body = curl_put(up, photo, url=bad_url)
        self.assertEqual(status, 403, body)
        self.assertIn(b'SignatureDoesNotMatch', body)
        self.assertTrue(self.object_missing(reply['key']))
        # Exactly what the API answered: stored, same bytes, same type.
        status, body = curl_put(up, photo)
        self.assertEqual(status, 200, body)
        stored = self.svc.s3.client().get_object(Bucket=self.svc.src_bucket, Key=reply['key'])
        self.assertEqual(stored['Body'].read(), read(photo))
        self.assertEqual(stored['ContentType'], 'image/jpeg')
        # Only that key: the URL cannot be pointed at another object.
        other = up['url'].replace(reply['id'], str(uuid.uuid4()))
        status, body = curl_put(up, photo, url=other)
        self.assertEqual(status, 403, body)
        self.assert_photo_processed(self.svc, reply, photo)

    def test_pending_record_right_after_post(self):
        name = 'Ünïcødé cat photo.jpg'
        reply = create_upload(self.svc, content_type='image/png', filename=name)
        status, _, body = json_http('GET', self.svc.url(reply['status_url']), headers=AUTH)
        self.assertEqual(status, 200, body)
        self.assertEqual(body['id'], reply['id'])
        self.assertEqual(body['state'], 'pending')
        self.assertEqual(body['source']['filename'], name)
        self.assertEqual(body['source']['content_type'], 'image/png')
        self.assertEqual(body['source']['key'], reply['key'])
        self.assertEqual(body['source']['bucket'], self.svc.src_bucket)
        self.assertEqual(body['variants'], [])
        # Findable by key as well.
        status, _, listing = json_http('GET', self.svc.url('/v1/images?key=' + reply['key']),
                                       headers=AUTH)
        self.assertEqual(status, 200, listing)
        self.assertEqual([i['id'] for i in listing['items']], [reply['id']])

    def test_every_allowed_type_gets_its_extension(self):
        cases = [('image/jpeg', 'jpg'), ('image/png', 'png'), ('image/webp', 'webp'),
                 ('image/gif', 'gif'), ('image/tiff', 'tiff'), ('image/avif', 'avif'),
                 ('image/heic', 'heic')]
        for content_type, ext in cases:
            with self.subTest(content_type=content_type):
                reply = create_upload(self.svc, content_type=content_type)
                self.assertEqual(reply['key'], 'images/%s.%s' % (reply['id'], ext))
                self.assertEqual(reply['upload']['headers']['Content-Type'], content_type)
        # Each type's URL works for a real file of that type.
        for name, content_type in (('alpha.png', 'image/png'), ('photo.webp', 'image/webp'),
                                   ('anim.gif', 'image/gif'), ('photo16.tif', 'image/tiff')):
            with self.subTest(upload=name):
                reply = create_upload(self.svc, content_type=content_type, filename=name)
                status, body = curl_put(reply['upload'], corpus(name))
                self.assertEqual(status, 200, body)

    def test_filename_length_limit(self):
        for name, ok in (('a' * 251 + '.jpg', True), ('a' * 252 + '.jpg', False),
                         ('é' * 125 + 'a.jpg', True), ('é' * 126 + '.jpg', False)):
            with self.subTest(bytes=len(name.encode())):
                resp = json_http('POST', self.svc.url('/v1/uploads'),
                                 {'filename': name, 'content_type': 'image/jpeg'}, headers=AUTH)
                status, _, body = resp
                if ok:
                    self.assertEqual(status, 201, body)
                    status, _, rec = json_http('GET', self.svc.url(body['status_url']),
                                               headers=AUTH)
                    self.assertEqual(rec['source']['filename'], name)
                else:
                    err = assert_error(resp, 400, 'invalid_field')
                    self.assertIn('filename', err['message'])

    def test_bad_input_named_in_the_error(self):
        cases = [
            ('malformed JSON', b'{"content_type": "image/jpeg",', 400, 'invalid_json', 'JSON'),
            ('JSON array', b'["image/jpeg"]', 400, 'invalid_request', 'JSON object'),
            ('empty body', b'', 400, 'invalid_request', 'JSON object'),
            ('missing content_type', {'filename': 'a.jpg'}, 400, 'invalid_field',
             'content_type'),
            ('content_type number', {'content_type': 5}, 400, 'invalid_field', 'content_type'),
            ('content_type list', {'content_type': ['image/jpeg']}, 400, 'invalid_field',
             'content_type'),
            ('svg', {'content_type': 'image/svg+xml'}, 400, 'unsupported_content_type',
             'content_type'),
            ('html', {'content_type': 'text/html'}, 400, 'unsupported_content_type',
             'content_type'),
            ('pdf', {'content_type': 'application/pdf'}, 400, 'unsupported_content_type',
             'content_type'),
            ('method GET', {'content_type': 'image/jpeg', 'method': 'GET'}, 400,
             'invalid_field', 'method'),
            ('method number', {'content_type': 'image/jpeg', 'method': 1}, 400,
             'invalid_field', 'method'),
            ('filename newline', {'content_type': 'image/jpeg', 'filename': 'a\nb.jpg'}, 400,
             'invalid_field', 'filename'),
            ('filename escape', {'content_type': 'image/jpeg', 'filename': 'a\x1b[2Jb.jpg'},
             400, 'invalid_field', 'filename'),
            ('filename empty', {'content_type': 'image/jpeg', 'filename': ''}, 400,
             'invalid_field', 'filename'),
            ('filename number', {'content_type': 'image/jpeg', 'filename': 7}, 400,
             'invalid_field', 'filename'),
            ('filename 256 bytes', {'content_type': 'image/jpeg', 'filename': 'f' * 256}, 400,
             'invalid_field', 'filename'),
            ('body 17 KiB', json.dumps({'content_type': 'image/jpeg',
                                        'filename': 'x' * (17 * 1024)}).encode(), 413,
             'too_large', None),
        ]
        for what, body, want, code, field in cases:
            with self.subTest(what):
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                resp = json_http('POST', self.svc.url('/v1/uploads'), body=raw, headers=AUTH)
                err = assert_error(resp, want, code)
                if field:
                    self.assertIn(field, err['message'])
                self.assertNotIn('location', resp[1])

    def test_auth_required(self):
        body = {'content_type': 'image/jpeg'}
        resp = json_http('POST', self.svc.url('/v1/uploads'), body)
        # No token gets the same word as a wrong one: nothing about why (issue 13).
        self.assertIn('token is not valid', assert_error(resp, 401, 'unauthorized')['message'])
        self.assertEqual(resp[1].get('www-authenticate'), 'Bearer')
        for value in ('Bearer wrong-token-0123456789', 'Bearer ' + API_TOKEN + 'x',
                      'Basic ' + base64.b64encode(API_TOKEN.encode()).decode(), API_TOKEN):
            with self.subTest(value=value[:12]):
                resp = json_http('POST', self.svc.url('/v1/uploads'), body,
                                 headers={'Authorization': value})
                assert_error(resp, 401, 'unauthorized')
                self.assertEqual(resp[1].get('www-authenticate'), 'Bearer')
        self.assertNotIn(API_TOKEN, self.svc.log_text())

    def test_readme_walkthrough_with_curl(self):
        """The README's "Walkthrough with curl" block, run as written; only `api=` points at
        this service, and the test delivers the event that EventBridge (or the local relay)
        would."""
        run = readme_walkthrough(self, self.svc)
        out = run(1, 2)
        self.assertNotIn(b'<Error>', out)  # S3's answer to a refused PUT
        reply = json.loads(read(os.path.join(run.dir, 'upload.json')))
        stored = self.svc.s3.client().get_object(Bucket=self.svc.src_bucket, Key=reply['key'])
        self.assertEqual(stored['Body'].read(), read(corpus('photo.jpg')))
        deliver_event(self.svc, reply['key'])
        wait_done(self.svc, reply['id'])
        status, = json_values(run(3))  # step 3 prints the status record
        self.assertEqual((status['id'], status['state']), (reply['id'], 'done'))
        run(3, 4)
        phone = os.path.join(run.dir, 'phone.jpg')
        self.assertEqual(vips_field(phone, 'vips-loader'), 'jpegload')
        self.assertEqual(vips_field(phone, 'width'), '640')
        _, listing, retry = json_values(run(3, 5))
        self.assertEqual(listing, [])  # step 5 lists failures as [{id, key, code}]
        self.assertEqual(retry['error']['code'], 'not_failed')


def readme_walkthrough(test, svc):
    """The README's "Walkthrough with curl" sh block, split at its "# N." comments, with `api=`
    pointing at svc. Returns run(*step numbers) -> stdout, run in a temp dir (run.dir) that
    holds cat.jpg (the corpus photo), with TOKEN set; a step that exits non-zero fails test."""
    with open(os.path.join(SOURCE_DIR, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    section = readme.split('## Walkthrough with curl', 1)[1]
    block = re.search(r'```sh\n(.*?)```', section, re.S).group(1)
    test.assertRegex(block, r'(?m)^api=http://127\.0\.0\.1:8080$')
    block = re.sub(r'(?m)^api=.*$', 'api=' + svc.url('').rstrip('/'), block)
    parts = re.split(r'(?m)^(?=# \d+\.)', block)
    prologue, steps = parts[0], {int(s[2]): s for s in parts[1:]}
    test.assertEqual(sorted(steps), [1, 2, 3, 4, 5])
    tmp = tempfile.mkdtemp(prefix='resizer-walkthrough-')
    test.addCleanup(shutil.rmtree, tmp, True)
    shutil.copy(corpus('photo.jpg'), os.path.join(tmp, 'cat.jpg'))
    env = dict(os.environ, TOKEN=API_TOKEN)

    def run(*numbers):
        script = 'set -eu\n' + prologue + ''.join(steps[n] for n in numbers)
        proc = subprocess.run(['bash', '-c', script], cwd=tmp, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)
        test.assertEqual(proc.returncode, 0, proc.stderr)
        return proc.stdout
    run.dir = tmp
    return run


class SseUploadTest(unittest.TestCase, Check):
    """With SSE set the encryption header is part of what the client must send. Swift has no
    SSE (it answers 501 NotImplemented once the signature is accepted), so what is checked is
    that the header is signed and that a client sending the returned headers gets past the
    signature check, the README's commands included."""

    @classmethod
    def setUpClass(cls):
        cls.svc = Resizer(S3, env={'SSE': 'AES256'})

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()

    def test_put_signs_the_sse_header(self):
        up = create_upload(self.svc)['upload']
        self.assertEqual(up['headers'], {'Content-Type': 'image/jpeg',
                                         'x-amz-server-side-encryption': 'AES256'})
        q = {k: v[0] for k, v in parse_qs(urlsplit(up['url']).query).items()}
        self.assertEqual(q['X-Amz-SignedHeaders'], 'content-type;host;x-amz-server-side-encryption')
        status, body = curl_put(up, corpus('photo.jpg'), headers={'Content-Type': 'image/jpeg'})
        self.assertEqual(status, 403, body)
        self.assertIn(b'SignatureDoesNotMatch', body)
        status, body = curl_put(up, corpus('photo.jpg'))
        self.assertNotIn(b'SignatureDoesNotMatch', body)
        self.assertEqual(status, 501, body)
        self.assertIn(b'Server-side encryption is not supported', body)

    def test_readme_upload_sends_the_returned_headers(self):
        out = readme_walkthrough(self, self.svc)(1, 2)
        self.assertNotIn(b'SignatureDoesNotMatch', out)
        self.assertIn(b'Server-side encryption is not supported', out)

    def test_post_form_pins_sse(self):
        fields = create_upload(self.svc, method='POST')['upload']['fields']
        self.assertEqual(fields['x-amz-server-side-encryption'], 'AES256')
        policy = json.loads(base64.b64decode(fields['policy']))
        self.assertIn({'x-amz-server-side-encryption': 'AES256'}, policy['conditions'])


class ExpiredUrlTest(unittest.TestCase, Check):
    def test_expired_put_url_refused_by_s3(self):
        with Resizer(S3, env={'PRESIGN_PUT_EXPIRES': '1'}) as svc:
            reply = create_upload(svc)
            up = reply['upload']
            q = {k: v[0] for k, v in parse_qs(urlsplit(up['url']).query).items()}
            self.assertEqual(q['X-Amz-Expires'], '1')
            signed_at = calendar.timegm(time.strptime(q['X-Amz-Date'], '%Y%m%dT%H%M%SZ'))
            self.assertEqual(iso_time(up['expires_at']), signed_at + 1)
            time.sleep(2.5)
            status, body = curl_put(up, corpus('photo.jpg'))
            self.assertEqual(status, 403, body)
            self.assertIn(b'expired', body)


class PostFormTest(unittest.TestCase, Check):
    MAX = 12345678

    @classmethod
    def setUpClass(cls):
        cls.svc = Resizer(S3, env={'MAX_UPLOAD_BYTES': str(cls.MAX)})

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()

    def post_form(self, content_type='image/webp'):
        before = int(time.time())
        reply = create_upload(self.svc, content_type=content_type, method='POST')
        return before, reply

    def test_form_fields(self):
        before, reply = self.post_form()
        up = reply['upload']
        self.assertEqual(up['method'], 'POST')
        self.assertNotIn('headers', up)
        self.assertEqual(up['url'], '%s/%s' % (S3.endpoint, self.svc.src_bucket))
        fields = up['fields']
        self.assertEqual(set(fields), {'key', 'Content-Type', 'policy', 'x-amz-algorithm',
                                       'x-amz-credential', 'x-amz-date', 'x-amz-signature'})
        self.assertEqual(fields['key'], 'images/%s.webp' % reply['id'])
        self.assertEqual(fields['key'], reply['key'])
        self.assertEqual(fields['Content-Type'], 'image/webp')
        self.assertEqual(fields['x-amz-algorithm'], 'AWS4-HMAC-SHA256')
        date = fields['x-amz-date']
        self.assertRegex(date, r'^\d{8}T\d{6}Z$')
        self.assertEqual(fields['x-amz-credential'], '%s/%s/us-east-1/s3/aws4_request'
                         % (S3.env()['AWS_ACCESS_KEY_ID'], date[:8]))
        signed_at = calendar.timegm(time.strptime(date, '%Y%m%dT%H%M%SZ'))
        self.assertTrue(before <= signed_at <= int(time.time()))
        self.assertEqual(iso_time(up['expires_at']), signed_at + 900)

    def test_policy_pins_what_s3_checks(self):
        _, reply = self.post_form()
        fields = reply['upload']['fields']
        policy = json.loads(base64.b64decode(fields['policy'], validate=True))
        self.assertEqual(set(policy), {'expiration', 'conditions'})
        self.assertEqual(policy['expiration'], reply['upload']['expires_at'])
        exact = {}
        ranges = []
        for cond in policy['conditions']:
            if isinstance(cond, dict):
                self.assertEqual(len(cond), 1, cond)
                (name, value), = cond.items()
                self.assertNotIn(name, exact, 'condition on %s twice' % name)
                exact[name] = value
            else:
                # Only the size range: no starts-with that would loosen key or type.
                self.assertEqual(cond[0], 'content-length-range', cond)
                ranges.append(cond[1:])
        self.assertEqual(ranges, [[1, self.MAX]])
        self.assertEqual(exact['bucket'], self.svc.src_bucket)
        # S3 refuses a form with a field the policy does not cover, and every field it
        # covers must match exactly: the form as given passes, nothing else does.
        signed = {k: v for k, v in fields.items() if k not in ('policy', 'x-amz-signature')}
        self.assertEqual({k: v for k, v in exact.items() if k != 'bucket'}, signed)

    def test_signature_recomputed_independently(self):
        _, reply = self.post_form(content_type='image/gif')
        fields = reply['upload']['fields']
        env = S3.env()
        key = sigv4_signing_key(env['AWS_SECRET_ACCESS_KEY'], fields['x-amz-date'][:8],
                                env['AWS_REGION'], 's3')
        want = hmac.new(key, fields['policy'].encode(), hashlib.sha256).hexdigest()
        self.assertEqual(fields['x-amz-signature'], want)
        # botocore's own key chain (what S3PostPresigner signs with) agrees.
        auth = SigV4Auth(Credentials(env['AWS_ACCESS_KEY_ID'], env['AWS_SECRET_ACCESS_KEY']),
                         's3', env['AWS_REGION'])
        request = AWSRequest(method='POST', url=reply['upload']['url'])
        request.context['timestamp'] = fields['x-amz-date']
        self.assertEqual(auth.signature(fields['policy'], request), want)
        # A different secret gives a different signature (the check can fail).
        other = sigv4_signing_key(env['AWS_SECRET_ACCESS_KEY'] + 'x', fields['x-amz-date'][:8],
                                  env['AWS_REGION'], 's3')
        self.assertNotEqual(hmac.new(other, fields['policy'].encode(),
                                     hashlib.sha256).hexdigest(), want)

    def test_same_conditions_as_botocore_generate_presigned_post(self):
        _, reply = self.post_form(content_type='image/png')
        fields = reply['upload']['fields']
        ours = json.loads(base64.b64decode(fields['policy']))
        theirs_form = S3.client().generate_presigned_post(
            Bucket=self.svc.src_bucket, Key=reply['key'],
            Fields={'Content-Type': 'image/png'},
            Conditions=[{'Content-Type': 'image/png'}, ['content-length-range', 1, self.MAX]],
            ExpiresIn=900)
        theirs = json.loads(base64.b64decode(theirs_form['fields']['policy']))
        self.assertEqual(theirs_form['url'].rstrip('/'), reply['upload']['url'])

        def normalised(policy):
            # x-amz-date and the credential's date differ by the seconds between the calls.
            out = set()
            for cond in policy['conditions']:
                if isinstance(cond, dict):
                    (name, value), = cond.items()
                    if name == 'x-amz-date':
                        value = 'DATE'
                    elif name == 'x-amz-credential':
                        value = re.sub(r'/\d{8}/', '/DATE/', value)
                    out.add((name, value))
                else:
                    out.add(tuple(cond))
            return out
        self.assertEqual(normalised(ours), normalised(theirs))
        self.assertEqual(set(fields), set(theirs_form['fields']))


class CredentialsEndpoint:
    """An ECS-style container credentials endpoint on 127.0.0.1: answers GET with the Swift
    keys when Authorization is the expected token, else 401; 500 while `failing`. Each answer
    expires `lifetime` seconds after it is served and carries a new session token; it records
    what it served."""

    def __init__(self, access_key, secret_key, auth_token, lifetime):
        self.access_key, self.secret_key, self.auth_token = access_key, secret_key, auth_token
        self.lifetime = lifetime
        self.lock = threading.Lock()
        self.served = []        # (expiration epoch, token) per good answer
        self.bad_auth = 0
        self.failing = False
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                endpoint.answer(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return 'http://127.0.0.1:%d/v2/credentials/task' % self.server.server_port

    def answer(self, req):
        with self.lock:
            if req.headers.get('Authorization') != self.auth_token:
                self.bad_auth += 1
                status, body = 401, {'message': 'bad token'}
            elif self.failing:
                status, body = 500, {'message': 'agent unavailable'}
            else:
                expiration = int(time.time()) + self.lifetime
                token = 'session-token-%d' % (len(self.served) + 1)
                self.served.append((expiration, token))
                status, body = 200, {
                    'AccessKeyId': self.access_key, 'SecretAccessKey': self.secret_key,
                    'Token': token, 'RoleArn': 'arn:aws:iam::111122223333:role/resizer',
                    'Expiration': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expiration))}
        data = json.dumps(body).encode()
        req.send_response(status)
        req.send_header('Content-Type', 'application/json')
        req.send_header('Content-Length', str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def snapshot(self):
        with self.lock:
            return list(self.served)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class ContainerCredentialsTest(unittest.TestCase, Check):
    """Swift ignores X-Amz-Security-Token (it does not enforce unknown tokens), so the endpoint
    serves one, and URLs and header-signed calls that carry it work here as with real STS
    credentials."""
    LIFETIME = 306  # 6 s outside the 5-minute refresh margin when served

    @classmethod
    def setUpClass(cls):
        env = S3.env()
        cls.endpoint = CredentialsEndpoint(env['AWS_ACCESS_KEY_ID'], env['AWS_SECRET_ACCESS_KEY'],
                                           'ecs-agent-token-42', cls.LIFETIME)
        cls.svc = Resizer(S3, env={
            'AWS_ACCESS_KEY_ID': None, 'AWS_SECRET_ACCESS_KEY': None,
            'AWS_CONTAINER_CREDENTIALS_FULL_URI': cls.endpoint.url,
            'AWS_CONTAINER_AUTHORIZATION_TOKEN': 'ecs-agent-token-42'})

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()
        cls.endpoint.close()

    def upload_url_checked(self, method='PUT'):
        """One upload; its expiry must be that of the credentials that signed it."""
        reply = create_upload(self.svc, method=method)
        served = self.endpoint.snapshot()
        self.assertTrue(served, 'the service never asked the endpoint')
        expires_at = iso_time(reply['upload']['expires_at'])
        # Cut from PRESIGN_PUT_EXPIRES (900) to the credentials' own expiry.
        self.assertIn(expires_at, [e for e, _ in served])
        self.assertLessEqual(expires_at, max(e for e, _ in served))
        return reply, expires_at, served

    def test_upload_and_processing_with_container_credentials(self):
        reply, expires_at, served = self.upload_url_checked()
        q = {k: v[0] for k, v in parse_qs(urlsplit(reply['upload']['url']).query).items()}
        self.assertIn(q['X-Amz-Security-Token'], [t for _, t in served])
        self.assertLessEqual(int(q['X-Amz-Expires']), self.LIFETIME)
        status, body = curl_put(reply['upload'], corpus('photo.jpg'))
        self.assertEqual(status, 200, body)
        self.assert_photo_processed(self.svc, reply, corpus('photo.jpg'))
        self.assertEqual(self.endpoint.bad_auth, 0)
        self.assertNotIn('session-token-', self.svc.log_text())
        self.assertNotIn(S3.env()['AWS_SECRET_ACCESS_KEY'], self.svc.log_text())

    def test_post_form_carries_token_and_expires_with_credentials(self):
        reply, expires_at, served = self.upload_url_checked(method='POST')
        fields = reply['upload']['fields']
        self.assertIn(fields['x-amz-security-token'], [t for _, t in served])
        policy = json.loads(base64.b64decode(fields['policy']))
        self.assertIn({'x-amz-security-token': fields['x-amz-security-token']},
                      policy['conditions'])
        self.assertEqual(iso_time(policy['expiration']), expires_at)

    def test_refetched_inside_refresh_margin(self):
        reply1, exp1, served1 = self.upload_url_checked()
        # The cached credentials now expire within the 5-minute margin: the next signature
        # must come from a fresh fetch, with a later expiry and the new token.
        time.sleep(self.LIFETIME - 300 + 1.5)
        reply2, exp2, served2 = self.upload_url_checked()
        self.assertGreater(len(served2), len(served1))
        self.assertGreater(exp2, exp1)
        q = {k: v[0] for k, v in parse_qs(urlsplit(reply2['upload']['url']).query).items()}
        self.assertIn(q['X-Amz-Security-Token'], [t for _, t in served2[len(served1):]])
        status, body = curl_put(reply2['upload'], corpus('small.jpg'))
        self.assertEqual(status, 200, body)
        self.assertEqual(self.endpoint.bad_auth, 0)


class ContainerCredentialsOutageTest(unittest.TestCase, Check):
    """Short-lived credentials and an endpoint that goes away: URLs are still signed with the
    cached credentials while they last, expire with them, and none is handed out after."""

    def test_urls_never_outlive_cached_credentials(self):
        env = S3.env()
        endpoint = CredentialsEndpoint(env['AWS_ACCESS_KEY_ID'], env['AWS_SECRET_ACCESS_KEY'],
                                       'ecs-agent-token-43', lifetime=int(scaled(2)) + 4)
        self.addCleanup(endpoint.close)
        svc = Resizer(S3, env={
            'AWS_ACCESS_KEY_ID': None, 'AWS_SECRET_ACCESS_KEY': None,
            'AWS_CONTAINER_CREDENTIALS_FULL_URI': endpoint.url,
            'AWS_CONTAINER_AUTHORIZATION_TOKEN': 'ecs-agent-token-43'})
        self.addCleanup(svc.close)
        endpoint.failing = True
        reply = create_upload(svc)
        last = max(e for e, _ in endpoint.snapshot())
        self.assertEqual(iso_time(reply['upload']['expires_at']), last)
        status, body = curl_put(reply['upload'], corpus('small.jpg'))
        self.assertEqual(status, 200, body)
        reply = create_upload(svc, method='POST')
        self.assertEqual(iso_time(reply['upload']['expires_at']), last)
        # Cached credentials gone, endpoint still down: an error, not a dead URL.
        time.sleep(max(0.0, last + 1.5 - time.time()))
        resp = json_http('POST', svc.url('/v1/uploads'), {'content_type': 'image/jpeg'},
                         headers=AUTH)
        assert_error(resp, 503, 'upstream_unavailable')
        self.assertTrue(resp[1].get('retry-after'))
        # Back: the next request fetches again.
        endpoint.failing = False
        reply = create_upload(svc)
        self.assertGreater(iso_time(reply['upload']['expires_at']), last)
        self.assertIn(iso_time(reply['upload']['expires_at']), [e for e, _ in endpoint.snapshot()])
        self.assertEqual(endpoint.bad_auth, 0)


class NoSourceBucketTest(unittest.TestCase, Check):
    def test_service_refuses_to_start_without_src_bucket(self):
        # Events for any bucket would be taken, and keys do not name the bucket: one bucket's
        # object could overwrite another's variants. So no start at all.
        with Resizer(S3, env={'SRC_BUCKET': None}, start=False) as svc:
            svc.start(wait=False)
            self.assertEqual(svc.wait_exit(), 2)
            self.assertIn('SRC_BUCKET', svc.log_text())


if __name__ == '__main__':
    unittest.main(verbosity=2)
