#!/usr/bin/python3
"""Callers and tenancy (issue 13), against the real binary and the local S3.

- Named tokens (alice, bob), a bare token, JWT callers (RS256 and ES256, signed here with
  python3-cryptography, keys served by a JWKS over HTTP on loopback) and admins (ADMIN_TOKENS,
  and a JWT with the admin scope). Each caller uploads through POST /v1/uploads; a direct
  upload has no uploader. Every caller sees, downloads and retries only its own images (others
  are 404, exactly as a missing id), lists only its own, and ?key= finds only its own; admins
  see and act on all. The uploader is in the status record, also in the copy written to S3.
- Refusals (no token, unknown token, bad signature, other issuer/audience, expired, nbf ahead,
  alg none, HS256 keyed with the public key, unknown kid) are 401 "token is not valid"; the
  log names the failed check and never holds the token.
- Key rotation: a kid that appears in the JWKS later works without a restart, and a stream of
  unknown kids fetches the JWKS at most once per JWT_JWKS_REFRESH_MIN.
- A JWKS from a file (file://).
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from fixtures import announce, assert_error, put_source, wait_record
from harness import Resizer, S3Server, http, json_http

ISSUER = 'https://idp.test/realms/apps'
AUDIENCE = 'resizer-api'
TOKENS = {'alice': 'alice-secret-0123456789', 'bob': 'bob-secret-0123456789ab'}
BARE = 'bare-secret-0123456789abc'
BARE_NAME = 'token-' + hashlib.sha256(BARE.encode()).hexdigest()[:12]
ADMIN = 'ops-secret-0123456789abcd'
S3 = None
JPEG = None


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def int_b64(n, length=None):
    return b64u(n.to_bytes(length or (n.bit_length() + 7) // 8, 'big'))


class Key:
    """An RSA 2048 or EC P-256 signing key with its public JWK."""

    def __init__(self, kid, kind):
        self.kid, self.kind = kid, kind
        self.priv = (rsa.generate_private_key(65537, 2048) if kind == 'RSA'
                     else ec.generate_private_key(ec.SECP256R1()))

    def jwk(self):
        pub = self.priv.public_key().public_numbers()
        if self.kind == 'RSA':
            return {'kty': 'RSA', 'kid': self.kid, 'use': 'sig', 'alg': 'RS256',
                    'n': int_b64(pub.n), 'e': int_b64(pub.e)}
        return {'kty': 'EC', 'crv': 'P-256', 'kid': self.kid, 'use': 'sig',
                'x': int_b64(pub.x, 32), 'y': int_b64(pub.y, 32)}

    def pem(self):
        return self.priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims, header=None, hs256_with_public_key=False):
        alg = 'RS256' if self.kind == 'RSA' else 'ES256'
        header = header or {'alg': alg, 'kid': self.kid, 'typ': 'JWT'}
        signing_input = (b64u(json.dumps(header).encode()) + '.' +
                         b64u(json.dumps(claims).encode())).encode()
        if hs256_with_public_key:
            sig = hmac.new(self.pem(), signing_input, hashlib.sha256).digest()
        elif self.kind == 'RSA':
            sig = self.priv.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:  # JWS wants raw r||s, not the DER OpenSSL and cryptography produce
            r, s = decode_dss_signature(self.priv.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, 'big') + s.to_bytes(32, 'big')
        return signing_input.decode() + '.' + b64u(sig)


def claims(sub, **extra):
    c = {'iss': ISSUER, 'aud': [AUDIENCE, 'other-app'], 'sub': sub,
         'iat': int(time.time()), 'exp': int(time.time()) + 600}
    c.update(extra)
    return c


class JwksServer:
    """Serves the JWKS of a list of keys at /jwks.json on 127.0.0.1, counting fetches."""

    def __init__(self, keys):
        self.keys = list(keys)
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps({'keys': [k.jwk() for k in outer.keys]}).encode()
                outer.fetches += 1
                self.send_response(200 if self.path == '/jwks.json' else 404)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d/jwks.json' % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


RSA1 = EC1 = JWKS = None


def setUpModule():
    global S3, JPEG, RSA1, EC1, JWKS
    tmp = tempfile.mkdtemp(prefix='resizer-tenancy-')
    path = os.path.join(tmp, 'small.jpg')
    subprocess.run(['vips', 'gaussnoise', path + '[Q=80]', '320', '240'], check=True)
    with open(path, 'rb') as f:
        JPEG = f.read()
    shutil.rmtree(tmp, ignore_errors=True)
    RSA1, EC1 = Key('rsa-1', 'RSA'), Key('ec-1', 'EC')
    JWKS = JwksServer([RSA1, EC1])
    S3 = S3Server()


def tearDownModule():
    JWKS.close()
    S3.close()


def bearer(cred):
    return {'Authorization': 'Bearer ' + cred}


def upload(svc, cred):
    """POST /v1/uploads as cred, PUT the JPEG to the URL, announce it; returns (id, key)."""
    code, _, body = json_http('POST', svc.url('/v1/uploads'),
                              {'filename': 'a.jpg', 'content_type': 'image/jpeg'},
                              headers=bearer(cred))
    assert code == 201, (code, body)
    up = body['upload']
    code, _, data = http('PUT', up['url'], headers=up['headers'], body=JPEG)
    assert code == 200, (code, data)
    code, _, reply = announce(svc, body['key'])
    assert code == 202, (code, reply)
    return body['id'], body['key']


class Tenancy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Resizer(S3, env={
            'API_TOKENS': ','.join('%s:%s' % kv for kv in TOKENS.items()) + ',' + BARE,
            'ADMIN_TOKENS': 'ops:' + ADMIN, 'JWT_JWKS_URL': JWKS.url, 'JWT_ISSUER': ISSUER,
            'JWT_AUDIENCE': AUDIENCE, 'JWT_JWKS_REFRESH_MIN': '1'})
        cls.creds = {'alice': TOKENS['alice'], 'bob': TOKENS['bob'], BARE_NAME: BARE,
                     'carol@idp': RSA1.sign(claims('carol@idp')),
                     'dave-7f3a': EC1.sign(claims('dave-7f3a', scope='openid profile'))}
        cls.admins = {'ops': ADMIN,
                      'jwt-admin': RSA1.sign(claims('jwt-admin', scope='openid resizer:admin'))}
        cls.images = {}  # caller -> (id, key); None -> the direct upload
        for name, cred in cls.creds.items():
            cls.images[name] = upload(cls.svc, cred)
        key = 'images/direct-%s.jpg' % uuid.uuid4()
        put_source(cls.svc, key, JPEG)
        code, _, reply = announce(cls.svc, key)
        assert code == 202, (code, reply)
        direct = wait_record(cls.svc, key=key, states=('done',), headers=bearer(ADMIN))
        cls.images[None] = (direct['id'], key)
        for name, (image_id, _) in cls.images.items():
            wait_record(cls.svc, image_id=image_id, states=('done',), headers=bearer(ADMIN))

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()

    @classmethod
    def get(cls, cred, image_id, suffix='', method='GET'):
        code, hdrs, body = json_http(method, cls.svc.url('/v1/images/%s%s' % (image_id, suffix)),
                                     headers=bearer(cred))
        return code, body or {}, hdrs

    def listing(self, cred):
        ids, cursor = [], None
        while True:
            q = '/v1/images?limit=2' + ('&cursor=' + cursor if cursor else '')
            code, _, body = json_http('GET', self.svc.url(q), headers=bearer(cred))
            self.assertEqual(code, 200, body)
            ids += [item['id'] for item in body['items']]
            cursor = body['next_cursor']
            if not cursor:
                return ids

    def by_key(self, cred, key):
        code, _, body = json_http('GET', self.svc.url('/v1/images?key=' + key),
                                  headers=bearer(cred))
        self.assertEqual(code, 200, body)
        return [item['id'] for item in body['items']]

    def test_each_caller_sees_only_its_own_on_every_route(self):
        all_ids = {image_id for image_id, _ in self.images.values()}
        for name, cred in self.creds.items():
            own_id, own_key = self.images[name]
            code, body, _ = self.get(cred, own_id)
            self.assertEqual(code, 200, (name, body))
            self.assertEqual(body['uploader'], name)
            self.assertEqual(self.get(cred, own_id, '/variants/phone')[0], 302, name)
            code, body, _ = self.get(cred, own_id, '/retry', 'POST')
            self.assertEqual(code, 409, (name, body))  # past the ownership check: not failed
            self.assertEqual(self.listing(cred), [own_id], name)
            self.assertEqual(self.by_key(cred, own_key), [own_id], name)
            for other, (other_id, other_key) in self.images.items():
                if other == name:
                    continue
                what = '%s looking at the image of %s' % (name, other)
                for suffix, method in (('', 'GET'), ('/variants/phone', 'GET'),
                                       ('/variants/nope', 'GET'), ('/retry', 'POST')):
                    code, body, hdrs = self.get(cred, other_id, suffix, method)
                    with self.subTest(what + suffix):
                        assert_error((code, hdrs, body), 404, 'not_found')
                self.assertEqual(self.by_key(cred, other_key), [], what)
        # A foreign id answers exactly like an id nobody has.
        missing = self.get(TOKENS['alice'], str(uuid.uuid4()))
        foreign = self.get(TOKENS['alice'], self.images['bob'][0])
        self.assertEqual(missing[1]['error']['message'], foreign[1]['error']['message'])
        self.assertEqual(len(all_ids), len(self.images))

    def test_admins_see_and_act_on_all(self):
        all_ids = {image_id for image_id, _ in self.images.values()}
        for name, cred in self.admins.items():
            self.assertEqual(set(self.listing(cred)), all_ids, name)
            for owner, (image_id, key) in self.images.items():
                code, body, _ = self.get(cred, image_id)
                self.assertEqual(code, 200, (name, owner, body))
                self.assertEqual(body['uploader'], owner)
                self.assertEqual(self.get(cred, image_id, '/variants/tablet')[0], 302)
                self.assertEqual(self.get(cred, image_id, '/retry', 'POST')[0], 409)
                self.assertEqual(self.by_key(cred, key), [image_id])

    def test_uploader_is_in_the_record_written_to_s3(self):
        for owner, (image_id, _) in self.images.items():
            obj = S3.client().get_object(Bucket=self.svc.dest_bucket,
                                         Key='_status/ids/' + image_id)
            self.assertEqual(json.loads(obj['Body'].read())['uploader'], owner)

    def test_refusals_say_only_token_is_not_valid(self):
        now = int(time.time())
        other = Key('rsa-1', 'RSA')  # not in the JWKS, but claims rsa-1's kid
        cases = {
            'no_authorization': None,
            'unknown_token': 'not-a-configured-token-123',
            'signature': other.sign(claims('mallory')),
            'issuer': RSA1.sign(claims('mallory', iss='https://evil.test')),
            'audience': EC1.sign(claims('mallory', aud='someone-else')),
            'expired': RSA1.sign(claims('mallory', exp=now - 120)),
            'not_yet_valid': RSA1.sign(claims('mallory', nbf=now + 300)),
            'alg': RSA1.sign(claims('mallory'), hs256_with_public_key=True,
                             header={'alg': 'HS256', 'kid': 'rsa-1'}),
            'unknown_kid': Key('never-published', 'EC').sign(claims('mallory')),
        }
        none_token = '%s.%s.' % (b64u(b'{"alg":"none"}'),
                                 b64u(json.dumps(claims('mallory')).encode()))
        presented = [c for c in cases.values() if c] + [none_token]
        for reason, cred in list(cases.items()) + [('alg', none_token)]:
            for path, method in (('/v1/images', 'GET'), ('/v1/uploads', 'POST')):
                refused = json_http(method, self.svc.url(path),
                                    headers=bearer(cred) if cred else {})
                with self.subTest(reason=reason, path=path):
                    err = assert_error(refused, 401, 'unauthorized')
                    self.assertEqual(err['message'], 'token is not valid')
                    self.assertEqual(refused[1].get('www-authenticate'), 'Bearer')
        log = self.svc.log_text()
        reasons = set()
        for line in log.splitlines():
            if '"auth_refused"' in line:
                reasons.add(json.loads(line)['reason'])
        self.assertTrue(set(cases) <= reasons, (set(cases) - reasons, reasons))
        for cred in presented:
            self.assertNotIn(cred, log)
            self.assertNotIn(cred.split('.')[-1] or cred, log)

    def test_key_rotation_without_restart(self):
        new = Key('rsa-2-%s' % uuid.uuid4().hex[:8], 'RSA')
        token = new.sign(claims('rotated-user'))
        code, _, _ = json_http('GET', self.svc.url('/v1/images'), headers=bearer(token))
        self.assertEqual(code, 401)
        # A burst of unknown kids costs at most one fetch per JWT_JWKS_REFRESH_MIN (1 s).
        time.sleep(1.1)
        before = JWKS.fetches
        start = time.monotonic()
        for _ in range(20):
            junk = EC1.sign(claims('x'), header={'alg': 'ES256', 'kid': uuid.uuid4().hex})
            self.assertEqual(json_http('GET', self.svc.url('/v1/images'),
                                       headers=bearer(junk))[0], 401)
        seconds = time.monotonic() - start
        self.assertLessEqual(JWKS.fetches - before, int(seconds) + 1, seconds)
        JWKS.keys.append(new)
        time.sleep(1.1)
        code, _, body = json_http('GET', self.svc.url('/v1/images'), headers=bearer(token))
        self.assertEqual(code, 200, body)
        self.assertEqual(body['items'], [])  # a new caller: nothing of anyone else's
        new_id, _ = upload(self.svc, token)
        code, body, _ = self.get(token, new_id)
        self.assertEqual((code, body['uploader']), (200, 'rotated-user'))


class FileJwks(unittest.TestCase):
    def test_jwts_against_a_jwks_file(self):
        tmp = tempfile.mkdtemp(prefix='resizer-jwks-')
        path = os.path.join(tmp, 'jwks.json')
        with open(path, 'w') as f:
            json.dump({'keys': [EC1.jwk()]}, f)
        svc = Resizer(S3, env={'JWT_JWKS_URL': 'file://' + path, 'JWT_ISSUER': ISSUER,
                               'JWT_AUDIENCE': AUDIENCE})
        try:
            erin = EC1.sign(claims('erin'))
            frank = EC1.sign(claims('frank'))
            code, _, body = json_http('POST', svc.url('/v1/uploads'),
                                      {'content_type': 'image/png'}, headers=bearer(erin))
            self.assertEqual(code, 201, body)
            image_id = body['id']
            code, _, body = json_http('GET', svc.url('/v1/images/' + image_id),
                                      headers=bearer(erin))
            self.assertEqual((code, body['state'], body['uploader']), (200, 'pending', 'erin'))
            code, _, body = json_http('GET', svc.url('/v1/images/' + image_id),
                                      headers=bearer(frank))
            self.assertEqual(code, 404, body)
            code, _, body = json_http('GET', svc.url('/v1/images'), headers=bearer(frank))
            self.assertEqual((code, body['items']), (200, []))
            code, _, _ = json_http('GET', svc.url('/v1/images'),
                                   headers=bearer(RSA1.sign(claims('erin'))))
            self.assertEqual(code, 401)  # RSA1 is not in this JWKS
        finally:
            svc.close()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    unittest.main()
