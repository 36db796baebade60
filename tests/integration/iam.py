"""iam.py - the template's task role judged against the requests the service really makes.

Three parts, used by iam_coverage.py (the check scripts/test runs after the whole suite) and
test_iam.py (the evaluator's own tests):

  Statements   the task role's Allow statements of deploy/cloudformation.yaml, resolved for the
               buckets, prefix, table and key one service instance of the suite used.
  Request      one AWS request as IAM sees it: service:action, resource ARN, condition keys.
  recordings   where requests come from: the local S3 server's access log (every request the
               test S3 served, one line each in DIR/log/proxy-server.log), and request records
               of other services (JSON lines, e.g. DynamoDB's, written by RecordingProxy),
               attributed to service instances through the registry the harness writes
               (DIR/iam-record/services.jsonl: the settings of each resizer it started).

The evaluator knows what this template uses: Allow statements with Action and Resource
wildcards (* and ?) and the StringLike / StringEquals conditions; anything else raises, so the
check fails rather than judging a statement it does not understand. Deny statements and
resource policies are not modelled (the template puts none on the task's requests but the
buckets' HTTPS-only Deny, which the service's HTTPS requests never meet)."""

import json
import os
import re
import threading
import urllib.parse
from http import client as httpclient
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cfn

REGION = cfn.PSEUDO['AWS::Region']
ACCOUNT = cfn.PSEUDO['AWS::AccountId']
RECORD_DIR = 'iam-record'
SERVICES_FILE = 'services.jsonl'
# The settings of a service instance that decide which bucket, prefix, table and key its
# requests are judged against.
SERVICE_VARS = ('SRC_BUCKET', 'DEST_BUCKET', 'SRC_PREFIX', 'SSE', 'SSE_KMS_KEY_ID',
                'STATE_STORE', 'DYNAMODB_TABLE', 'RECONCILE_INTERVAL')
# The service's User-Agent (server/s3.c); requests of presigned URLs carry the client's.
SERVICE_AGENT = 'resizer/'
DEFAULT_PREFIX = 'images/'


# -- requests and statements ------------------------------------------------------------

class Request:
    """One request as IAM authorizes it. what: a description for messages (method and path)."""

    def __init__(self, action, resource, context=None, bucket=None, table=None, what=''):
        self.action = action
        self.resource = resource
        self.context = dict(context or {})
        self.bucket = bucket
        self.table = table
        self.what = what

    def key(self):
        return (self.action, self.resource, tuple(sorted(self.context.items())))

    def __repr__(self):
        ctx = ''.join(' %s=%r' % kv for kv in sorted(self.context.items()))
        return '%s %s%s (%s)' % (self.action, self.resource, ctx, self.what)


def _glob(pattern, value, case=True):
    """IAM's wildcard match: * any run of characters (also '/'), ? one character, nothing
    else special (unlike fnmatch, '[' is literal)."""
    flags = re.S if case else re.S | re.I
    rx = ''.join('.*' if ch == '*' else '.' if ch == '?' else re.escape(ch) for ch in pattern)
    return re.fullmatch(rx, value, flags) is not None


def _condition_holds(cond, context):
    for op, keys in cond.items():
        for key, wanted in keys.items():
            values = wanted if isinstance(wanted, list) else [wanted]
            if key not in context:
                return False  # IAM: a condition on a key the request lacks does not match
            got = context[key]
            if op == 'StringLike':
                ok = any(_glob(v, got) for v in values)
            elif op == 'StringEquals':
                ok = got in values
            else:
                raise AssertionError('condition operator %s: extend iam.py' % op)
            if not ok:
                return False
    return True


class Statement:
    def __init__(self, st, where):
        unknown = set(st) - {'Sid', 'Effect', 'Action', 'Resource', 'Condition'}
        if unknown or st['Effect'] != 'Allow':
            raise AssertionError('task role statement %s: %s unsupported by iam.py'
                                 % (where, sorted(unknown) or st['Effect']))
        self.sid = st.get('Sid') or where
        self.actions = cfn.as_list(st['Action'])
        self.resources = cfn.as_list(st['Resource'])
        self.condition = st.get('Condition', {})

    def services(self):
        return {a.split(':', 1)[0] for a in self.actions}

    def allows(self, req):
        return (any(_glob(a, req.action, case=False) for a in self.actions) and
                any(_glob(r, req.resource) for r in self.resources) and
                _condition_holds(self.condition, req.context))


def task_role_statements(doc, params=None, physical=None):
    """The task role's statements for these parameters (see cfn.Resolved)."""
    r = cfn.Resolved(doc, params, physical)
    (td,) = r.of_type('AWS::ECS::TaskDefinition').values()
    role = td['Properties']['TaskRoleArn']
    if not (role.startswith('getatt:') and role.endswith('.Arn')):
        raise AssertionError('TaskRoleArn is not a role of the template: %r' % role)
    props = r.resource(role[len('getatt:'):-len('.Arn')])['Properties']
    out = []
    for policy in props.get('Policies', []):
        sts = cfn.as_list(policy['PolicyDocument']['Statement'])
        for i, st in enumerate(sts):
            out.append(Statement(st, '%s[%d]' % (policy['PolicyName'], i)))
    return out


def table_logical_id(doc):
    """The template's DynamoDB table (its logical id), or None when it has none."""
    tables = [n for n, res in doc['Resources'].items() if res['Type'] == 'AWS::DynamoDB::Table']
    if len(tables) > 1:
        raise AssertionError('several tables in the template: map each in iam.py')
    return tables[0] if tables else None


def config_params(doc, cfg):
    """Template parameters and physical names that reproduce one service instance's settings:
    its buckets as existing ones, its prefix, SSE-KMS with its key, its table."""
    # SRC_BUCKET is optional to the service (events for other buckets are ignored); the
    # template always sets it, so an instance without one is judged with a bucket it never uses.
    params = {'BucketMode': 'existing',
              'SourceBucketName': cfg.get('SRC_BUCKET') or 'no-source-bucket',
              'DestinationBucketName': cfg.get('DEST_BUCKET') or 'no-destination-bucket',
              'SourcePrefix': cfg.get('SRC_PREFIX') or DEFAULT_PREFIX}
    if cfg.get('SSE') == 'aws:kms':
        params['KmsKeyArn'] = kms_key(cfg)
    physical = {}
    table = table_logical_id(doc)
    if table and cfg.get('DYNAMODB_TABLE'):
        physical[table] = cfg['DYNAMODB_TABLE']
    return params, physical


# -- the local S3 server's access log ----------------------------------------------------

# Swift's proxy-logging line: client and remote address, time, method, the request target
# (path and query, URL-quoted once more), protocol, status, referer, user agent, ...
_LOG_LINE = re.compile(r'^proxy-server: (\S+) (\S+) \S+ ([A-Z]+) (\S+) HTTP/\S+ (\d{3}) \S+ (\S+) ')


def s3_log_entries(path, offset=0):
    """(method, path, query dict, user agent, status) for each client request in the access log
    from byte offset on. Swift's own subrequests (no client address, /v1/ and /auth/ paths)
    and its health checks are left out."""
    with open(path, 'rb') as f:
        f.seek(offset)
        data = f.read().decode('utf-8', 'replace')
    for line in data.splitlines():
        m = _LOG_LINE.match(line)
        if not m or m.group(1) == '-':
            continue
        method, target = m.group(3), urllib.parse.unquote(m.group(4))
        path_part, _, query = target.partition('?')
        if path_part.startswith(('/v1/', '/auth/', '/healthcheck', '/info')):
            continue
        agent = urllib.parse.unquote(m.group(6))
        yield (method, path_part, dict(urllib.parse.parse_qsl(query, keep_blank_values=True)),
               agent, int(m.group(5)))


def is_presigned(query):
    """A SigV4 presigned URL (the service signs no other kind). A presigned POST form carries
    its signature in the form body instead: is_form_upload."""
    return 'X-Amz-Signature' in query or 'X-Amz-Credential' in query


def is_form_upload(method, path, query):
    """A browser POST form upload (POST /v1/uploads with "method": "POST"): POST to a bucket
    itself without a subresource, the one S3 request whose signature, policy and key all travel
    in the multipart form body, so the access log shows neither key nor signature."""
    bucket, _, key = path.lstrip('/').partition('/')
    return method == 'POST' and bool(bucket) and not key and not query


# Query parameters that name a subresource: a request with one is another action entirely.
_SUBRESOURCES = {'acl', 'tagging', 'policy', 'cors', 'lifecycle', 'versioning', 'location',
                 'notification', 'encryption', 'website', 'logging', 'replication',
                 'versions', 'versionId', 'delete', 'restore', 'select', 'retention',
                 'legal-hold', 'object-lock', 'attributes', 'accelerate', 'requestPayment'}


def s3_request(method, path, query, what=''):
    """The IAM view of one path-style S3 request, or raises ValueError for one this mapping
    does not know (the check reports it rather than guess)."""
    bucket, _, key = path.lstrip('/').partition('/')
    key = urllib.parse.unquote(key)
    sub = sorted(_SUBRESOURCES & set(query))
    if not bucket or sub:
        raise ValueError('%s %s: no mapping for %s' % (method, path, sub or 'the service root'))
    arn = 'arn:aws:s3:::' + bucket
    if not key:
        if method == 'GET' and 'uploads' not in query:
            # ListObjects(V2): the s3:prefix key is the prefix asked for ('' when none).
            return Request('s3:ListBucket', arn, {'s3:prefix': query.get('prefix', '')},
                           bucket=bucket, what=what)
        if method == 'HEAD':
            return Request('s3:ListBucket', arn, bucket=bucket, what=what)
        if is_form_upload(method, path, query):
            raise ValueError('%s %s: a POST form upload, its key is in the form body (not in the '
                             'log)' % (method, path))
        raise ValueError('%s %s: no mapping for a bucket request %s' % (method, path, query))
    obj = '%s/%s' % (arn, key)
    multipart = 'uploadId' in query or 'uploads' in query
    if method in ('GET', 'HEAD') and not multipart:
        return Request('s3:GetObject', obj, bucket=bucket, what=what)  # HEAD needs GetObject
    if method == 'PUT' or (method == 'POST' and multipart):
        return Request('s3:PutObject', obj, bucket=bucket, what=what)
    if method == 'DELETE':
        action = 's3:AbortMultipartUpload' if 'uploadId' in query else 's3:DeleteObject'
        return Request(action, obj, bucket=bucket, what=what)
    raise ValueError('%s %s: no mapping' % (method, path))


def kms_requests(req, cfg):
    """What S3 asks KMS for on the caller's behalf when the service runs with SSE=aws:kms:
    GenerateDataKey to write an object, Decrypt to read one (S3 user guide, "Using SSE-KMS")."""
    if cfg.get('SSE') != 'aws:kms':
        return []
    key = kms_key(cfg)
    if req.action == 's3:PutObject':
        return [Request('kms:GenerateDataKey', key, what='for ' + req.what)]
    if req.action == 's3:GetObject':
        return [Request('kms:Decrypt', key, what='for ' + req.what)]
    return []


def kms_key(cfg):
    """The instance's SSE-KMS key (SSE_KMS_KEY_ID), or a stand-in for the bucket's default."""
    return cfg.get('SSE_KMS_KEY_ID') or 'arn:aws:kms:%s:%s:key/local-test-key' % (REGION, ACCOUNT)


# -- other services' request records -------------------------------------------------------

def record_request(rec, what=''):
    """A Request from one JSON record {"service", "action", and per service: "table",
    "index" (dynamodb)}."""
    service, action = rec['service'], rec['action']
    if service == 'dynamodb':
        arn = 'arn:aws:dynamodb:%s:%s:table/%s' % (REGION, ACCOUNT, rec['table'])
        if rec.get('index'):
            arn += '/index/' + rec['index']
        return Request('dynamodb:' + action, arn, table=rec['table'], what=what or rec.get('what', ''))
    raise ValueError('no mapping for %s records' % service)


def read_records(directory):
    """Every record of DIR/*.requests.jsonl."""
    out = []
    if not os.path.isdir(directory):
        return out
    for name in sorted(os.listdir(directory)):
        if name.endswith('.requests.jsonl'):
            with open(os.path.join(directory, name), encoding='utf-8') as f:
                out += [json.loads(line) for line in f if line.strip()]
    return out


def register_service(s3_dir, env):
    """Appends the settings of a service instance about to run against the shared S3 server
    (called by the harness; one short line, so concurrent tests do not interleave)."""
    directory = os.path.join(s3_dir, RECORD_DIR)
    os.makedirs(directory, exist_ok=True)
    line = json.dumps({k: env[k] for k in SERVICE_VARS if env.get(k) is not None}) + '\n'
    fd = os.open(os.path.join(directory, SERVICES_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_services(directory):
    path = os.path.join(directory, SERVICES_FILE)
    if not os.path.exists(path):
        return []
    with open(path, encoding='utf-8') as f:
        seen, out = set(), []
        for line in f:
            if line.strip() and line not in seen:
                seen.add(line)
                out.append(json.loads(line))
        return out


# -- DynamoDB recording --------------------------------------------------------------------

class RecordingProxy:
    """An HTTP proxy for a DynamoDB endpoint (e.g. the local dynalite) that forwards every
    request unchanged and appends one record per request to OUT (a *.requests.jsonl file):
    the action from X-Amz-Target (DynamoDB_20120810.GetItem -> GetItem), TableName and
    IndexName from the JSON body; TransactWriteItems records each item's own action and table.
    The service's DYNAMODB_ENDPOINT points at .endpoint. Signatures stay valid: the proxy
    passes the Host header and body through as they are."""

    def __init__(self, upstream, out):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.out = out
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_POST(self):
                proxy._forward(self)

            do_GET = do_POST

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _forward(self, h):
        body = h.rfile.read(int(h.headers.get('Content-Length') or 0))
        self._record(h.headers.get('X-Amz-Target', ''), body)
        conn = httpclient.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() != 'connection'}
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            h.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ('connection', 'transfer-encoding', 'content-length'):
                    h.send_header(k, v)
            h.send_header('Content-Length', str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        finally:
            conn.close()

    def _record(self, target, body):
        if '.' not in target:
            return
        action = target.rsplit('.', 1)[1]
        try:
            doc = json.loads(body or b'{}')
        except ValueError:
            doc = {}
        recs = []
        if action == 'TransactWriteItems':
            # Each item is authorized as its own action on its own table.
            names = {'Put': 'PutItem', 'Update': 'UpdateItem', 'Delete': 'DeleteItem',
                     'ConditionCheck': 'ConditionCheckItem'}
            for item in doc.get('TransactItems', []):
                for kind, spec in item.items():
                    recs.append({'action': names.get(kind, kind), 'table': spec.get('TableName')})
        else:
            recs.append({'action': action, 'table': doc.get('TableName'),
                         'index': doc.get('IndexName')})
        lines = ''.join(json.dumps(dict(r, service='dynamodb')) + '\n' for r in recs)
        with self._lock, open(self.out, 'a', encoding='utf-8') as f:
            f.write(lines)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# -- the check -----------------------------------------------------------------------------

class Coverage:
    """Judges requests against the task role of the instances that made them.

    add(req): a request by the service instance(s) whose buckets or table it names; a request
    no registered instance explains is 'unattributed' (reported, not judged)."""

    def __init__(self, doc, services):
        self.doc = doc
        self.services = services
        self._cache = {}
        self.denied = []          # (request, reason)
        self.unattributed = []
        self.unmapped = []        # what the mapping could not turn into a request
        self.form_uploads = []    # presigned POST forms seen: key in the body, not judged
        self.used = {}            # sid -> example request
        self.count = 0
        kms = dict(config_params(doc, {'SRC_BUCKET': 'src', 'DEST_BUCKET': 'dest',
                                       'SSE': 'aws:kms'})[0])
        self.all_sids = [s.sid for s in task_role_statements(doc, kms)]
        self.sid_services = {s.sid: s.services() for s in task_role_statements(doc, kms)}

    def _statements(self, cfg):
        k = json.dumps(cfg, sort_keys=True)
        if k not in self._cache:
            params, physical = config_params(self.doc, cfg)
            self._cache[k] = task_role_statements(self.doc, params, physical)
        return self._cache[k]

    def _configs_for(self, req):
        if req.bucket:
            return [c for c in self.services
                    if req.bucket in (c.get('SRC_BUCKET'), c.get('DEST_BUCKET'))]
        if req.table:
            return [c for c in self.services if c.get('DYNAMODB_TABLE') == req.table]
        return []

    def attributable(self, req):
        return bool(self._configs_for(req))

    def add(self, req):
        configs = self._configs_for(req)
        if not configs:
            self.unattributed.append(req)
            return
        self.count += 1
        for cfg in configs:
            implied = [req] + (kms_requests(req, cfg) if req.bucket else [])
            sids = [[s.sid for s in self._statements(cfg) if s.allows(r)] for r in implied]
            if all(sids):
                for r, allowed in zip(implied, sids):
                    for sid in allowed:
                        self.used.setdefault(sid, r)
                return
        implied = [req] + (kms_requests(req, configs[0]) if req.bucket else [])
        self.denied.append((req, 'no statement allows %s' % ' + '.join(r.action for r in implied)))

    def unused(self):
        return [sid for sid in self.all_sids if sid not in self.used]
