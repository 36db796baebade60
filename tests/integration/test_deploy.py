#!/usr/bin/python3
"""test_deploy.py - the deploy files agree with the service and with the reference deployment
(README.md, "The reference deployment").

deploy/cloudformation.yaml passes AWS's cfn-lint and yamllint (deploy/.yamllint); its task
definition sets only variables `resizer --help` lists, with values the binary accepts at start
(also every numeric parameter at its MinValue and MaxValue, and every string parameter's
default, examples and values either side of the service's limits: what the binary refuses, the
template refuses); the ALB and container health
checks probe /healthz on PORT; the EventBridge rule filters on SRC_PREFIX's default; the state
table is the one `resizer --create-table` makes on the local DynamoDB (keys, indexes,
projections), on-demand, with point-in-time recovery, encryption and TTL, and is wired to the
task (STATE_STORE, DYNAMODB_TABLE); the task role is exactly the documented set of statements
(existing, created and generated buckets; SSE-S3 and SSE-KMS); no S3 wildcard action in an
Allow. Its Rules refuse what cannot work (existing buckets without names, CPU/memory pairs
Fargate rejects, an API domain no certificate covers, header names the ALB drops); existing
buckets are left alone; the events key comes from one secret for the connection and the tasks,
and no parameter can overwrite a secret; SecretsRevision restarts tasks; /tmp is handed to the
service user; no DesiredCount; /metrics and /readyz are not public; alarms cover each failure
kind; /metrics needs the generated token; the README's token rotation keeps a caller's
images; the README's shell blocks parse and its aws commands exist. The Dockerfile agrees on
port, probe, user and build flags. Needs RESIZER_BIN (for --help
and the starts), cfn-lint and yamllint on PATH. The task role against real requests:
test_iam.py and iam_coverage.py.

The container image itself is checked by deploy/check-container (buildah/podman, ~75 s), not
here. Run by ctest with Debian's /usr/bin/python3 (python3-yaml)."""

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402
import harness  # noqa: E402
from cfn import (Resolved, all_env_names, as_list, container, load_template,  # noqa: E402
                 normalize_statement, policy_statements, task_env)

SOURCE_DIR = harness.SOURCE_DIR
TEMPLATE = os.path.join(SOURCE_DIR, 'deploy', 'cloudformation.yaml')
YAMLLINT_CONF = os.path.join(SOURCE_DIR, 'deploy', '.yamllint')
DOCKERFILE = os.path.join(SOURCE_DIR, 'Dockerfile')

# The reference deployment's buckets and its least-privilege role with what presigning adds
# (README.md, "The reference deployment"), plus the listing of the destination's _status/
# records the reconcile sweep needs (iam_coverage.py found it denied),
# written out here on purpose (not derived from the template): the template must produce
# exactly this.
SRC_NAME, DEST_NAME = 'manara-image-resize-uploader', 'manara-image-resize-reciever'
SRC_ARN = 'arn:aws:s3:::' + SRC_NAME
# The state table's name as CloudFormation generates it (the resolver's stand-in).
TABLE_ARN = 'arn:aws:dynamodb:us-east-1:123456789012:table/resizer-StateTable-1A2B3C4D5E6F'
DEST_ARN = 'arn:aws:s3:::' + DEST_NAME
# The reference deployment's buckets, which exist already: the stack uses them as they are.
EXISTING = {'BucketMode': 'existing', 'SourceBucketName': SRC_NAME,
            'DestinationBucketName': DEST_NAME}
KMS_KEY = 'arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d-4e5f-6789-abcd-ef0123456789'
DOCUMENTED_STATEMENTS = [
    ('Allow', ['s3:GetObject'], [SRC_ARN + '/*'], None),
    ('Allow', ['s3:ListBucket'], [SRC_ARN], {'StringLike': {'s3:prefix': ['images/*']}}),
    ('Allow', ['s3:ListBucket'], [DEST_ARN], {'StringLike': {'s3:prefix': ['_status/*']}}),
    ('Allow', ['s3:PutObject'], [DEST_ARN + '/*'], None),
    ('Allow', ['s3:PutObject'], [SRC_ARN + '/images/*'], None),
    ('Allow', ['s3:GetObject'], [DEST_ARN + '/*'], None),
    # The shared state table (issue 17): items, and Query on its indexes.
    ('Allow', ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem',
               'dynamodb:DeleteItem', 'dynamodb:Query'],
     [TABLE_ARN], None),
    ('Allow', ['dynamodb:Query'], [TABLE_ARN + '/index/*'], None),
]
EVENTS_SECRET = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:resizer-events-AbC123'
# Parameters that become a variable of the service (the rest configure AWS resources).
ENV_PARAMS = {'JpegQuality', 'WebpQuality', 'AvifQuality', 'AvifEffort', 'MaxUploadBytes',
              'MaxPixels', 'Workers', 'QueueSize', 'HttpThreads', 'PresignPutExpires',
              'PresignGetExpires', 'ReconcileInterval', 'IndexMaxEntries'}
KMS_STATEMENT = ('Allow', ['kms:Decrypt', 'kms:GenerateDataKey'], [KMS_KEY], None)
SECRET_VARS = {'API_TOKENS', 'EVENTS_API_KEY', 'METRICS_TOKEN'}
# What GenerateSecretString {PasswordLength: 40, ExcludePunctuation: true} makes: 40 letters
# and digits.
GENERATED = 'Xq7' * 13 + 'Z'
STATIC_CREDENTIALS = {'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'}


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


def run_service(env, secrets=None, while_up=None):
    """Starts the real binary with the task's environment env and the secrets ECS would add
    (generated-like values unless given), calls while_up(port) once /healthz answers, then
    stops it with SIGTERM. Returns (None, while_up's result), or (why, None) when the binary
    refused the environment at start."""
    port = harness.free_port()
    # Only loopback: the listen address and an S3 endpoint nobody answers on (the probe
    # just fails); static test credentials stand in for the task role.
    run_env = dict(env, PORT=str(port), LISTEN_ADDR='127.0.0.1',
                   S3_ENDPOINT='http://127.0.0.1:%d' % harness.free_port(),
                   DYNAMODB_ENDPOINT='http://127.0.0.1:%d' % harness.free_port(),
                   AWS_ACCESS_KEY_ID='AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY='test-secret',
                   PATH=os.environ.get('PATH', '/usr/bin:/bin'))
    run_env.update(secrets or {'API_TOKENS': GENERATED, 'METRICS_TOKEN': GENERATED,
                               'EVENTS_API_KEY': harness.EVENTS_API_KEY})
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
        if fixtures.wait_for(up_or_exited, 15, what='/healthz') == 'exited':
            return 'exit %d: %s' % (proc.returncode, proc.stderr.read().strip()), None
        result = while_up(port) if while_up else None
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=harness.scaled(40))
        if code != 0:
            raise AssertionError('resizer exited %d after SIGTERM' % code)
        return None, result
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


# The AWS CLI's commands that are not API operations (its own customizations) and the options
# it adds to every command or to some (aws help, topic global options and the commands' pages).
CLI_COMMANDS = {('cloudformation', 'deploy'), ('cloudformation', 'wait'), ('ecr', 'get-login-password'),
                ('s3', 'rb'), ('s3', 'cp'), ('s3', 'ls')}
CLI_GLOBAL_OPTIONS = {'region', 'query', 'output', 'profile', 'endpoint-url', 'no-paginate',
                      'debug', 'no-cli-pager', 'cli-input-json', 'generate-cli-skeleton'}
CLI_ADDED_OPTIONS = {('lambda', 'create-function'): {'zip-file'}}
CLI_SERVICES = {'s3api': 's3'}


def readme_shell_blocks():
    with open(os.path.join(SOURCE_DIR, 'deploy', 'README.md'), encoding='utf-8') as f:
        return re.findall(r'```sh\n(.*?)```', f.read(), re.S)


def aws_commands(block):
    """(service, command, {options}) of every `aws SERVICE COMMAND ...` in a shell block,
    the inventory loop's get-$what expanded over its word list."""
    text = block.replace('\\\n', ' ')
    loops = dict(re.findall(r'for (\w+) in ([^;]+); do', text))
    out = []
    for m in re.finditer(r'\baws ([a-z0-9-]+) ((?:[a-z0-9-]|\$\{?\w+\}?)+)([^|;&)\n]*)', text):
        service, command, rest = m.groups()
        command = re.sub(r'\$\{(\w+)\}', r'$\1', command)
        # Up to a nested $(...): its options are its own command's (found on their own).
        opts = set(re.findall(r'(?:^|\s)--([a-z0-9-]+)', rest.split('$(')[0]))
        var = re.search(r'\$(\w+)', command)
        for word in (loops[var.group(1)].split() if var else [None]):
            out.append((service, command.replace('$' + var.group(1), word) if var else command,
                        opts))
    return out


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
        r = Resolved(self.doc, {'EventsApiKeySecretArn': EVENTS_SECRET})
        env, secrets = task_env(r)
        self.assertEqual(secrets, SECRET_VARS)
        self.assertFalse(SECRET_VARS & set(env), 'a secret in plain Environment')
        froms = {s['Name']: s['ValueFrom'] for s in container(r)['Secrets']}
        for var in ('API_TOKENS', 'METRICS_TOKEN'):
            self.assertEqual(r.doc['Resources'][froms[var][4:]]['Type'],
                             'AWS::SecretsManager::Secret')
        # The events key: one secret, its "accept" list for the tasks, its "send" key for the
        # connection, so they can only differ by what the secret itself says.
        self.assertEqual(froms['EVENTS_API_KEY'], EVENTS_SECRET + ':accept::')
        (conn,) = r.of_type('AWS::Events::Connection').values()
        self.assertEqual(conn['Properties']['AuthParameters']['ApiKeyAuthParameters']['ApiKeyValue'],
                         '{{resolve:secretsmanager:%s:SecretString:send}}' % EVENTS_SECRET)
        (role,) = [v for k, v in r.of_type('AWS::IAM::Role').items() if k == 'ExecutionRole']
        (st,) = role['Properties']['Policies'][0]['PolicyDocument']['Statement']
        self.assertCountEqual(st['Resource'], ['ref:ApiTokensSecret', 'ref:MetricsTokenSecret',
                                               EVENTS_SECRET])

    def test_no_parameter_can_overwrite_a_secret(self):
        """A key set through a stack parameter would reach the secret but neither the running
        tasks nor the connection: the template has no such parameter, and nothing writes the
        events key's secret (it is made outside the stack)."""
        for name, spec in self.doc['Parameters'].items():
            self.assertFalse(spec.get('NoEcho'), '%s carries secret material' % name)
        secrets = Resolved(self.doc).of_type('AWS::SecretsManager::Secret')
        self.assertEqual(set(secrets), {'ApiTokensSecret', 'MetricsTokenSecret'})
        for secret in secrets.values():
            self.assertNotIn('SecretString', secret['Properties'])
            self.assertEqual(secret['Properties']['GenerateSecretString'],
                             {'PasswordLength': 40, 'ExcludePunctuation': True})

    def test_secrets_revision_restarts_tasks_and_rereads_the_connection_key(self):
        a, b = (Resolved(self.doc, {'SecretsRevision': n}) for n in (1, 2))
        self.assertNotEqual(container(a)['DockerLabels'], container(b)['DockerLabels'])
        conn = [list(r.of_type('AWS::Events::Connection').values())[0]['Properties']
                for r in (a, b)]
        self.assertNotEqual(conn[0]['Description'], conn[1]['Description'])

    def test_service_keeps_its_scaled_count(self):
        (svc,) = Resolved(self.doc).of_type('AWS::ECS::Service').values()
        self.assertNotIn('DesiredCount', svc['Properties'],
                         'DesiredCount resets a scaled-out service on every stack update')
        (target,) = Resolved(self.doc).of_type(
            'AWS::ApplicationAutoScaling::ScalableTarget').values()
        self.assertEqual(target['Properties']['MinCapacity'], 2)

    def test_tmp_is_handed_to_the_service_user_before_it_starts(self):
        """Fargate's bind mount is root-owned 0755: a root init container in the same task
        makes it the service user's, and resizer starts only after that succeeded."""
        r = Resolved(self.doc)
        c, init = container(r), container(r, 'tmp-owner')
        self.assertEqual(c['DependsOn'], [{'ContainerName': 'tmp-owner', 'Condition': 'SUCCESS'}])
        self.assertFalse(init['Essential'])
        self.assertEqual(init['User'], '0')
        self.assertTrue(init['ReadonlyRootFilesystem'] and c['ReadonlyRootFilesystem'])
        uid = c['User'].split(':')[0]
        self.assertIn('chown %s:' % uid, ' '.join(init['Command']))
        self.assertEqual([(m['SourceVolume'], m['ContainerPath']) for m in init['MountPoints']],
                         [(m['SourceVolume'], m['ContainerPath']) for m in c['MountPoints']])
        self.assertIn(('tmp', '/tmp'), [(m['SourceVolume'], m['ContainerPath'])
                                        for m in c['MountPoints']])

    def test_env_is_accepted_by_the_binary(self):
        """The task's environment (defaults, and with SSE-KMS and a watermark) starts the real
        binary: a value the service refuses would crash-loop every task on ECS."""
        cases = [{}, {'KmsKeyArn': KMS_KEY, 'WatermarkText': 'example.com', 'Workers': 2,
                      'CorsAllowedOrigins': 'https://app.example.com,https://b.example.com'}]
        # Every bound the template allows must be one the service accepts, else a parameter in
        # range crash-loops the tasks: all parameters of variables at their MinValue, then at
        # their MaxValue.
        for bound in ('MinValue', 'MaxValue'):
            cases.append({name: spec[bound] for name, spec in self.doc['Parameters'].items()
                          if bound in spec and name in ENV_PARAMS})
        for params in cases:
            with self.subTest(params=params):
                env, _ = task_env(Resolved(self.doc, params))
                # The parameter that sets the buckets' CORS rules sets the API's too.
                self.assertEqual(env.get('CORS_ALLOWED_ORIGINS'),
                                 params.get('CorsAllowedOrigins'))
                if 'KmsKeyArn' in params:
                    self.assertEqual(env['SSE'], 'aws:kms')
                    self.assertEqual(env['SSE_KMS_KEY_ID'], KMS_KEY)
                else:
                    self.assertEqual(env['SSE'], 'AES256')
                    self.assertNotIn('SSE_KMS_KEY_ID', env)
                self.start_and_stop(env)

    def start_and_stop(self, env):
        refused, _ = run_service(env)
        self.assertIsNone(refused, 'resizer refused the task environment: %s' % refused)

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


    def test_webhooks_wired_with_their_secret_and_alarm(self):
        secret = EVENTS_SECRET.replace('events', 'webhook')
        r = Resolved(load_template(), {'WebhookUrls': 'https://hooks.example.com/resizer',
                                       'WebhookSecretArn': secret})
        env, secrets = task_env(r)
        self.assertEqual(env['WEBHOOK_URLS'], 'https://hooks.example.com/resizer')
        self.assertEqual(secrets, SECRET_VARS | {'WEBHOOK_SECRET'})
        froms = {s['Name']: s['ValueFrom'] for s in container(r)['Secrets']}
        self.assertEqual(froms['WEBHOOK_SECRET'], secret)
        (role,) = [v for k, v in r.of_type('AWS::IAM::Role').items() if k == 'ExecutionRole']
        (st,) = role['Properties']['Policies'][0]['PolicyDocument']['Statement']
        self.assertIn(secret, st['Resource'])
        pattern = r.doc['Resources']['WebhookFailuresMetricFilter']['Properties']['FilterPattern']
        with open(os.path.join(SOURCE_DIR, 'server', 'webhooks.c'), encoding='utf-8') as f:
            source = f.read()
        for event in ('webhook_expired', 'webhook_rejected', 'webhook_gone', 'webhook_dropped'):
            self.assertIn('"%s"' % event, pattern)
            self.assertIn('"%s"' % event, source)
        self.start_and_stop(dict(env, WEBHOOK_SECRET='whsec_' + 'QUJD' * 8))

    def test_admin_tokens_from_their_own_secret(self):
        secret = EVENTS_SECRET.replace('events', 'admins')
        r = Resolved(self.doc, {'AdminTokensSecretArn': secret})
        froms = {s['Name']: s['ValueFrom'] for s in container(r)['Secrets']}
        self.assertEqual(froms['ADMIN_TOKENS'], secret)
        (role,) = [v for k, v in r.of_type('AWS::IAM::Role').items() if k == 'ExecutionRole']
        (st,) = role['Properties']['Policies'][0]['PolicyDocument']['Statement']
        self.assertIn(secret, st['Resource'])
        self.assertNotIn('ADMIN_TOKENS', {s['Name'] for s in container(Resolved(self.doc))['Secrets']})
        env, _ = task_env(r)
        refused, _ = run_service(env, {'API_TOKENS': GENERATED, 'METRICS_TOKEN': GENERATED,
                                       'EVENTS_API_KEY': 'k' * 16,
                                       'ADMIN_TOKENS': 'ops:' + GENERATED[::-1]})
        self.assertIsNone(refused)

    def test_token_rotation_keeps_the_callers_images(self):
        """deploy/README.md's rotation of the generated (bare) API token: the new token is
        given the old one's caller name (token-<12 hex of its SHA-256>) next to the old token,
        so an upload made with the old token is the new token's. A bare new token instead
        (the trap) is another caller: 404."""
        old, new = GENERATED, GENERATED[::-1]
        name = 'token-' + hashlib.sha256(old.encode()).hexdigest()[:12]
        env, _ = task_env(Resolved(self.doc))
        env['STATE_STORE'] = 'memory'  # one process holds the upload while it runs

        def upload_then_read(port):
            base = 'http://127.0.0.1:%d' % port
            st, _, body = harness.http('POST', base + '/v1/uploads', {
                'Authorization': 'Bearer ' + old, 'Content-Type': 'application/json'},
                json.dumps({'filename': 'cat.jpg', 'content_type': 'image/jpeg'}))
            self.assertEqual(st, 201, body)
            image = json.loads(body)['id']
            st, _, body = harness.http('GET', base + '/v1/images/' + image,
                                       {'Authorization': 'Bearer ' + new})
            return st, json.loads(body).get('uploader')
        for tokens, want in (('%s:%s,%s' % (name, new, old), (200, name)),
                             ('%s,%s' % (new, old), (404, None))):
            with self.subTest(API_TOKENS=tokens.replace(old, 'OLD').replace(new, 'NEW')):
                refused, got = run_service(env, {'API_TOKENS': tokens, 'METRICS_TOKEN': GENERATED,
                                                 'EVENTS_API_KEY': 'k' * 16},
                                           upload_then_read)
                self.assertIsNone(refused)
                self.assertEqual(got, want)


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
        want = [normalize_statement(dict(zip(('Effect', 'Action', 'Resource', 'Condition'), s)))
                for s in DOCUMENTED_STATEMENTS]
        self.assertCountEqual(self.task_role_statements(EXISTING), want)
        # Buckets the stack creates under the same names: the same statements.
        created = dict(EXISTING, BucketMode='create')
        self.assertCountEqual(self.task_role_statements(created), want)
        # With generated names, the statements name the generated buckets.
        r = Resolved(self.doc)
        env, _ = task_env(r)
        self.assertEqual((env['SRC_BUCKET'], env['DEST_BUCKET']),
                         ('generated-sourcebucket', 'generated-destinationbucket'))
        renamed = json.loads(json.dumps(DOCUMENTED_STATEMENTS).replace(SRC_NAME, env['SRC_BUCKET'])
                             .replace(DEST_NAME, env['DEST_BUCKET']))
        self.assertCountEqual(self.task_role_statements({}), [normalize_statement(dict(zip(
            ('Effect', 'Action', 'Resource', 'Condition'), s))) for s in renamed])

    def test_task_role_with_sse_kms_adds_only_the_key(self):
        got = self.task_role_statements(dict(EXISTING, KmsKeyArn=KMS_KEY))
        want = DOCUMENTED_STATEMENTS + [KMS_STATEMENT]
        self.assertCountEqual(got, [normalize_statement(dict(zip(
            ('Effect', 'Action', 'Resource', 'Condition'), s))) for s in want])

    def test_readme_lists_the_same_statements(self):
        """deploy/README.md's IAM table is what operators copy into other accounts: one row per
        statement, same actions, resource and prefix condition."""
        with open(os.path.join(SOURCE_DIR, 'deploy', 'README.md'), encoding='utf-8') as f:
            text = f.read()
        table = text[text.index('| action | resource | why |'):].split('\n\n', 1)[0]
        names = {'source': SRC_ARN, 'destination': DEST_ARN, 'KmsKeyArn': KMS_KEY,
                 'table': TABLE_ARN}
        rows = []
        for line in table.splitlines()[2:]:
            action, resource = line.split('|')[1:3]
            where = re.findall(r'`([^`]*)`', resource)
            bucket, _, rest = where[0].partition('/')
            arn = names[bucket] + ('/' + rest if rest else '')
            prefix = where[2] if len(where) > 2 else None
            rows.append((sorted(re.findall(r'`([^`]*)`', action)), arn, prefix))
        want = []
        for _, actions, resources, cond in DOCUMENTED_STATEMENTS + [KMS_STATEMENT]:
            prefix = cond['StringLike']['s3:prefix'][0] if cond else None
            want.append((sorted(actions), resources[0], prefix))
        self.assertCountEqual(rows, want)

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
        for params in ({}, {'KmsKeyArn': KMS_KEY}, EXISTING):
            for where, st in policy_statements(Resolved(self.doc, params)):
                if st['Effect'] != 'Allow':
                    continue
                for s in strings(st):
                    self.assertFalse(s.startswith('s3:') and '*' in s and ':prefix' not in s,
                                     'wildcard S3 action %r in %s' % (s, where))
                actions = as_list(st['Action'])
                self.assertNotIn('*', actions, where)
                if any(a.startswith('s3:') for a in actions):
                    self.assertNotIn('*', as_list(st['Resource']), where)


def rule_violations(doc, params):
    """The AssertDescriptions of the template's Rules that params (defaults for the rest)
    violate, evaluated as CloudFormation does before it creates anything."""
    r = Resolved(doc, params)

    def val(x):
        if isinstance(x, dict) and list(x) == ['Ref']:
            return r.params[x['Ref']]
        return x

    def truth(expr):
        (fn, arg), = expr.items()
        if fn == 'Fn::Equals':
            return str(val(arg[0])) == str(val(arg[1]))
        if fn == 'Fn::Not':
            return not truth(arg[0])
        if fn == 'Fn::And':
            return all(truth(x) for x in arg)
        if fn == 'Fn::Or':
            return any(truth(x) for x in arg)
        if fn == 'Fn::Contains':
            return str(val(arg[1])) in [str(x) for x in as_list(val(arg[0]))]
        raise AssertionError('rule function %s: extend rule_violations' % fn)
    out = []
    for rule in doc.get('Rules', {}).values():
        if 'RuleCondition' in rule and not truth(rule['RuleCondition']):
            continue
        out += [a['AssertDescription'] for a in rule['Assertions'] if not truth(a['Assert'])]
    return out


def parameter_refused(doc, name, value):
    """Why CloudFormation refuses value for parameter name (AllowedValues, AllowedPattern with
    Java's regex syntax, which Python's re shares for these patterns, Min/MaxValue), or None."""
    spec = doc['Parameters'][name]
    if 'AllowedValues' in spec and str(value) not in [str(v) for v in spec['AllowedValues']]:
        return 'not in AllowedValues'
    if 'AllowedPattern' in spec and not re.fullmatch(spec['AllowedPattern'], str(value)):
        return 'does not match AllowedPattern'
    if 'MinValue' in spec and float(value) < float(spec['MinValue']):
        return 'below MinValue'
    if 'MaxValue' in spec and float(value) > float(spec['MaxValue']):
        return 'above MaxValue'
    return None


def _origins(n):
    return ','.join('https://app%d.example.com' % i for i in range(n))


# (parameter, value, does the service start with it): values either side of the service's
# own checks (server/config.c, server/variants.c), with each parameter's default and the
# examples its Description gives.
SERVICE_PROBES = [
    ('Variants', 'desktop:1920,tablet:1024,phone:640', True),
    ('Variants', 'desktop:1920,tablet:1024,phone:640,thumb:256x256:cover', True),
    ('Variants', 'a:16384,b:1x16384:inside,c:16384x1:cover', True),
    ('Variants', 'a' * 31 + ':640,0-_:1', True),
    ('Variants', ','.join('v%d:%d' % (i, 100 * (i + 1)) for i in range(8)), True),
    ('Variants', 'a:16385', False), ('Variants', 'a:0', False), ('Variants', 'a:640x0', False),
    ('Variants', 'a:640x480:fill', False), ('Variants', 'a:640:cover', False),
    ('Variants', 'a' * 32 + ':640', False), ('Variants', 'Desktop:640', False),
    ('Variants', '_status:640', False), ('Variants', '-a:640', False),
    ('Variants', 'a:1,b:2,a:3', False), ('Variants', 'desktop=1920', False),
    ('Variants', ','.join('v%d:100' % i for i in range(9)), False),
    ('Variants', 'a:640,', False), ('Variants', '', False),
    ('CorsAllowedOrigins', '', True),
    ('CorsAllowedOrigins', 'https://app.example.com', True),
    ('CorsAllowedOrigins', 'https://app.example.com,http://127.0.0.1:3000,http://[::1]:8080', True),
    ('CorsAllowedOrigins', _origins(16), True),
    ('CorsAllowedOrigins', 'https://' + 'a' * 248, True),
    ('CorsAllowedOrigins', 'https://' + 'a' * 249, False),
    ('CorsAllowedOrigins', _origins(17), False), ('CorsAllowedOrigins', '*', False),
    ('CorsAllowedOrigins', 'https://App.example.com', False),
    ('CorsAllowedOrigins', 'https://app.example.com/', False),
    ('CorsAllowedOrigins', 'null', False), ('CorsAllowedOrigins', 'https://*.example.com', False),
    ('CorsAllowedOrigins', 'https://a.example.com,', False),
    ('CorsAllowedOrigins', 'https://a.example.com:', False),
    ('CorsAllowedOrigins', 'ftp://a.example.com', False),
    ('SourcePrefix', 'images/', True), ('SourcePrefix', 'uploads/2024/', True),
    ('SourcePrefix', 'p' * 512, True), ('SourcePrefix', 'p' * 513, False),
    ('SourcePrefix', '', False), ('SourcePrefix', '/images/', False),
    ('WatermarkText', '', True), ('WatermarkText', 'example.com', True),
    ('WatermarkText', 'x' * 256, True), ('WatermarkText', '\u00a9 Example' * 4, True),
    ('WatermarkText', '\U0001F600' * 64, True), ('WatermarkText', 'x' * 257, False),
    ('WatermarkText', '\U0001F600' * 65, False), ('WatermarkText', 'a\tb', False),
    ('OutputFormats', 'same', True), ('OutputFormats', 'same,webp,avif', True),
    ('OutputFormats', 'jpeg,webp,avif,png,same', True), ('OutputFormats', 'webp,jpeg,webp', False),
    ('OutputFormats', 'gif', False), ('OutputFormats', '', False),
    ('OutputFormats', 'webp,', False),
    ('BlurhashComponents', '4x3', True), ('BlurhashComponents', '9x1', True),
    ('BlurhashComponents', '0x3', False), ('BlurhashComponents', '10x3', False),
    ('BlurhashComponents', '4X3', False),
    ('AvifEffort', 10, False), ('WebpQuality', 0, False), ('AvifQuality', 101, False),
]
PROBED_PARAMETERS = {p[0] for p in SERVICE_PROBES} - {'AvifEffort', 'WebpQuality', 'AvifQuality'}


# Fargate's CPU/memory pairs (Linux), from the ECS developer guide's task size table, written
# out here rather than read from the template.
FARGATE_PAIRS = {'256': [512, 1024, 2048], '512': list(range(1024, 4097, 1024)),
                 '1024': list(range(2048, 8193, 1024)), '2048': list(range(4096, 16385, 1024)),
                 '4096': list(range(8192, 30721, 1024))}


class Rules(unittest.TestCase):
    """Settings that cannot work are refused by the template, not warned about."""

    @classmethod
    def setUpClass(cls):
        cls.doc = load_template()

    def test_defaults_and_the_reference_buckets_pass(self):
        self.assertEqual(rule_violations(self.doc, {}), [])
        self.assertEqual(rule_violations(self.doc, EXISTING), [])

    def test_existing_buckets_need_names(self):
        self.assertEqual(len(rule_violations(self.doc, {'BucketMode': 'existing'})), 2)
        self.assertEqual(len(rule_violations(self.doc, dict(EXISTING, SourceBucketName=''))), 1)

    def test_fargate_cpu_memory_pairs(self):
        for cpu in self.doc['Parameters']['TaskCpu']['AllowedValues']:
            for mem in range(512, 30721, 512):
                refused = (parameter_refused(self.doc, 'TaskMemory', str(mem)) or
                           rule_violations(self.doc, {'TaskCpu': cpu, 'TaskMemory': str(mem)}))
                self.assertEqual(not refused, mem in FARGATE_PAIRS[cpu], (cpu, mem, refused))

    def test_s3_endpoint_needs_route_tables(self):
        self.assertTrue(rule_violations(self.doc, {'CreateS3GatewayEndpoint': 'true'}))
        self.assertFalse(rule_violations(self.doc, {'CreateS3GatewayEndpoint': 'true',
                                                    'PrivateRouteTableIds': 'rtb-1,rtb-2'}))

    def test_api_domain_must_be_one_a_certificate_covers(self):
        self.assertNotIn('Default', self.doc['Parameters']['ApiDomainName'])
        for bad in ('', 'resizer-123.eu-west-1.elb.amazonaws.com', 'https://images.example.com',
                    'images example.com'):
            self.assertTrue(parameter_refused(self.doc, 'ApiDomainName', bad), bad)
        self.assertIsNone(parameter_refused(self.doc, 'ApiDomainName', 'images.example.com'))

    def test_webhooks_need_a_secret_and_https(self):
        urls = 'https://a.example.com/hook,https://b.example.com/hook?token=x'
        self.assertTrue(rule_violations(self.doc, {'WebhookUrls': urls}))
        self.assertFalse(rule_violations(self.doc, {
            'WebhookUrls': urls, 'WebhookSecretArn': EVENTS_SECRET.replace('events', 'hooks')}))
        self.assertIsNone(parameter_refused(self.doc, 'WebhookUrls', urls))
        for bad in ('http://a.example.com/hook', 'https://a.example.com/x y',
                    ','.join(['https://a.example.com/%d' % i for i in range(9)])):
            self.assertTrue(parameter_refused(self.doc, 'WebhookUrls', bad), bad)

    def test_header_names_the_alb_passes(self):
        # The ALB drops header names other than letters, digits and '-'
        # (routing.http.drop_invalid_header_fields, set on the load balancer).
        for bad in ('x_api_key', 'x.api.key', 'x-api-key:', ''):
            self.assertTrue(parameter_refused(self.doc, 'EventsApiKeyHeader', bad), bad)
        self.assertIsNone(parameter_refused(self.doc, 'EventsApiKeyHeader', 'X-Api-Key'))

    def test_values_the_service_refuses_are_refused(self):
        """Each probe is started in the real binary (the task's environment with that one
        value): what the binary refuses, the template must refuse too (a task that cannot start
        crash-loops on ECS), and the defaults and the examples the template gives must pass
        both. The binary's verdict is asserted as well, so a probe that stopped probing shows."""
        started = 0
        for name, value, service_ok in SERVICE_PROBES:
            with self.subTest(name=name, value=value):
                template_refuses = parameter_refused(self.doc, name, value)
                env, _ = task_env(Resolved(self.doc, {name: value}))
                refused, _ = run_service(env)
                started += 1
                self.assertEqual(refused is None, service_ok,
                                 'the service %s %s=%r: %s' % ('refused' if refused else 'took',
                                                              name, value, refused))
                if refused:
                    self.assertTrue(template_refuses, 'the template takes %s=%r, which the '
                                    'service refuses (%s)' % (name, value, refused))
        # The defaults and every example value are among the probes, and pass.
        for name, spec in self.doc['Parameters'].items():
            if name in PROBED_PARAMETERS:
                examples = [str(spec.get('Default'))] + re.findall(
                    r'e\.g\. ([^\s)]+)', spec.get('Description', '') + ' ' +
                    str(spec.get('ConstraintDescription', '')))
                for ex in (e.rstrip('.;,:') for e in examples):
                    self.assertIn((name, ex, True), SERVICE_PROBES, 'probe %s=%r' % (name, ex))
                    self.assertIsNone(parameter_refused(self.doc, name, ex), (name, ex))
        self.assertGreater(started, 40)
        # Across parameters, which no pattern can express: a variant named like the first
        # segment of SourcePrefix. The service refuses it; the template says so.
        env, _ = task_env(Resolved(self.doc, {'Variants': 'images:640'}))
        self.assertIn('first segment of SRC_PREFIX', run_service(env)[0] or '')
        self.assertIn('first segment of SourcePrefix',
                      self.doc['Parameters']['Variants']['ConstraintDescription'])
        for name, value in (('SourceBucketName', 'Upper_Case'), ('Workers', 257),
                            ('HttpThreads', 0), ('IndexMaxEntries', 99),
                            ('MaxUploadBytes', 5368709121), ('ReconcileInterval', 604801)):
            self.assertTrue(parameter_refused(self.doc, name, value), (name, value))

    def test_sweep_is_off_by_default_with_the_dynamodb_store(self):
        """Issue 17: with STATE_STORE=dynamodb the bucket sweep is a repair pass, off unless
        asked for; events EventBridge gave up on come back through the DLQ replay."""
        self.assertEqual(self.doc['Parameters']['ReconcileInterval']['Default'], 0)
        env, _ = task_env(Resolved(self.doc))
        self.assertEqual((env['STATE_STORE'], env['RECONCILE_INTERVAL']), ('dynamodb', '0'))


class Runbook(unittest.TestCase):
    """deploy/README.md's commands are what operators paste into a real account: each block
    parses, and each `aws` command is an operation of that service with options it takes
    (botocore's service models, the AWS CLI's source of both)."""

    def test_shell_blocks_parse(self):
        blocks = readme_shell_blocks()
        self.assertGreater(len(blocks), 15)
        for i, block in enumerate(blocks):
            proc = subprocess.run(['bash', '-n'], input=block, capture_output=True, text=True,
                                  timeout=30)
            self.assertEqual(proc.returncode, 0, 'block %d: %s\n%s' % (i, proc.stderr, block))

    def test_aws_commands_exist_with_their_options(self):
        import botocore.session
        from botocore import xform_name
        session = botocore.session.get_session()
        models = {}
        seen = 0
        for block in readme_shell_blocks():
            for service, command, opts in aws_commands(block):
                if (service, command) in CLI_COMMANDS:
                    continue
                name = CLI_SERVICES.get(service, service)
                if name not in models:
                    model = session.get_service_model(name)
                    models[name] = {xform_name(op).replace('_', '-'): model.operation_model(op)
                                    for op in model.operation_names}
                self.assertTrue(command in models[name],
                                'aws %s %s: no such command' % (service, command))
                shape = models[name][command].input_shape
                members = {xform_name(k).replace('_', '-') for k in (shape.members if shape else {})}
                unknown = opts - members - CLI_GLOBAL_OPTIONS - CLI_ADDED_OPTIONS.get((service, command), set())
                self.assertFalse(unknown, 'aws %s %s: no option %s' % (service, command, unknown))
                seen += 1
        self.assertGreater(seen, 60)

    def test_runbook_reads_the_header_and_never_hides_errors(self):
        """The events header is a parameter (EventsApiKeyHeader): commands read it from the
        stack, not x-api-key; and no inventory error is swallowed by || true."""
        for block in readme_shell_blocks():
            self.assertNotIn('x-api-key', block)
            self.assertNotIn('|| true', block)


class Buckets(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = load_template()

    def test_default_creates_buckets_with_generated_names(self):
        buckets = Resolved(self.doc).of_type('AWS::S3::Bucket')
        self.assertEqual(set(buckets), {'SourceBucket', 'DestinationBucket'})
        for b in buckets.values():
            self.assertNotIn('BucketName', b['Properties'])
            self.assertEqual(b['DeletionPolicy'], 'Retain')

    def test_existing_buckets_are_left_alone(self):
        r = Resolved(self.doc, EXISTING)
        for rtype in ('AWS::S3::Bucket', 'AWS::S3::BucketPolicy'):
            self.assertEqual(r.of_type(rtype), {}, rtype)
        env, _ = task_env(r)
        self.assertEqual((env['SRC_BUCKET'], env['DEST_BUCKET']), (SRC_NAME, DEST_NAME))
        (rule,) = r.of_type('AWS::Events::Rule').values()
        self.assertEqual(rule['Properties']['EventPattern']['detail']['bucket']['name'],
                         [SRC_NAME])

    def test_https_only_for_every_action(self):
        r = Resolved(self.doc)
        policies = r.of_type('AWS::S3::BucketPolicy')
        self.assertEqual(len(policies), 2)
        for p in policies.values():
            bucket = p['Properties']['Bucket']
            (st,) = p['Properties']['PolicyDocument']['Statement']
            self.assertEqual((st['Effect'], st['Principal'], st['Action']), ('Deny', '*', 's3:*'))
            self.assertCountEqual(st['Resource'], ['arn:aws:s3:::' + bucket,
                                                   'arn:aws:s3:::%s/*' % bucket])
            self.assertEqual(st['Condition'], {'Bool': {'aws:SecureTransport': 'false'}})


class Network(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = load_template()
        cls.help = help_vars()

    def test_metrics_and_readyz_are_not_public(self):
        r = Resolved(self.doc)
        (rule,) = r.of_type('AWS::ElasticLoadBalancingV2::ListenerRule').values()
        p = rule['Properties']
        self.assertEqual(p['ListenerArn'], 'ref:HttpsListener')
        (cond,) = p['Conditions']
        paths = cond['PathPatternConfig']['Values']
        for path in ('/metrics', '/readyz'):
            self.assertIn(path, paths)
            self.assertIn(path + '/*', paths)
        (action,) = p['Actions']
        self.assertEqual(action['Type'], 'fixed-response')
        self.assertEqual(action['FixedResponseConfig']['StatusCode'], '404')
        json.loads(action['FixedResponseConfig']['MessageBody'])
        # The health check is the target group's own request to the task, past the listener.
        (tg,) = r.of_type('AWS::ElasticLoadBalancingV2::TargetGroup').values()
        self.assertNotIn(tg['Properties']['HealthCheckPath'], paths)
        # Inside the VPC: a monitoring CIDR reaches the tasks' port directly, when given.
        self.assertEqual(r.of_type('AWS::EC2::SecurityGroupIngress').keys(),
                         {'ServiceIngressFromLoadBalancer'})
        r = Resolved(self.doc, {'MonitoringCidr': '10.0.8.0/24'})
        ing = r.of_type('AWS::EC2::SecurityGroupIngress')['ServiceIngressFromMonitoring']
        self.assertEqual((ing['Properties']['CidrIp'], str(ing['Properties']['FromPort'])),
                         ('10.0.8.0/24', self.help['PORT']))

    def test_metrics_answer_only_with_the_token(self):
        """The ALB's 404 rule matches the literal path; the token protects /metrics on every
        path form and from inside the VPC too."""
        env, secrets = task_env(Resolved(self.doc))
        self.assertIn('METRICS_TOKEN', secrets)

        def scrape(port):
            url = 'http://127.0.0.1:%d/metrics' % port
            # Spellings the listener rule does not match: none gives the counters away.
            others = {path: harness.http('GET', 'http://127.0.0.1:%d%s' % (port, path))[0]
                      for path in ('/%6detrics', '/%6D%65trics', '//metrics', '/METRICS')}
            return (harness.http('GET', url)[0],
                    harness.http('GET', url, {'Authorization': 'Bearer wrong' + GENERATED})[0],
                    harness.http('GET', url, {'Authorization': 'Bearer ' + GENERATED})[0], others)
        refused, (anonymous, wrong, right, others) = run_service(env, while_up=scrape)
        self.assertIsNone(refused)
        self.assertEqual((anonymous, wrong, right), (401, 401, 200))
        self.assertFalse({p: s for p, s in others.items() if s == 200}, others)

    def test_optional_s3_gateway_endpoint(self):
        self.assertEqual(Resolved(self.doc).of_type('AWS::EC2::VPCEndpoint'), {})
        r = Resolved(self.doc, {'CreateS3GatewayEndpoint': 'true', 'PrivateRouteTableIds': 'rtb-1'})
        (ep,) = r.of_type('AWS::EC2::VPCEndpoint').values()
        self.assertEqual(ep['Properties']['VpcEndpointType'], 'Gateway')
        self.assertEqual(ep['Properties']['ServiceName'], 'com.amazonaws.us-east-1.s3')
        self.assertEqual(ep['Properties']['RouteTableIds'], ['rtb-1'])

    def test_arm64_option(self):
        for arch in ('X86_64', 'ARM64'):
            (td,) = Resolved(self.doc, {'CpuArchitecture': arch}).of_type(
                'AWS::ECS::TaskDefinition').values()
            self.assertEqual(td['Properties']['RuntimePlatform']['CpuArchitecture'], arch)


class Alarms(unittest.TestCase):
    def test_each_failure_kind_has_an_alarm_on_the_one_topic(self):
        topic = 'arn:aws:sns:us-east-1:123456789012:ops'
        r = Resolved(load_template(), {'AlarmTopicArn': topic})
        alarms = r.of_type('AWS::CloudWatch::Alarm').values()
        metrics = {(a['Properties']['Namespace'], a['Properties']['MetricName']) for a in alarms}
        for want in (('AWS/SQS', 'ApproximateNumberOfMessagesVisible'),
                     ('AWS/Events', 'FailedInvocations'),
                     ('resizer/resizer', 'ServiceErrors'),
                     ('AWS/ApplicationELB', 'HTTPCode_Target_5XX_Count'),
                     ('AWS/ApplicationELB', 'HTTPCode_ELB_5XX_Count'),
                     ('AWS/ApplicationELB', 'UnHealthyHostCount'),
                     ('AWS/ApplicationELB', 'HealthyHostCount')):
            self.assertIn(want, metrics)
        for a in alarms:
            self.assertEqual(a['Properties']['AlarmActions'], [topic])
        self.assertEqual(r.doc['Resources']['WebhookFailuresAlarm'].get('Condition'),
                         'HasWebhooks', 'no webhooks, no alarm')
        pattern = r.doc['Resources']['ServiceErrorsMetricFilter']['Properties']['FilterPattern']
        # The service's log events for a failed sweep and a failed status write (server/).
        # The webhook outbox's DynamoDB failures are WARN lines: named, or no alarm sees them.
        for event, source in (('reconcile_list_failed', 'reconcile.c'),
                              ('status_write_failed', 'jobs.c'),
                              ('outbox_error', 'outbox_dynamodb.c')):
            self.assertIn('"%s"' % event, pattern)
            with open(os.path.join(SOURCE_DIR, 'server', source), encoding='utf-8') as f:
                self.assertIn('"%s"' % event, f.read())


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
        self.assertEqual(container(Resolved(load_template()))['User'], user)

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
