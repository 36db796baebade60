#!/usr/bin/python3
"""test_deploy.py - the deploy files agree with the service and with PRODUCT.md.

deploy/cloudformation.yaml passes AWS's cfn-lint and yamllint (deploy/.yamllint); its task
definition sets only variables `resizer --help` lists, with values the binary accepts at start;
the ALB and container health checks probe /healthz on PORT; the EventBridge rule filters on
SRC_PREFIX's default; the state table is the one `resizer --create-table` makes on the local
DynamoDB (keys, indexes, projections), on-demand, with point-in-time recovery, encryption and
TTL, and is wired to the task (STATE_STORE, DYNAMODB_TABLE); the task role is exactly the documented set of statements (with SSE-S3 and
with SSE-KMS); no S3 wildcard action anywhere. The Dockerfile agrees on port, probe, user and
build flags. Needs RESIZER_BIN (for --help and one start), cfn-lint and yamllint on PATH.

The container image itself is checked by deploy/check-container (buildah/podman, ~75 s), not
here. Run by ctest with Debian's /usr/bin/python3 (python3-yaml)."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SOURCE_DIR = harness.SOURCE_DIR
TEMPLATE = os.path.join(SOURCE_DIR, 'deploy', 'cloudformation.yaml')
YAMLLINT_CONF = os.path.join(SOURCE_DIR, 'deploy', '.yamllint')
DOCKERFILE = os.path.join(SOURCE_DIR, 'Dockerfile')

# PRODUCT.md's reference deployment and its least-privilege role, written out here on purpose
# (not derived from the template): the template must produce exactly this.
SRC_ARN = 'arn:aws:s3:::manara-image-resize-uploader'
DEST_ARN = 'arn:aws:s3:::manara-image-resize-reciever'
KMS_KEY = 'arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d-4e5f-6789-abcd-ef0123456789'
DOCUMENTED_STATEMENTS = [
    ('Allow', ['s3:GetObject'], [SRC_ARN + '/*'], None),
    ('Allow', ['s3:ListBucket'], [SRC_ARN], {'StringLike': {'s3:prefix': ['images/*']}}),
    ('Allow', ['s3:PutObject'], [DEST_ARN + '/*'], None),
    ('Allow', ['s3:PutObject'], [SRC_ARN + '/images/*'], None),
    ('Allow', ['s3:GetObject'], [DEST_ARN + '/*'], None),
    # The shared state table (issue 17): items, and Query on its indexes.
    ('Allow', ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem',
               'dynamodb:DeleteItem', 'dynamodb:Query'],
     ['getatt:StateTable.Arn'], None),
    ('Allow', ['dynamodb:Query'], ['getatt:StateTable.Arn/index/*'], None),
]
KMS_STATEMENT = ('Allow', ['kms:Decrypt', 'kms:GenerateDataKey'], [KMS_KEY], None)
SECRET_VARS = {'API_TOKENS', 'EVENTS_API_KEY'}
STATIC_CREDENTIALS = {'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'}


# -- reading the template -----------------------------------------------------------------

class CfnLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads CloudFormation's short forms (!Ref, !Sub, ...) as the
    long forms ({'Ref': ...}, {'Fn::Sub': ...}); safe_load alone rejects the tags."""


def _cfn_tag(loader, suffix, node):
    name = suffix  # the tag without its '!'
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if name == 'Ref':
        return {'Ref': value}
    if name == 'Condition':
        return {'Condition': value}
    if name == 'GetAtt' and isinstance(value, str):
        value = value.split('.', 1)
    return {'Fn::' + name: value}


CfnLoader.add_multi_constructor('!', _cfn_tag)


def load_template():
    with open(TEMPLATE, encoding='utf-8') as f:
        return yaml.load(f, Loader=CfnLoader)


NOVALUE = object()
PSEUDO = {'AWS::Region': 'us-east-1', 'AWS::AccountId': '123456789012', 'AWS::Partition': 'aws',
          'AWS::StackName': 'resizer', 'AWS::URLSuffix': 'amazonaws.com', 'AWS::NoValue': NOVALUE}


class Resolved:
    """The template as CloudFormation would see it for given parameter values (defaults for
    the rest): conditions evaluated, Ref/GetAtt/Sub/If/Join replaced by strings. A bucket's
    Ref is its name and its Arn attribute arn:aws:s3:::name, a table's Ref a generated name
    (stack-Logical-suffix, as CloudFormation makes one); other resources resolve to
    placeholders like ref:Logical or getatt:Logical.Attr. An intrinsic this class does not
    know raises, so the test fails rather than checks something half-resolved."""

    def __init__(self, doc, params=None):
        self.doc = doc
        self.params = {}
        for name, spec in doc.get('Parameters', {}).items():
            value = (params or {}).get(name, spec.get('Default'))
            if value is None:
                value = 'param-' + name  # required parameters without a default
            if spec.get('Type') == 'CommaDelimitedList' and isinstance(value, str):
                value = value.split(',')
            self.params[name] = value

    def condition(self, name):
        return self._truth(self.doc['Conditions'][name])

    def _truth(self, expr):
        (fn, arg), = expr.items()
        if fn == 'Fn::Equals':
            a, b = (self.value(x) for x in arg)
            return str(a) == str(b)
        if fn == 'Fn::Not':
            return not self._truth(arg[0])
        if fn == 'Fn::And':
            return all(self._truth(x) for x in arg)
        if fn == 'Fn::Or':
            return any(self._truth(x) for x in arg)
        if fn == 'Condition':
            return self.condition(arg)
        raise AssertionError('unknown condition function %s' % fn)

    def _ref(self, name):
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        res = self.doc['Resources'][name]
        if res['Type'] == 'AWS::S3::Bucket':
            return self.value(res['Properties']['BucketName'])
        if res['Type'] == 'AWS::DynamoDB::Table':
            # A table without TableName gets a generated name; the binary validates it.
            return '%s-%s-1A2B3C4D5E6F' % (PSEUDO['AWS::StackName'], name)
        return 'ref:' + name

    def _getatt(self, logical, attr):
        res = self.doc['Resources'][logical]
        if res['Type'] == 'AWS::S3::Bucket' and attr == 'Arn':
            return 'arn:aws:s3:::' + self._ref(logical)
        return 'getatt:%s.%s' % (logical, attr)

    def _sub(self, arg):
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        extra = {k: self.value(v) for k, v in extra.items()}

        def one(m):
            name = m.group(1)
            if name in extra:
                return str(extra[name])
            if '.' in name and not name.startswith('AWS::'):
                return str(self._getatt(*name.split('.', 1)))
            return str(self._ref(name))
        return re.sub(r'\$\{([^}!]+)\}', one, text)

    def value(self, v):
        """v with every intrinsic resolved; NOVALUE items vanish from lists and mappings."""
        if isinstance(v, list):
            return [x for x in (self.value(i) for i in v) if x is not NOVALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (fn, arg), = v.items()
            if fn == 'Ref':
                return self._ref(arg)
            if fn == 'Fn::GetAtt':
                return self._getatt(*arg)
            if fn == 'Fn::Sub':
                return self._sub(arg)
            if fn == 'Fn::If':
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == 'Fn::Join':
                return arg[0].join(str(x) for x in self.value(arg[1]))
            if fn.startswith('Fn::') or fn == 'Condition':
                raise AssertionError('the test cannot resolve %s; extend Resolved' % fn)
        out = {}
        for k, x in v.items():
            x = self.value(x)
            if x is not NOVALUE:
                out[k] = x
        return out

    def resource(self, name):
        return self.value(self.doc['Resources'][name])

    def of_type(self, rtype):
        return {n: self.resource(n) for n, r in self.doc['Resources'].items()
                if r['Type'] == rtype and ('Condition' not in r or self.condition(r['Condition']))}


def container(resolved):
    (td,) = resolved.of_type('AWS::ECS::TaskDefinition').values()
    (c,) = td['Properties']['ContainerDefinitions']
    return c


def task_env(resolved):
    c = container(resolved)
    env = {e['Name']: str(e['Value']) for e in c.get('Environment', [])}
    return env, {s['Name'] for s in c.get('Secrets', [])}


def all_env_names(doc):
    """Every variable name the task definition can set, under any condition (both branches of
    each Fn::If), with repeats kept so duplicates show."""
    names = []

    def walk(item):
        if isinstance(item, dict) and list(item) == ['Fn::If']:
            for branch in item['Fn::If'][1:]:
                walk(branch)
        elif isinstance(item, dict) and 'Name' in item:
            names.append(item['Name'])
    for res in doc['Resources'].values():
        if res['Type'] != 'AWS::ECS::TaskDefinition':
            continue
        for c in res['Properties']['ContainerDefinitions']:
            for item in c.get('Environment', []) + c.get('Secrets', []):
                walk(item)
    return names


def as_list(v):
    return v if isinstance(v, list) else [v]


def normalize_statement(st):
    cond = st.get('Condition')
    if cond is not None:
        cond = {op: {k: sorted(as_list(x)) for k, x in kv.items()} for op, kv in cond.items()}
    return (st['Effect'], sorted(as_list(st['Action'])), sorted(as_list(st['Resource'])), cond)


def policy_statements(resolved):
    """(where, statement) for every policy statement in the template: IAM role policies,
    standalone IAM policies, bucket and queue policies."""
    out = []
    for name, res in resolved.doc['Resources'].items():
        if 'Condition' in res and not resolved.condition(res['Condition']):
            continue
        props = resolved.resource(name).get('Properties', {})
        docs = [p['PolicyDocument'] for p in props.get('Policies', [])]
        if 'PolicyDocument' in props:
            docs.append(props['PolicyDocument'])
        for d in docs:
            out += [(name, st) for st in as_list(d['Statement'])]
    return out


def help_vars():
    """{name: default or None} from `resizer --help`."""
    proc = subprocess.run([os.environ['RESIZER_BIN'], '--help'], capture_output=True, text=True,
                          timeout=30)
    if proc.returncode != 0:
        raise AssertionError('resizer --help exited %d: %s' % (proc.returncode, proc.stderr))
    out = {}
    for line in proc.stdout.splitlines():
        m = re.match(r'^  ([A-Z][A-Z0-9_]+)\s{2,}(.*?)(?: \[default: (.*)\])?$', line)
        if m:
            out[m.group(1)] = m.group(3)
    if len(out) < 20:
        raise AssertionError('could not read the variables from --help:\n' + proc.stdout)
    return out


def tool(name, hint):
    """The tool on PATH, or where this machine image keeps pip tools (pyenv), since a
    non-login shell (CI) may not have pyenv's folders on PATH."""
    path = shutil.which(name)
    if not path:
        home = os.path.expanduser('~')
        candidates = [os.path.join(home, '.pyenv', 'shims', name)]
        candidates += sorted(glob.glob(os.path.join(home, '.pyenv', 'versions', '*', 'bin', name)))
        path = next((c for c in candidates if os.access(c, os.X_OK)), None)
    if not path:
        raise AssertionError('%s is not installed, so deploy/cloudformation.yaml cannot be checked: '
                             '%s' % (name, hint))
    return path


# -- the tests ----------------------------------------------------------------------------

class Linters(unittest.TestCase):
    def test_cfn_lint_passes(self):
        exe = tool('cfn-lint', "AWS's cfn-lint (pip package cfn-lint) must be on PATH; it cannot be "
                   'installed from Debian or npm (the npm package is too old for '
                   'AWS::Events::ApiDestination)')
        proc = subprocess.run([exe, TEMPLATE], capture_output=True, text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, 'cfn-lint found problems (errors, warnings or '
                         'notes):\n' + proc.stdout + proc.stderr)

    def test_yamllint_passes(self):
        exe = tool('yamllint', 'scripts/install-deps test installs it (deploy/packages/test.txt)')
        proc = subprocess.run([exe, '--strict', '-f', 'parsable', '-c', YAMLLINT_CONF, TEMPLATE],
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, 'yamllint:\n' + proc.stdout + proc.stderr)


class TaskDefinition(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = load_template()
        cls.help = help_vars()

    def test_env_names_are_ones_the_service_reads(self):
        names = all_env_names(self.doc)
        self.assertEqual(len(names), len(set(names)), 'a variable is set twice: %s' % names)
        unknown = sorted(set(names) - set(self.help))
        self.assertFalse(unknown, 'the task definition sets variables resizer --help does not '
                         'list (typos are silently ignored by the service): %s' % unknown)
        for required in ('DEST_BUCKET', 'SRC_BUCKET', 'AWS_REGION') + tuple(SECRET_VARS):
            self.assertIn(required, names)
        self.assertFalse(STATIC_CREDENTIALS & set(names),
                         'static credentials in the task: the task role provides them')

    def test_secrets_come_from_secrets_manager(self):
        for params in ({}, {'ApiTokens': 'a' * 20, 'EventsApiKey': 'b' * 20}):
            r = Resolved(self.doc, params)
            env, secrets = task_env(r)
            self.assertEqual(secrets, SECRET_VARS)
            self.assertFalse(SECRET_VARS & set(env), 'a secret in plain Environment')
            for s in container(r)['Secrets']:
                self.assertEqual(r.doc['Resources'][s['ValueFrom'][4:]]['Type'],
                                 'AWS::SecretsManager::Secret')

    def test_env_is_accepted_by_the_binary(self):
        """The task's environment (defaults, and with SSE-KMS and a watermark) starts the real
        binary: a value the service refuses would crash-loop every task on ECS."""
        cases = [{}, {'KmsKeyArn': KMS_KEY, 'WatermarkText': 'example.com', 'Workers': 2}]
        for params in cases:
            with self.subTest(params=params):
                env, _ = task_env(Resolved(self.doc, params))
                if params:
                    self.assertEqual(env['SSE'], 'aws:kms')
                    self.assertEqual(env['SSE_KMS_KEY_ID'], KMS_KEY)
                else:
                    self.assertEqual(env['SSE'], 'AES256')
                    self.assertNotIn('SSE_KMS_KEY_ID', env)
                self.start_and_stop(env)

    def start_and_stop(self, env):
        port = harness.free_port()
        # Only loopback: the listen address and an S3 endpoint nobody answers on (the probe
        # just fails); static test credentials stand in for the task role.
        run_env = dict(env, PORT=str(port), LISTEN_ADDR='127.0.0.1',
                       S3_ENDPOINT='http://127.0.0.1:%d' % harness.free_port(),
                       DYNAMODB_ENDPOINT='http://127.0.0.1:%d' % harness.free_port(),
                       API_TOKENS=harness.API_TOKEN, EVENTS_API_KEY=harness.EVENTS_API_KEY,
                       AWS_ACCESS_KEY_ID='AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY='test-secret',
                       PATH=os.environ.get('PATH', '/usr/bin:/bin'))
        for k in ('ASAN_OPTIONS', 'LSAN_OPTIONS', 'UBSAN_OPTIONS'):
            if k in os.environ:
                run_env[k] = os.environ[k]
        proc = subprocess.Popen([os.environ['RESIZER_BIN']], env=run_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            def up_or_exited():
                if proc.poll() is not None:
                    return 'exited'
                return harness.http('GET', 'http://127.0.0.1:%d/healthz' % port)[0] == 200
            if harness.wait_until(up_or_exited, timeout=harness.scaled(15),
                                  what='/healthz') == 'exited':
                self.fail('resizer exited %d with the task environment: %s'
                          % (proc.returncode, proc.stderr.read().strip()))
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=harness.scaled(40)), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()

    def test_health_checks_probe_healthz_on_port(self):
        r = Resolved(self.doc)
        env, _ = task_env(r)
        port = self.help['PORT']
        self.assertEqual(env['PORT'], port)
        (tg,) = r.of_type('AWS::ElasticLoadBalancingV2::TargetGroup').values()
        tg = tg['Properties']
        self.assertEqual(tg['HealthCheckPath'], '/healthz')
        self.assertEqual(str(tg['HealthCheckPort']), port)
        self.assertEqual(str(tg['Port']), port)
        self.assertEqual(tg['Matcher'], {'HttpCode': '200'})
        c = container(r)
        self.assertEqual([str(p['ContainerPort']) for p in c['PortMappings']], [port])
        self.assertEqual(c['HealthCheck']['Command'],
                         ['CMD', '/usr/local/bin/resizer', '--check-health',
                          'http://127.0.0.1:%s/healthz' % port])
        (svc,) = r.of_type('AWS::ECS::Service').values()
        self.assertEqual([str(lb['ContainerPort']) for lb in svc['Properties']['LoadBalancers']],
                         [port])

    def test_stop_timeout_covers_the_drain(self):
        env, _ = task_env(Resolved(self.doc))
        grace = int(env.get('SHUTDOWN_GRACE', self.help['SHUTDOWN_GRACE']))
        self.assertEqual(container(Resolved(self.doc))['StopTimeout'], grace + 5)

    def test_alb_idle_timeout_below_the_service_keepalive(self):
        (lb,) = Resolved(self.doc).of_type('AWS::ElasticLoadBalancingV2::LoadBalancer').values()
        attrs = {a['Key']: a['Value'] for a in lb['Properties']['LoadBalancerAttributes']}
        # The service closes idle connections after 75 s (main.c); the ALB must give up first.
        self.assertEqual(attrs['idle_timeout.timeout_seconds'], '60')


class Events(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = load_template()
        cls.help = help_vars()
        cls.r = Resolved(cls.doc)

    def test_rule_matches_uploads_of_the_source_prefix(self):
        (rule,) = self.r.of_type('AWS::Events::Rule').values()
        pattern = rule['Properties']['EventPattern']
        env, _ = task_env(self.r)
        self.assertEqual(pattern['source'], ['aws.s3'])
        self.assertEqual(pattern['detail-type'], ['Object Created'])
        self.assertEqual(pattern['detail']['bucket']['name'], [env['SRC_BUCKET']])
        self.assertEqual(pattern['detail']['object']['key'], [{'prefix': self.help['SRC_PREFIX']}])
        self.assertEqual(env['SRC_PREFIX'], self.help['SRC_PREFIX'])

    def test_target_retries_then_dead_letters(self):
        (rule,) = self.r.of_type('AWS::Events::Rule').values()
        (target,) = rule['Properties']['Targets']
        self.assertEqual(target['Arn'], 'getatt:EventsApiDestination.Arn')
        self.assertIn('MaximumRetryAttempts', target['RetryPolicy'])
        self.assertIn('MaximumEventAgeInSeconds', target['RetryPolicy'])
        dlq = target['DeadLetterConfig']['Arn']
        self.assertTrue(dlq.startswith('getatt:') and dlq.endswith('.Arn'))
        queue = dlq[len('getatt:'):-len('.Arn')]
        self.assertEqual(self.doc['Resources'][queue]['Type'], 'AWS::SQS::Queue')
        (qp,) = self.r.of_type('AWS::SQS::QueuePolicy').values()
        (st,) = qp['Properties']['PolicyDocument']['Statement']
        self.assertEqual(st['Principal'], {'Service': 'events.amazonaws.com'})
        self.assertEqual(st['Action'], 'sqs:SendMessage')

    def test_api_destination_posts_to_v1_events_with_the_api_key_header(self):
        (dest,) = self.r.of_type('AWS::Events::ApiDestination').values()
        self.assertTrue(dest['Properties']['InvocationEndpoint'].startswith('https://'))
        self.assertTrue(dest['Properties']['InvocationEndpoint'].endswith('/v1/events'))
        self.assertIn('InvocationRateLimitPerSecond', dest['Properties'])
        (conn,) = self.r.of_type('AWS::Events::Connection').values()
        self.assertEqual(conn['Properties']['AuthorizationType'], 'API_KEY')
        key = conn['Properties']['AuthParameters']['ApiKeyAuthParameters']
        env, _ = task_env(self.r)
        self.assertEqual(key['ApiKeyName'], env['EVENTS_API_KEY_HEADER'])
        self.assertEqual(key['ApiKeyName'], self.help['EVENTS_API_KEY_HEADER'])
        self.assertIn('{{resolve:secretsmanager:', key['ApiKeyValue'])


class StateTable(unittest.TestCase):
    """The DynamoDB table every replica shares: on-demand, recoverable, encrypted, with TTL, and
    exactly the table `resizer --create-table` makes (keys, attributes, indexes, projections),
    so the stack's table is one the service can query."""

    @classmethod
    def setUpClass(cls):
        cls.r = Resolved(load_template())
        (cls.name, cls.table), = cls.r.of_type('AWS::DynamoDB::Table').items()
        cls.props = cls.table['Properties']

    def test_on_demand_recoverable_encrypted_with_ttl(self):
        p = self.props
        self.assertEqual(p['BillingMode'], 'PAY_PER_REQUEST')
        self.assertNotIn('ProvisionedThroughput', p)
        self.assertEqual(p['PointInTimeRecoverySpecification'], {'PointInTimeRecoveryEnabled': True})
        self.assertTrue(p['SSESpecification']['SSEEnabled'])
        self.assertTrue(p['TimeToLiveSpecification']['Enabled'])
        raw = load_template()['Resources'][self.name]
        self.assertEqual((raw['DeletionPolicy'], raw['UpdateReplacePolicy']), ('Retain', 'Retain'))

    def test_same_table_as_create_table(self):
        ddb = harness.DynamoServer()
        table = harness.unique_table('cfn')
        harness.create_table(ddb, table)
        got = ddb.client().describe_table(TableName=table)['Table']
        self.assertEqual(got.get('BillingModeSummary', {}).get('BillingMode', 'PAY_PER_REQUEST'),
                         self.props['BillingMode'])

        def attrs(defs):
            return sorted((a['AttributeName'], a['AttributeType']) for a in defs)

        def indexes(gsis):
            return sorted((g['IndexName'], [(k['AttributeName'], k['KeyType'])
                                            for k in g['KeySchema']],
                           g['Projection']['ProjectionType']) for g in gsis)
        self.assertEqual(attrs(got['AttributeDefinitions']),
                         attrs(self.props['AttributeDefinitions']))
        self.assertEqual([(k['AttributeName'], k['KeyType']) for k in got['KeySchema']],
                         [(k['AttributeName'], k['KeyType']) for k in self.props['KeySchema']])
        self.assertEqual(indexes(got['GlobalSecondaryIndexes']),
                         indexes(self.props['GlobalSecondaryIndexes']))
        ttl = self.props['TimeToLiveSpecification']['AttributeName']
        with open(os.path.join(SOURCE_DIR, 'server', 'store_dynamodb.c'), encoding='utf-8') as f:
            self.assertIn('"AttributeName", "%s"' % ttl, f.read(),
                          'the TTL attribute is not the one the store writes')

    def test_wired_to_the_task(self):
        env, _ = task_env(self.r)
        self.assertEqual(env['STATE_STORE'], 'dynamodb')
        self.assertEqual(env['DYNAMODB_TABLE'], self.r.value({'Ref': self.name}))
        self.assertIn(self.name, env['DYNAMODB_TABLE'])
        self.assertNotIn('DYNAMODB_ENDPOINT', env, 'the regional endpoint is the default')


class Permissions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = load_template()
        with open(TEMPLATE, encoding='utf-8') as f:
            cls.text = f.read()

    def task_role_statements(self, params):
        r = Resolved(self.doc, params)
        (td,) = r.of_type('AWS::ECS::TaskDefinition').values()
        role = td['Properties']['TaskRoleArn']
        self.assertTrue(role.startswith('getatt:') and role.endswith('.Arn'), role)
        name = role[len('getatt:'):-len('.Arn')]
        props = r.resource(name)['Properties']
        self.assertNotIn('ManagedPolicyArns', props, 'managed policies widen the task role')
        # Nothing else may attach statements to the task role.
        for other, res in self.doc['Resources'].items():
            if res['Type'] in ('AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy'):
                self.assertNotIn({'Ref': name}, res['Properties'].get('Roles', []), other)
        return [normalize_statement(st) for p in props['Policies']
                for st in as_list(p['PolicyDocument']['Statement'])]

    def test_task_role_is_exactly_the_documented_set(self):
        got = self.task_role_statements({})
        self.assertCountEqual(got, [normalize_statement(dict(zip(
            ('Effect', 'Action', 'Resource', 'Condition'), s))) for s in DOCUMENTED_STATEMENTS])

    def test_task_role_with_sse_kms_adds_only_the_key(self):
        got = self.task_role_statements({'KmsKeyArn': KMS_KEY})
        want = DOCUMENTED_STATEMENTS + [KMS_STATEMENT]
        self.assertCountEqual(got, [normalize_statement(dict(zip(
            ('Effect', 'Action', 'Resource', 'Condition'), s))) for s in want])

    def test_each_task_role_statement_says_why(self):
        block = self.text[self.text.index('\n  TaskRole:'):self.text.index('\n  TaskDefinition:')]
        lines = block.splitlines()
        sids = 0
        for i, line in enumerate(lines):
            if not line.strip().startswith('- Sid:'):
                continue
            sids += 1
            j = i - 1
            while re.match(r'^\s*- (!If|\w+)$', lines[j]):  # a conditional statement's !If
                j -= 1
            self.assertTrue(lines[j].strip().startswith('#'),
                            'no comment before %r in TaskRole' % line.strip())
        self.assertEqual(sids, len(DOCUMENTED_STATEMENTS) + 1)

    def test_no_s3_wildcards_anywhere(self):
        def strings(v):
            if isinstance(v, dict):
                for k, x in v.items():
                    yield from strings(k)
                    yield from strings(x)
            elif isinstance(v, list):
                for x in v:
                    yield from strings(x)
            elif isinstance(v, str):
                yield v
        for s in strings(self.doc):
            self.assertFalse(s.startswith('s3:') and '*' in s and ':prefix' not in s,
                             'wildcard S3 action %r in the template' % s)
        for params in ({}, {'KmsKeyArn': KMS_KEY}):
            for where, st in policy_statements(Resolved(self.doc, params)):
                if st['Effect'] != 'Allow':
                    continue
                actions = as_list(st['Action'])
                self.assertNotIn('*', actions, where)
                if any(a.startswith('s3:') for a in actions):
                    self.assertNotIn('*', as_list(st['Resource']), where)


class Dockerfile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(DOCKERFILE, encoding='utf-8') as f:
            cls.text = f.read()
        cls.help = help_vars()

    def test_runtime_stage_agrees_with_the_deploy_files(self):
        runtime = self.text[self.text.rindex('\nFROM '):]
        port = self.help['PORT']
        self.assertRegex(runtime, r'\nEXPOSE %s\n' % port)
        self.assertIn('"--check-health", "http://127.0.0.1:%s/healthz"' % port, runtime)
        self.assertRegex(runtime, r'\nSTOPSIGNAL SIGTERM\n')
        user = re.search(r'\nUSER (\S+)\n', runtime).group(1)
        self.assertNotIn(user.split(':')[0], ('0', 'root'), 'the image runs as root')
        self.assertIn('install-deps runtime', runtime)
        doc = load_template()
        for res in doc['Resources'].values():
            if res['Type'] == 'AWS::ECS::TaskDefinition':
                self.assertEqual(res['Properties']['ContainerDefinitions'][0]['User'], user)

    def test_build_stage_builds_like_scripts_run(self):
        with open(os.path.join(SOURCE_DIR, 'scripts', 'run'), encoding='utf-8') as f:
            run = f.read()
        flags = '-DCMAKE_BUILD_TYPE=Release -DRESIZER_TESTS=OFF'
        self.assertIn(flags, run)
        self.assertIn(flags, self.text)
        self.assertIn('install-deps build', self.text)
        with open(os.path.join(SOURCE_DIR, '.dockerignore'), encoding='utf-8') as f:
            ignored = f.read().split()
        self.assertIn('build/', ignored)


if __name__ == '__main__':
    unittest.main(verbosity=2)
