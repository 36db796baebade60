#!/usr/bin/python3
"""test_dynamodb_sign.py - DynamoDB requests are signed as botocore signs them.

dynalite (the local DynamoDB) does not check signatures, so this is the proof
that the client's requests would be accepted by DynamoDB: for cases generated
from a fixed seed (every operation the store uses, attribute values with
UTF-8, quotes and long strings, with and without a session token, several
regions, the default endpoint and local ones, random instants 2010..2035),
botocore's real DynamoDB client builds and signs the request at a fixed
clock (it is captured before sending), and `tests/tools/ddb_cli sign` (env
DDB_CLI) signs the same body for the same endpoint, instant and keys.
Compared byte for byte: Authorization, X-Amz-Target, Content-Type,
X-Amz-Date, X-Amz-Security-Token and the URL. Fails on any mismatch.
Run by ctest with Debian's /usr/bin/python3 (python3-botocore)."""

import datetime
import json
import os
import random
import subprocess
import sys
import types

import botocore.auth
import botocore.awsrequest
import botocore.session

SEED = 20261201
EPOCH = datetime.datetime(1970, 1, 1)
T_MIN = 1262304000   # 2010-01-01
T_MAX = 2051222400   # 2035-01-01


class _Clock:
    now = EPOCH


class _FixedDatetime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return _Clock.now


# botocore 1.29 reads the signing time as datetime.datetime.utcnow() in botocore.auth.
botocore.auth.datetime = types.SimpleNamespace(datetime=_FixedDatetime,
                                               timedelta=datetime.timedelta)

TOKEN = ('IQoJb3JpZ2luX2VjEJr//////////wEaCWV1LXdlc3QtMSJHMEUCIQD+example+token/with/'
         'slashes+and+plus==')
CREDS = [
    ('AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', None),
    ('ASIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', TOKEN),
    ('local', 'local', None),
]
# (endpoint_url or None for the regional default, region)
ENDPOINTS = [
    (None, 'us-east-1'), (None, 'eu-west-1'), (None, 'ap-southeast-2'),
    ('http://127.0.0.1:8000', 'us-east-1'), ('http://localhost:45123', 'eu-central-1'),
    ('https://dynamodb.example.internal:8443', 'us-west-2'),
    ('https://dynamodb.eu-west-1.amazonaws.com:443', 'eu-west-1'),
]
PIECES = ['images/a.jpg', 'caf\u00e9', '\u4e2d\u6587', '\U0001F600', 'a "quoted" b', 'x\\y',
          '  spaces  ', 'tab\there', 'new\nline', '100%', '+/=', '']


def text(rng):
    s = ''.join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))
    if rng.random() < 0.05:
        s += 'x' * rng.randint(1000, 20000)
    return s or 'k'


def item(rng):
    return {'pk': {'S': text(rng)}, 'state': {'S': rng.choice(['queued', 'processing'])},
            'seq': {'N': str(rng.randint(0, 1 << 53))},
            'lease_until': {'N': str(rng.randint(T_MIN, T_MAX))},
            'meta': {'M': {'uploader': {'S': text(rng)}, 'ok': {'BOOL': rng.random() < 0.5}}},
            'tags': {'L': [{'S': text(rng)} for _ in range(rng.randint(0, 3))]}}


def operation(rng, table):
    """(method name, kwargs) for one botocore call."""
    k = {'pk': {'S': text(rng)}}
    ops = [
        ('put_item', dict(TableName=table, Item=item(rng),
                          ConditionExpression='attribute_not_exists(pk)',
                          ReturnValues='ALL_OLD')),
        ('get_item', dict(TableName=table, Key=k, ConsistentRead=rng.random() < 0.5)),
        ('update_item', dict(TableName=table, Key=k,
                             UpdateExpression='SET #s = :s, lease_until = :l REMOVE lease_shard',
                             ConditionExpression='#s = :old',
                             ExpressionAttributeNames={'#s': 'state'},
                             ExpressionAttributeValues={':s': {'S': 'done'},
                                                        ':old': {'S': 'processing'},
                                                        ':l': {'N': '0'}},
                             ReturnValues='ALL_NEW')),
        ('delete_item', dict(TableName=table, Key=k)),
        ('query', dict(TableName=table, IndexName='inflight',
                       KeyConditionExpression='lease_shard = :sh AND lease_until < :now',
                       ExpressionAttributeValues={':sh': {'S': str(rng.randint(0, 15))},
                                                  ':now': {'N': str(rng.randint(T_MIN, T_MAX))}},
                       Limit=rng.randint(1, 1000))),
        ('describe_table', dict(TableName=table)),
        ('update_time_to_live', dict(TableName=table, TimeToLiveSpecification={
            'Enabled': True, 'AttributeName': 'expires_at'})),
        ('create_table', dict(
            TableName=table, BillingMode='PAY_PER_REQUEST',
            AttributeDefinitions=[{'AttributeName': 'pk', 'AttributeType': 'S'},
                                  {'AttributeName': 'state', 'AttributeType': 'S'},
                                  {'AttributeName': 'seq', 'AttributeType': 'N'}],
            KeySchema=[{'AttributeName': 'pk', 'KeyType': 'HASH'}],
            GlobalSecondaryIndexes=[{
                'IndexName': 'by_state', 'Projection': {'ProjectionType': 'ALL'},
                'KeySchema': [{'AttributeName': 'state', 'KeyType': 'HASH'},
                              {'AttributeName': 'seq', 'KeyType': 'RANGE'}]}])),
        ('transact_write_items', dict(TransactItems=[
            {'ConditionCheck': {'TableName': table, 'Key': k,
                                'ConditionExpression': 'attribute_exists(pk)'}},
            {'Put': {'TableName': table, 'Item': item(rng)}}])),
    ]
    return rng.choice(ops)


class _Body:
    def stream(self, **kw):
        return [b'{}']

    def read(self, *a):
        return b'{}'


_CLIENTS = {}
_SEEN = {}


def _before_send(request, **kw):
    _SEEN['request'] = request
    return botocore.awsrequest.AWSResponse(request.url, 200, {}, _Body())


def client_for(endpoint, region, cred):
    key = (endpoint, region, cred)
    if key not in _CLIENTS:
        ak, sk, tok = cred
        client = botocore.session.get_session().create_client(
            'dynamodb', region_name=region, endpoint_url=endpoint, aws_access_key_id=ak,
            aws_secret_access_key=sk, aws_session_token=tok)
        client.meta.events.register('before-send.dynamodb', _before_send)
        _CLIENTS[key] = client
    return _CLIENTS[key]


def botocore_request(endpoint, region, cred, method, kwargs, now):
    """The request botocore's DynamoDB client would send, never sent."""
    _Clock.now = EPOCH + datetime.timedelta(seconds=now)
    getattr(client_for(endpoint, region, cred), method)(**kwargs)
    return _SEEN.pop('request')


def header(req, name):
    v = req.headers.get(name)
    return v.decode() if isinstance(v, bytes) else v


def generate():
    rng = random.Random(SEED)
    cases = []
    for i in range(120):
        endpoint, region = rng.choice(ENDPOINTS)
        cred = rng.choice(CREDS)
        method, kwargs = operation(rng, rng.choice(['resizer-state', 'images', 'abc']))
        now = rng.randint(T_MIN, T_MAX)
        req = botocore_request(endpoint, region, cred, method, kwargs, now)
        body = req.body.decode() if isinstance(req.body, bytes) else req.body
        cases.append({
            'id': i, 'endpoint': endpoint, 'region': region,
            'op': header(req, 'X-Amz-Target').split('.', 1)[1], 'body': body,
            'access_key': cred[0], 'secret_key': cred[1], 'session_token': cred[2], 'now': now,
            'expect': {'Authorization': header(req, 'Authorization'),
                       'X-Amz-Target': header(req, 'X-Amz-Target'),
                       'Content-Type': header(req, 'Content-Type'),
                       'x-amz-date': header(req, 'X-Amz-Date'),
                       'x-amz-security-token': header(req, 'X-Amz-Security-Token'),
                       # curl sends no default port in Host:, and neither
                       # signer signs one
                       'url': req.url.replace(':443/', '/', 1)}})
    return cases


def run_driver(cases):
    cli = os.environ.get('DDB_CLI')
    if not cli or not os.access(cli, os.X_OK):
        sys.exit('DDB_CLI must name the ddb_cli binary (ctest sets it)')
    lines = [json.dumps({k: v for k, v in c.items() if k != 'expect'}) for c in cases]
    res = subprocess.run([cli, 'sign'], input='\n'.join(lines) + '\n', capture_output=True, text=True,
                         timeout=120, check=False)
    if res.returncode != 0:
        sys.exit('ddb_cli sign failed (%d): %s' % (res.returncode, res.stderr))
    outs = [json.loads(line) for line in res.stdout.splitlines()]
    if len(outs) != len(cases):
        sys.exit('ddb_cli sign answered %d of %d cases' % (len(outs), len(cases)))
    return outs


def ours_headers(out):
    h = {}
    for line in out.get('headers', []):
        name, _, value = line.partition(': ')
        h[name] = value
    return h


def compare(c, out):
    if out.get('err') != 'OK':
        return 'driver error %s' % out.get('err')
    h = ours_headers(out)
    exp = c['expect']
    for name in ('Authorization', 'X-Amz-Target', 'Content-Type', 'x-amz-date',
                 'x-amz-security-token'):
        if h.get(name) != exp[name]:
            return '%s differs: botocore %r, ours %r' % (name, exp[name], h.get(name))
    if out.get('url') != exp['url']:
        return 'url differs: botocore %r, ours %r' % (exp['url'], out.get('url'))
    return None


def main():
    cases = generate()
    outs = run_driver(cases)
    bad = 0
    ops = {}
    for c, out in zip(cases, outs):
        assert out.get('id') == c['id'], 'driver answered out of order'
        why = compare(c, out)
        ops[c['op']] = ops.get(c['op'], 0) + 1
        if why:
            if bad == 0:
                print('MISMATCH case %d (%s, %s): %s' % (c['id'], c['op'], c['endpoint'], why))
            bad += 1
    print('operations:', ', '.join('%s %d' % kv for kv in sorted(ops.items())))
    print('%d cases, %d mismatches' % (len(cases), bad))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
