#!/usr/bin/python3
"""test_sigv4_oracle.py - the C signer agrees with botocore, case by case.

Generates a few hundred cases from a fixed seed (keys with spaces, '+', '%',
'~', '//', dot segments, UTF-8 and 1024-byte keys; GET and PUT; with and
without a session token; path- and virtual-hosted-style; endpoints with
ports; expiries 1..604800; signed Content-Type and SSE headers), signs each
with botocore at a fixed clock and with tests/tools/sigv4_cli (path in env
SIGV4_CLI), and compares:
  - presigned URLs from botocore's real S3 client (generate_presigned_url):
    the whole URL when botocore orders the query as we do (no token, no
    extra parameters), else the same URL up to the order of its parameters;
  - Authorization headers from S3SigV4Auth (x-amz-content-sha256 included);
  - Authorization headers from SigV4Auth for a generic service, where the
    path is double-encoded and normalised;
  - POST policy signatures from generate_presigned_post;
  - the golden files of tests/unit/test_s3_presign.c (tests/vectors/s3_presign:
    the S3 client's presigned URLs and POST forms, byte for byte): each URL
    is botocore's, each form's fields, policy conditions and signature too.
On the first mismatch it prints both canonical requests; it fails on any.
Run by ctest with Debian's /usr/bin/python3 (python3-botocore)."""

import base64
import datetime
import hashlib
import json
import os
import random
import subprocess
import sys
import types
from urllib.parse import urlsplit

import botocore.auth
import botocore.session
import botocore.signers
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode

SEED = 20240607
EPOCH = datetime.datetime(1970, 1, 1)


# -- botocore at a fixed clock ----------------------------------------------
# botocore 1.29 reads the time as datetime.datetime.utcnow() in botocore.auth
# (every SigV4 signer) and botocore.signers (the POST policy's expiration).

class _Clock:
    now = EPOCH


class _FixedDatetime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return _Clock.now


_FAKE_DATETIME = types.SimpleNamespace(datetime=_FixedDatetime, timedelta=datetime.timedelta)
botocore.auth.datetime = _FAKE_DATETIME
botocore.signers.datetime = _FAKE_DATETIME


def set_clock(epoch):
    _Clock.now = EPOCH + datetime.timedelta(seconds=epoch)


# Keep botocore's last canonical request and string to sign for the report.
_LAST = {}
_orig_creq = botocore.auth.SigV4Auth.canonical_request
_orig_sts = botocore.auth.SigV4Auth.string_to_sign


def _spy_creq(self, request):
    _LAST['creq'] = _orig_creq(self, request)
    return _LAST['creq']


def _spy_sts(self, request, canonical_request):
    _LAST['sts'] = _orig_sts(self, request, canonical_request)
    return _LAST['sts']


botocore.auth.SigV4Auth.canonical_request = _spy_creq
botocore.auth.SigV4Auth.string_to_sign = _spy_sts


# -- case generation ---------------------------------------------------------

# (endpoint_url, region, addressing styles)
ENDPOINTS = [
    ('https://s3.amazonaws.com', 'us-east-1', ('virtual', 'path')),
    ('https://s3.eu-west-1.amazonaws.com', 'eu-west-1', ('virtual', 'path')),
    ('http://127.0.0.1:8090', 'us-east-1', ('path',)),
    ('https://minio.example.test:9000', 'us-east-1', ('virtual', 'path')),
    ('http://objects.internal.example', 'garage', ('virtual', 'path')),
    ('https://storage.example.com:443', 'us-east-1', ('path',)),
]
TOKEN = ('IQoJb3JpZ2luX2VjEJr//////////wEaCWV1LXdlc3QtMSJHMEUCIQD+example+token/with/'
         'slashes+and+plus==')
CREDS = [
    ('AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', None),
    ('test:tester', 'testing', None),
    ('ASIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', TOKEN),
]
BUCKETS = ['examplebucket', 'manara-image-resize-uploader', 'b-1']
PIECES = ['images', 'a b', 'x+y', '100%', '%41', '~tilde', '', '.', '..', 'caf\u00e9',
          '\u0436\u0443\u043a', '\u4e2d\u6587', '\U0001F600', "!'()*", ':@=&;,$', 'file.jpg',
          'UPPER lower', '-_.', 'a  b', 'q?x#y']
CONTENT_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'application/octet-stream',
                 'text/plain; charset=utf-8']
KMS_KEY = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab'
T_MIN = 1262304000   # 2010-01-01
T_MAX = 2051222400   # 2035-01-01


def make_key(rng):
    if rng.random() < 0.1:
        # A key of exactly S3's limit, 1024 bytes of UTF-8.
        out = ''
        while True:
            piece = rng.choice(PIECES + ['/'])
            if len((out + piece).encode()) > 1024:
                break
            out += piece
        return out + 'x' * (1024 - len(out.encode()))
    key = '/'.join(rng.choice(PIECES) for _ in range(rng.randint(1, 5)))
    return key or 'k'


def make_expires(rng):
    return rng.choice([1, 60, 900, 3600, 86400, 604800, rng.randint(1, 604800)])


def address(endpoint, style, bucket, key):
    """(scheme, host, raw path) the way the S3 client addresses an object."""
    u = urlsplit(endpoint)
    host = u.hostname
    if u.port and u.port != {'http': 80, 'https': 443}[u.scheme]:
        host = '%s:%d' % (host, u.port)
    if style == 'virtual':
        return u.scheme, bucket + '.' + host, '/' + key
    return u.scheme, host, '/' + bucket + ('/' + key if key else '')


def base_case(rng, op):
    ep, region, styles = rng.choice(ENDPOINTS)
    style = rng.choice(styles)
    cred = rng.randrange(len(CREDS))
    ak, sk, tok = CREDS[cred]
    return {
        'op': op, 'endpoint': ep, 'style': style, 'cred': cred, 'region': region,
        'service': 's3', 'access_key': ak, 'secret_key': sk, 'session_token': tok,
        'now': rng.randint(T_MIN, T_MAX), 'double_encode': False, 'normalize': False,
        'query': [], 'headers': [],
    }


def presign_case(rng):
    c = base_case(rng, 'presign')
    c['method'] = rng.choice(['GET', 'PUT'])
    c['bucket'] = rng.choice(BUCKETS)
    c['key'] = make_key(rng)
    c['expires'] = make_expires(rng)
    params = {}
    if c['method'] == 'PUT':
        if rng.random() < 0.7:
            params['ContentType'] = rng.choice(CONTENT_TYPES)
        if rng.random() < 0.4:
            params['ServerSideEncryption'] = rng.choice(['AES256', 'aws:kms'])
            if params['ServerSideEncryption'] == 'aws:kms' and rng.random() < 0.5:
                params['SSEKMSKeyId'] = KMS_KEY
        if rng.random() < 0.2:
            params['Metadata'] = {'image-id': '%08x' % rng.getrandbits(32)}
    else:
        if rng.random() < 0.2:
            params['ResponseContentDisposition'] = 'attachment; filename="%s"' % rng.choice(PIECES)
        if rng.random() < 0.1:
            params['ResponseContentType'] = rng.choice(CONTENT_TYPES)
        if rng.random() < 0.1:
            params['VersionId'] = 'v+%08x/=' % rng.getrandbits(32)
    c['params'] = params
    c['scheme'], c['host'], c['path'] = address(c['endpoint'], c['style'], c['bucket'], c['key'])
    for name, field in [('Content-Type', 'ContentType'),
                        ('x-amz-server-side-encryption', 'ServerSideEncryption'),
                        ('x-amz-server-side-encryption-aws-kms-key-id', 'SSEKMSKeyId')]:
        if field in params:
            c['headers'].append([name, params[field]])
    for k, v in params.get('Metadata', {}).items():
        c['headers'].append(['x-amz-meta-' + k, v])
    for name, field in [('response-content-disposition', 'ResponseContentDisposition'),
                        ('response-content-type', 'ResponseContentType'),
                        ('versionId', 'VersionId')]:
        if field in params:
            c['query'].append([name, params[field]])
    return c


def s3_headers_case(rng):
    c = base_case(rng, 'headers')
    c['method'] = rng.choice(['GET', 'PUT', 'HEAD', 'DELETE'])
    bucket = rng.choice(BUCKETS)
    body = b''
    if c['method'] == 'GET' and rng.random() < 0.3:
        # ListObjectsV2 on the bucket, with a bare "uploads"-style name sometimes.
        c['scheme'], c['host'], c['path'] = address(c['endpoint'], c['style'], bucket, '')
        c['query'] = [['list-type', '2'], ['prefix', make_key(rng)[:64]], ['delimiter', '/'],
                      ['continuation-token', base64.b64encode(rng.randbytes(24)).decode()]]
        if rng.random() < 0.5:
            c['query'].append(['fetch-owner', None])
    else:
        c['scheme'], c['host'], c['path'] = address(c['endpoint'], c['style'], bucket,
                                                    make_key(rng))
    if c['method'] == 'PUT':
        body = rng.randbytes(rng.randint(0, 2048))
        c['headers'].append(['Content-Type', rng.choice(CONTENT_TYPES)])
        if rng.random() < 0.5:
            c['headers'].append(['x-amz-server-side-encryption', 'AES256'])
        if rng.random() < 0.5:
            c['headers'].append(['X-Amz-Meta-Note', '  two   spaces\tand a tab  '])
    if c['method'] == 'GET' and rng.random() < 0.3:
        c['headers'].append(['Range', 'bytes=0-%d' % rng.randint(0, 1 << 20)])
    c['payload_hash'] = hashlib.sha256(body).hexdigest()
    c['headers'].append(['x-amz-content-sha256', c['payload_hash']])
    c['body'] = base64.b64encode(body).decode()
    return c


def generic_headers_case(rng):
    """The generic rules: path double-encoded and normalised (not S3)."""
    c = base_case(rng, 'headers')
    c['service'] = 'service'
    c['double_encode'] = True
    c['normalize'] = True
    c['method'] = rng.choice(['GET', 'POST'])
    c['scheme'], c['host'] = 'https', 'example.amazonaws.com'
    c['path'] = '/' + '/'.join(rng.choice(PIECES) for _ in range(rng.randint(1, 6)))
    if rng.random() < 0.5:
        c['query'] = [['Param%d' % i, rng.choice(PIECES)] for i in range(rng.randint(1, 3))]
    if rng.random() < 0.5:
        c['headers'].append(['My-Header1', '  a   b  c '])
    body = rng.randbytes(rng.randint(0, 64)) if c['method'] == 'POST' else b''
    c['payload_hash'] = hashlib.sha256(body).hexdigest()
    c['body'] = base64.b64encode(body).decode()
    return c


def policy_case(rng):
    c = base_case(rng, 'policy')
    c['bucket'] = rng.choice(BUCKETS)
    c['key'] = 'images/%08x.jpg' % rng.getrandbits(32)
    c['content_type'] = rng.choice(CONTENT_TYPES)
    c['max_bytes'] = rng.randint(1, 50 << 20)
    c['expires'] = make_expires(rng)
    return c


def generate():
    rng = random.Random(SEED)
    cases = [presign_case(rng) for _ in range(220)]
    cases += [s3_headers_case(rng) for _ in range(80)]
    cases += [generic_headers_case(rng) for _ in range(30)]
    cases += [policy_case(rng) for _ in range(20)]
    for i, c in enumerate(cases):
        c['id'] = i
    return cases


# -- botocore's answers --------------------------------------------------------

_CLIENTS = {}


def client_for(c):
    k = (c['endpoint'], c['region'], c['style'], c['cred'])
    if k not in _CLIENTS:
        ak, sk, tok = CREDS[c['cred']]
        session = botocore.session.get_session()
        _CLIENTS[k] = session.create_client(
            's3', region_name=c['region'], endpoint_url=c['endpoint'], aws_access_key_id=ak,
            aws_secret_access_key=sk, aws_session_token=tok,
            config=Config(signature_version='s3v4', s3={'addressing_style': c['style']}))
    return _CLIENTS[k]


def creds_of(c):
    return Credentials(c['access_key'], c['secret_key'], c['session_token'])


def wire_url(c):
    url = '%s://%s%s' % (c['scheme'], c['host'], percent_encode(c['path'], safe='/~'))
    if c['query']:
        url += '?' + '&'.join(percent_encode(n) if v is None else
                              percent_encode(n) + '=' + percent_encode(v)
                              for n, v in c['query'])
    return url


def botocore_answer(c):
    set_clock(c['now'])
    _LAST.clear()
    if c['op'] == 'presign':
        op = 'get_object' if c['method'] == 'GET' else 'put_object'
        params = dict(c['params'], Bucket=c['bucket'], Key=c['key'])
        return client_for(c).generate_presigned_url(op, Params=params, ExpiresIn=c['expires'])
    if c['op'] == 'policy':
        return client_for(c).generate_presigned_post(
            c['bucket'], c['key'], Fields={'Content-Type': c['content_type']},
            Conditions=[{'Content-Type': c['content_type']},
                        ['content-length-range', 1, c['max_bytes']]],
            ExpiresIn=c['expires'])
    headers = {n: v for n, v in c['headers']}
    req = AWSRequest(method=c['method'], url=wire_url(c), headers=headers,
                     data=base64.b64decode(c['body']))
    if c['service'] == 's3':
        signer = botocore.auth.S3SigV4Auth(creds_of(c), 's3', c['region'])
    else:
        signer = botocore.auth.SigV4Auth(creds_of(c), c['service'], c['region'])
    signer.add_auth(req)
    return req.headers['Authorization']


# -- our answers --------------------------------------------------------------

DRIVER_KEYS = ['id', 'op', 'method', 'scheme', 'host', 'path', 'query', 'headers',
               'payload_hash', 'region', 'service', 'double_encode', 'normalize',
               'access_key', 'secret_key', 'session_token', 'now', 'expires', 'policy']


def run_driver(cases):
    cli = os.environ.get('SIGV4_CLI')
    if not cli or not os.access(cli, os.X_OK):
        sys.exit('SIGV4_CLI must name the sigv4_cli binary (ctest sets it)')
    lines = [json.dumps({k: c[k] for k in DRIVER_KEYS if k in c}) for c in cases]
    res = subprocess.run([cli], input='\n'.join(lines) + '\n', capture_output=True, text=True,
                         timeout=120, check=False)
    if res.returncode != 0:
        sys.exit('sigv4_cli failed (%d): %s' % (res.returncode, res.stderr))
    outs = [json.loads(line) for line in res.stdout.splitlines()]
    if len(outs) != len(cases):
        sys.exit('sigv4_cli answered %d of %d cases' % (len(outs), len(cases)))
    return outs


# -- comparison ---------------------------------------------------------------

def strip_default_port(url):
    u = urlsplit(url)
    default = {'http': 80, 'https': 443}[u.scheme]
    if u.port == default:
        url = url.replace('%s://%s:%d' % (u.scheme, u.hostname, default),
                          '%s://%s' % (u.scheme, u.hostname), 1)
    return url


def compare_presign(theirs, ours):
    """'exact', 'reordered', or a reason for the mismatch."""
    theirs = strip_default_port(theirs)
    if theirs == ours:
        return 'exact'
    t_base, _, t_query = theirs.partition('?')
    o_base, _, o_query = ours.partition('?')
    if t_base != o_base:
        return 'scheme, host or path differ'
    if not t_query.endswith(o_query[o_query.rindex('&X-Amz-Signature='):]):
        return 'signature differs'
    if sorted(t_query.split('&')) != sorted(o_query.split('&')):
        return 'query parameters differ'
    return 'reordered'


def compare(c, theirs, ours):
    if ours.get('err') != 'OK':
        return 'driver error %s' % ours.get('err')
    if c['op'] == 'presign':
        return compare_presign(theirs, ours['url'])
    if c['op'] == 'policy':
        f = theirs['fields']
        if f['x-amz-signature'] != ours['signature']:
            return 'policy signature differs'
        if f['x-amz-credential'] != ours['credential'] or f['x-amz-date'] != ours['amz_date']:
            return 'credential or date field differs'
        return 'exact'
    return 'exact' if theirs == ours['authorization'] else 'authorization differs'


def report(c, theirs, ours, why):
    set_clock(c['now'])
    theirs_again = botocore_answer(c)  # refreshes _LAST for this case
    print('MISMATCH case %d (%s): %s' % (c['id'], c['op'], why))
    print('case:', json.dumps({k: v for k, v in c.items() if k != 'secret_key'}))
    print('botocore:', theirs_again if theirs_again == theirs else theirs)
    print('ours:    ', ours.get('url') or ours.get('authorization') or ours)
    print('--- botocore canonical request ---\n%s' % _LAST.get('creq', '(none)'))
    print('--- our canonical request ---\n%s' % ours.get('creq', '(none)'))
    print('--- botocore string to sign ---\n%s' % _LAST.get('sts', '(none)'))
    print('--- our string to sign ---\n%s' % ours.get('sts', '(none)'))


# -- the presigning golden files ------------------------------------------------

GOLDEN_PUT_PARAMS = [('content_type', 'ContentType', 'Content-Type'),
                     ('sse', 'ServerSideEncryption', 'x-amz-server-side-encryption'),
                     ('sse_kms_key_id', 'SSEKMSKeyId',
                      'x-amz-server-side-encryption-aws-kms-key-id')]


def golden_dir():
    src = os.environ.get('RESIZER_SOURCE_DIR') or os.path.join(os.path.dirname(__file__), '..', '..')
    return os.path.join(src, 'tests', 'vectors', 's3_presign')


def golden_client(c):
    return botocore.session.get_session().create_client(
        's3', region_name=c['region'], endpoint_url=c.get('public_endpoint') or c['endpoint'],
        aws_access_key_id=c['access_key'], aws_secret_access_key=c['secret_key'],
        aws_session_token=c.get('session_token'),
        config=Config(signature_version='s3v4', s3={'addressing_style': c['style']}))


def parse_fields(text):
    return [tuple(line.split(': ', 1)) for line in text.splitlines()]


def golden_url(c, url, fields):
    params = {'Bucket': c['bucket'], 'Key': c['key']}
    want = []
    if c['op'] == 'put':
        for key, param, header in GOLDEN_PUT_PARAMS:
            if c.get(key):
                params[param] = c[key]
                want.append((header, c[key]))
    op = 'get_object' if c['op'] == 'get' else 'put_object'
    theirs = golden_client(c).generate_presigned_url(op, Params=params, ExpiresIn=c['expires'])
    why = compare_presign(theirs, url)
    if why not in ('exact', 'reordered'):
        return '%s (botocore: %s)' % (why, theirs)
    return why if fields == want else 'fields %r, not %r' % (fields, want)


def golden_post(c, url, fields):
    f = dict(fields)
    extra = {'Content-Type': c['content_type']}
    if c.get('sse'):
        extra['x-amz-server-side-encryption'] = c['sse']
    theirs = golden_client(c).generate_presigned_post(
        c['bucket'], c['key'], Fields=extra,
        Conditions=[{k: v} for k, v in extra.items()] +
                   [['content-length-range', 1, c['max_bytes']]],
        ExpiresIn=c['expires'])
    if theirs['url'] != url:
        return 'url %s, botocore %s' % (url, theirs['url'])
    for k, v in theirs['fields'].items():
        if k not in ('policy', 'x-amz-signature') and f.get(k) != v:
            return 'field %s is %r, botocore %r' % (k, f.get(k), v)
    ours_p = json.loads(base64.b64decode(f['policy']))
    theirs_p = json.loads(base64.b64decode(theirs['fields']['policy']))
    conds = lambda p: sorted(json.dumps(x, sort_keys=True) for x in p['conditions'])
    if ours_p['expiration'] != theirs_p['expiration'] or conds(ours_p) != conds(theirs_p):
        return 'policy %r, botocore %r' % (ours_p, theirs_p)
    req = AWSRequest(method='POST', url=url)
    req.context['timestamp'] = f['x-amz-date']
    signer = botocore.auth.SigV4Auth(creds_of(c), 's3', c['region'])
    if signer.signature(f['policy'], req) != f['x-amz-signature']:
        return 'signature of our policy differs from botocore\'s'
    return 'exact'


def check_golden():
    """Mismatches between the golden files and botocore (0 when all agree)."""
    d = golden_dir()
    names = sorted(n[:-5] for n in os.listdir(d) if n.endswith('.json'))
    bad = 0
    for name in names:
        with open(os.path.join(d, name + '.json'), encoding='utf-8') as fh:
            c = json.load(fh)
        with open(os.path.join(d, name + '.url'), encoding='utf-8') as fh:
            url = fh.read()
        with open(os.path.join(d, name + '.fields'), encoding='utf-8') as fh:
            fields = parse_fields(fh.read())
        set_clock(c['now'])
        why = golden_post(c, url, fields) if c['op'] == 'post' else golden_url(c, url, fields)
        print('golden   %-30s %s' % (name, why))
        if why not in ('exact', 'reordered'):
            bad += 1
    if len(names) < 8:
        print('golden: only %d cases in %s' % (len(names), d))
        bad += 1
    return bad


def main():
    cases = generate()
    for c in cases:
        if c['op'] == 'policy':
            # The driver signs the very policy botocore built.
            c['answer'] = botocore_answer(c)
            c['policy'] = c['answer']['fields']['policy']
        else:
            c['answer'] = botocore_answer(c)
    outs = run_driver(cases)
    tally = {}
    bad = 0
    for c, ours in zip(cases, outs):
        assert ours.get('id') == c['id'], 'driver answered out of order'
        why = compare(c, c['answer'], ours)
        tally[(c['op'], why)] = tally.get((c['op'], why), 0) + 1
        if why not in ('exact', 'reordered'):
            if bad == 0:
                report(c, c['answer'], ours, why)
            bad += 1
    for (op, why), n in sorted(tally.items()):
        print('%-8s %-30s %d' % (op, why, n))
    print('%d cases, %d mismatches' % (len(cases), bad))
    bad += check_golden()
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
