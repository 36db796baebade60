"""harness.py - what the integration tests share: the real S3 server, the real binary, HTTP.

Debian's /usr/bin/python3 with the standard library and botocore (python3-botocore) only.

  S3Server     the local S3 server (OpenStack Swift + s3api, deploy/local/s3-start). Attaches
               to the one the test command started (env RESIZER_TEST_S3_DIR), or starts a
               private one in a temp dir (private=True, or when that env is unset).
  DynamoServer the local DynamoDB server (dynalite, deploy/local/dynamodb-start), shared (env
               RESIZER_TEST_DDB_DIR) or private, as S3Server.
  Resizer      the binary from env RESIZER_BIN on a free port, wired to an S3Server.
  start_replicas  N Resizers on one S3 and one DynamoServer (STATE_STORE=dynamodb, one table
               made by `resizer --create-table`, the same buckets): a ReplicaSet.
  LoadBalancer nginx (deploy/local/lb-start) on a free port in front of Resizers: the ALB's
               local stand-in, round robin with passive failover.
  http, json_http, free_port, unique_bucket, unique_table, scaled.

What tests do with these (events, waiting, error checks) is in fixtures.py.

http() also checks every response of a Resizer started here against openapi/openapi.yaml
(contract.py; needs python3-yaml and python3-jsonschema); RESIZER_CONTRACT=0 turns that off.

Everything started here is stopped when the process exits, also after a failed test, a
SIGTERM or SIGINT; a private S3 server is stopped even if this process is SIGKILLed (a
watchdog waits for our end of a pipe to close). If something cannot be started or reached, the
harness raises: integration tests fail, they never skip.
"""

import atexit
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from http import client as httpclient
from urllib.parse import urlsplit

import botocore.session
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get('RESIZER_SOURCE_DIR') or os.path.dirname(os.path.dirname(HERE))
S3_START = os.path.join(SOURCE_DIR, 'deploy', 'local', 's3-start')
S3_STOP = os.path.join(SOURCE_DIR, 'deploy', 'local', 's3-stop')
S3_ENV_KEYS = ('S3_ENDPOINT', 'S3_FORCE_PATH_STYLE', 'AWS_REGION', 'AWS_ACCESS_KEY_ID',
               'AWS_SECRET_ACCESS_KEY')
DDB_START = os.path.join(SOURCE_DIR, 'deploy', 'local', 'dynamodb-start')
DDB_STOP = os.path.join(SOURCE_DIR, 'deploy', 'local', 'dynamodb-stop')
LB_START = os.path.join(SOURCE_DIR, 'deploy', 'local', 'lb-start')
LB_STOP = os.path.join(SOURCE_DIR, 'deploy', 'local', 'lb-stop')
# The service's default credentials in tests; refer to these names, not the literals.
# (token entries must be at least 16 characters: server/config.c.) API_TOKEN is an admin
# (ADMIN_TOKENS): most tests look at images that arrive without an upload URL, which only
# admins see; tests of callers and tenancy name their own tokens.
API_TOKEN = 'test-token-0123456789'
EVENTS_API_KEY = 'test-events-key'
# Set RESIZER_TEST_KEEP=1 to keep temp dirs (logs, S3 data) for a post-mortem.
KEEP_TMP = os.environ.get('RESIZER_TEST_KEEP') == '1'

_resources = []  # everything to close at exit, in creation order


# -- cleanup ------------------------------------------------------------------------------

def _close_all():
    while _resources:
        res = _resources.pop()
        try:
            res.close()
        except Exception as e:  # keep closing the rest
            sys.stderr.write('harness: cleanup of %r failed: %s\n' % (res, e))


def _on_signal(signum, frame):
    # SystemExit unwinds the test and runs atexit, which stops what we started.
    raise SystemExit(128 + signum)


def _track(res):
    if not _resources and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_signal)
    _resources.append(res)


def _untrack(res):
    if res in _resources:
        _resources.remove(res)


# -- the contract ---------------------------------------------------------------------------

# Unless RESIZER_CONTRACT=0, http() checks every response of a Resizer started here against
# openapi/openapi.yaml (contract.py) and raises AssertionError on a violation. A violation a
# test swallowed (say inside fixtures.wait_for) still fails the program at exit.
CONTRACT = os.environ.get('RESIZER_CONTRACT', '1') == '1'
_resizers = []  # Resizer instances not closed yet


def _contract_check(method, parts, target, status, headers, body):
    if not CONTRACT or parts.hostname not in ('127.0.0.1', 'localhost'):
        return
    if not any(r.port == parts.port and r.running() for r in _resizers):
        return
    import contract
    contract.shared().check(method, target, status, headers, body)


def _contract_exit():
    # Registered before _close_all, so it runs after it, once the services are stopped.
    if CONTRACT and 'contract' in sys.modules and sys.modules['contract'].report():
        sys.stdout.flush()
        os._exit(1)


atexit.register(_contract_exit)
atexit.register(_close_all)


# -- small helpers --------------------------------------------------------------------------

def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def _port_is_free(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(('127.0.0.1', port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def unique_bucket(prefix='t'):
    """A valid, unused S3 bucket name starting with prefix: tests share one S3 server."""
    name = '%s-%s' % (prefix.lower().replace('_', '-'), uuid.uuid4().hex[:16])
    return name[:63].rstrip('-.')


_scale = None


def timeout_scale():
    """Factor for timeouts: env RESIZER_TEST_TIMEOUT_SCALE, else 3 for a sanitizer build of
    RESIZER_BIN (ASan makes start-up and image work several times slower), else 1."""
    global _scale
    if _scale is None:
        env = os.environ.get('RESIZER_TEST_TIMEOUT_SCALE')
        if env:
            _scale = float(env)
        else:
            _scale = 1.0
            path = os.environ.get('RESIZER_BIN')
            try:
                with open(path, 'rb') as f:
                    if b'__asan_init' in f.read():
                        _scale = 3.0
            except (OSError, TypeError):
                pass
    return _scale


def scaled(seconds):
    """seconds, stretched for slow (sanitizer) builds."""
    return seconds * timeout_scale()


def http(method, url, headers=None, body=None, timeout=10):
    """One HTTP request with http.client; redirects are not followed.
    body: bytes, str (sent as UTF-8) or None. Returns (status, headers, body bytes) with header
    names lowercased (repeated headers joined with ', '). Connection errors propagate
    (ConnectionRefusedError, socket.timeout, ...)."""
    parts = urlsplit(url)
    conn_cls = httpclient.HTTPSConnection if parts.scheme == 'https' else httpclient.HTTPConnection
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout)
    path = parts.path or '/'
    if parts.query:
        path += '?' + parts.query
    if isinstance(body, str):
        body = body.encode('utf-8')
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {}
        for name, value in resp.getheaders():
            key = name.lower()
            hdrs[key] = hdrs[key] + ', ' + value if key in hdrs else value
        _contract_check(method, parts, path, resp.status, hdrs, data)
        return resp.status, hdrs, data
    finally:
        conn.close()


def json_http(method, url, obj=None, headers=None, timeout=10, body=None):
    """http() for JSON APIs: obj (if not None) is sent as a JSON body with Content-Type
    application/json (body= sends raw bytes instead, e.g. malformed JSON). Returns (status,
    headers, parsed JSON body, or None when the body is empty). Raises ValueError, quoting the
    response, when the body is not JSON."""
    hdrs = dict(headers or {})
    if obj is not None:
        body = json.dumps(obj).encode('utf-8')
    if body is not None and not any(k.lower() == 'content-type' for k in hdrs):
        hdrs['Content-Type'] = 'application/json'
    status, rhdrs, data = http(method, url, headers=hdrs, body=body, timeout=timeout)
    if not data.strip():
        return status, rhdrs, None
    try:
        return status, rhdrs, json.loads(data)
    except ValueError:
        raise ValueError('%s %s -> %d with a non-JSON body: %r' % (method, url, status, data[:500]))


def _tail(text, lines=40):
    return '\n'.join(text.splitlines()[-lines:])


# -- the S3 server --------------------------------------------------------------------------

class S3Server:
    """The local S3 server. By default attaches to the one started by the test command (env
    RESIZER_TEST_S3_DIR); with private=True, or when that env is unset, starts its own in a temp
    dir and owns it: only an owned server can be stopped and started again (outage tests), and
    it is stopped and removed at close() / exit."""

    # What DynamoServer, which shares this lifecycle, changes.
    SHARED_DIR_ENV = 'RESIZER_TEST_S3_DIR'
    START, STOP, ENV_KEYS, TMP_PREFIX = S3_START, S3_STOP, S3_ENV_KEYS, 'resizer-s3-'

    def __init__(self, private=False):
        shared_dir = os.environ.get(self.SHARED_DIR_ENV)
        self.owned = private or not shared_dir
        self._watchdog = None
        self._client = None
        self.running = False
        if self.owned:
            self.dir = tempfile.mkdtemp(prefix=self.TMP_PREFIX)
            _track(self)
            self._start_watchdog()
            self.start()
        else:
            self.dir = shared_dir
            self._load_env()
            self.check_reachable()
            self.running = True

    def __repr__(self):
        return 'S3Server(%s, %s)' % (self.dir, 'owned' if self.owned else 'attached')

    def _load_env(self):
        path = os.path.join(self.dir, 'env')
        try:
            with open(path) as f:
                lines = [l.strip() for l in f if '=' in l]
        except OSError as e:
            raise RuntimeError('server dir %s has no env file (%s); was it started with '
                               '%s?' % (self.dir, e, self.START))
        env = dict(l.split('=', 1) for l in lines)
        missing = [k for k in self.ENV_KEYS if k not in env]
        if missing:
            raise RuntimeError('%s lacks %s' % (path, ', '.join(missing)))
        self._env = {k: env[k] for k in self.ENV_KEYS}
        self._close_client()

    def _close_client(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    # A watchdog for the case atexit cannot cover (this process SIGKILLed, e.g. by a ctest
    # timeout): it blocks reading a pipe only we hold, and on EOF stops the server and removes
    # its dir (unless RESIZER_TEST_KEEP=1).
    def _start_watchdog(self):
        script = 'cat >/dev/null; "$0" "$1" >/dev/null 2>&1; [ "$2" = 1 ] || rm -rf "$1"'
        self._watchdog = subprocess.Popen(
            ['/bin/sh', '-c', script, self.STOP, self.dir, '1' if KEEP_TMP else '0'],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def _stop_watchdog(self):
        if self._watchdog is not None:
            self._watchdog.stdin.close()
            self._watchdog.wait(timeout=30)
            self._watchdog = None

    @property
    def endpoint(self):
        return self._env[self.ENV_KEYS[0]]

    def env(self):
        """The S3 variables for the service: S3_ENDPOINT, S3_FORCE_PATH_STYLE, AWS_REGION,
        AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (a new dict)."""
        return dict(self._env)

    def log_path(self):
        """Swift's proxy log: one line per request."""
        return os.path.join(self.dir, 'log', 'proxy-server.log')

    def check_reachable(self, timeout=5):
        """Raises RuntimeError unless GET /healthcheck answers 200."""
        try:
            status, _, body = http('GET', self.endpoint + '/healthcheck', timeout=timeout)
        except OSError as e:
            raise RuntimeError('S3 server at %s (%s) is not reachable: %s'
                               % (self.endpoint, self.dir, e))
        if status != 200:
            raise RuntimeError('S3 server at %s: /healthcheck answered %d %r'
                               % (self.endpoint, status, body[:200]))

    def _require_owned(self, what):
        if not self.owned:
            raise RuntimeError('%s of the shared server would break the other tests; use '
                               '%s(private=True)' % (what, type(self).__name__))

    def start(self):
        """Starts (or restarts, same data and endpoint) an owned server."""
        self._require_owned('start')
        old = self.endpoint if getattr(self, '_env', None) else None
        proc = subprocess.run([self.START, self.dir], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError('%s %s failed (exit %d):\n%s'
                               % (self.START, self.dir, proc.returncode,
                                  proc.stdout.decode(errors='replace')))
        self.running = True
        self._load_env()
        if old and old != self.endpoint:
            raise RuntimeError('endpoint moved from %s to %s on restart (its port was taken '
                               'while stopped)' % (old, self.endpoint))

    def stop(self):
        """Stops an owned server (data kept); connections are refused until start()."""
        self._require_owned('stop')
        proc = subprocess.run([self.STOP, self.dir], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError('%s %s failed:\n%s'
                               % (self.STOP, self.dir, proc.stdout.decode(errors='replace')))
        self.running = False

    def close(self):
        """Stops and removes an owned server; detaches from a shared one. Idempotent."""
        _untrack(self)
        self._close_client()
        if self.owned and self.dir:
            try:
                if os.path.isdir(self.dir):
                    self.stop()
            finally:
                self._stop_watchdog()
                if not KEEP_TMP:
                    shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def client(self):
        """A botocore S3 client for this server: path style, SigV4, us-east-1, test:tester.
        Few retries, so outages show up quickly."""
        if self._client is None:
            session = botocore.session.get_session()
            self._client = session.create_client(
                's3', region_name=self._env['AWS_REGION'], endpoint_url=self.endpoint,
                aws_access_key_id=self._env['AWS_ACCESS_KEY_ID'],
                aws_secret_access_key=self._env['AWS_SECRET_ACCESS_KEY'],
                config=Config(signature_version='s3v4', s3={'addressing_style': 'path'},
                              retries={'max_attempts': 2, 'mode': 'standard'},
                              connect_timeout=5, read_timeout=60))
        return self._client

    def create_bucket(self, name=None, prefix='t'):
        """Creates bucket name (default: unique_bucket(prefix)); an existing one is fine.
        Returns the name."""
        name = name or unique_bucket(prefix)
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name


# -- the DynamoDB server --------------------------------------------------------------------

def unique_table(prefix='t'):
    """A table name no other test uses: DynamoDB's rules (3..255 of [A-Za-z0-9_.-])."""
    return '%s-%s' % (prefix, uuid.uuid4().hex[:12])


class DynamoServer(S3Server):
    """The local DynamoDB server (dynalite). The same lifecycle as S3Server: attaches to the
    one the test command started (env RESIZER_TEST_DDB_DIR), or with private=True (tests that
    stop it on purpose) or when that env is unset starts its own in a temp dir; stop() and
    start() keep its data and endpoint. env() is {'DYNAMODB_ENDPOINT': ...}."""

    SHARED_DIR_ENV = 'RESIZER_TEST_DDB_DIR'
    START, STOP, ENV_KEYS, TMP_PREFIX = DDB_START, DDB_STOP, ('DYNAMODB_ENDPOINT',), 'resizer-ddb-'

    def __repr__(self):
        return 'DynamoServer(%s, %s)' % (self.dir, 'owned' if self.owned else 'attached')

    def log_path(self):
        return os.path.join(self.dir, 'log', 'dynalite.log')

    def check_reachable(self, timeout=5):
        """Raises RuntimeError unless ListTables answers."""
        try:
            self.client().list_tables(Limit=1)
        except Exception as e:
            raise RuntimeError('DynamoDB server at %s (%s) is not reachable: %s'
                               % (self.endpoint, self.dir, e))

    def client(self):
        """A botocore DynamoDB client for this server (dynalite takes any keys). Few retries,
        so outages show up quickly."""
        if self._client is None:
            self._client = botocore.session.get_session().create_client(
                'dynamodb', region_name='us-east-1', endpoint_url=self.endpoint,
                aws_access_key_id='local', aws_secret_access_key='local',
                config=Config(retries={'max_attempts': 2, 'mode': 'standard'},
                              connect_timeout=5, read_timeout=30))
        return self._client

    def create_bucket(self, name=None, prefix='t'):
        raise TypeError('a DynamoDB server has tables, not buckets')


# -- the service under test -----------------------------------------------------------------

# Inherited from the test's environment: what a process needs to run and the sanitizers'
# options. Any AWS_*, S3_* or service setting of the caller's shell is left out on purpose.
_INHERIT = ('PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR')
_INHERIT_PREFIXES = ('ASAN_', 'LSAN_', 'UBSAN_', 'VIPS_')


def _set_pdeathsig():
    # Runs in the child before exec: if the test process dies (even by SIGKILL), so does the
    # service, instead of lingering on its port.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


_proxies = {}  # upstream DynamoDB endpoint -> iam.RecordingProxy, one per test process


def _shared_ddb_endpoint():
    """DYNAMODB_ENDPOINT of the DynamoDB server the test command started, or None."""
    shared = os.environ.get(DynamoServer.SHARED_DIR_ENV)
    try:
        with open(os.path.join(shared, 'env')) as f:
            env = dict(l.strip().split('=', 1) for l in f if '=' in l)
    except (OSError, TypeError):
        return None
    return env.get('DYNAMODB_ENDPOINT')


def _recording_proxy(s3_dir, upstream):
    import iam
    if upstream not in _proxies:
        out = os.path.join(s3_dir, iam.RECORD_DIR, 'dynamodb-%d.requests.jsonl' % os.getpid())
        os.makedirs(os.path.dirname(out), exist_ok=True)
        _proxies[upstream] = iam.RecordingProxy(upstream, out)
    return _proxies[upstream]


class Resizer:
    """The resizer binary (env RESIZER_BIN) on 127.0.0.1:<free port>.

    env: settings merged over s3.env() and the defaults (SRC_BUCKET/DEST_BUCKET: src_bucket and
    dest_bucket, fresh unique buckets if not given; ADMIN_TOKENS=API_TOKEN,
    EVENTS_API_KEY=EVENTS_API_KEY, LOG_LEVEL=debug, RECONCILE_INTERVAL=0); a value of None
    removes the variable. Output (stdout and stderr) goes to a log file in a temp dir.
    start=False: call start() yourself (wait=False for runs expected to fail at start-up).
    wrapper: a command the binary runs under, e.g. ['valgrind', '--error-exitcode=1'] (default:
    env RESIZER_WRAPPER split like a shell would, else none); signals reach the binary through
    it only if the wrapper runs it in the same process, as valgrind does."""

    def __init__(self, s3, env=None, src_bucket=None, dest_bucket=None, args=(), start=True,
                 ready_timeout=20, wrapper=None):
        self.bin = os.environ.get('RESIZER_BIN')
        if not self.bin or not os.access(self.bin, os.X_OK):
            raise RuntimeError('RESIZER_BIN (%r) is not an executable; build the resizer target'
                               % self.bin)
        self.s3 = s3
        self.src_bucket = src_bucket or s3.create_bucket(prefix='src')
        self.dest_bucket = dest_bucket or s3.create_bucket(prefix='dest')
        self.args = list(args)
        if wrapper is None:
            wrapper = shlex.split(os.environ.get('RESIZER_WRAPPER', ''))
        self.wrapper = list(wrapper)
        self.ready_timeout = ready_timeout
        self.port = free_port()
        self.proc = None
        self.tmp = tempfile.mkdtemp(prefix='resizer-run-')
        self.log_path = os.path.join(self.tmp, 'resizer.log')
        self.env = self._compose_env(env or {})
        _track(self)
        _resizers.append(self)
        if start:
            self.start()

    def __repr__(self):
        return 'Resizer(port %d, log %s)' % (self.port, self.log_path)

    def _compose_env(self, overrides):
        env = {k: v for k, v in os.environ.items()
               if k in _INHERIT or k.startswith(_INHERIT_PREFIXES)}
        env.update(self.s3.env())
        env.update({
            'SRC_BUCKET': self.src_bucket, 'DEST_BUCKET': self.dest_bucket,
            'ADMIN_TOKENS': API_TOKEN, 'EVENTS_API_KEY': EVENTS_API_KEY,
            'LOG_LEVEL': 'debug', 'RECONCILE_INTERVAL': '0',
        })
        for k, v in overrides.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        env['LISTEN_ADDR'] = '127.0.0.1'
        return env

    def url(self, path='/'):
        return 'http://127.0.0.1:%d%s' % (self.port, path)

    def _spawn(self):
        env = dict(self.env, PORT=str(self.port))
        if not self.s3.owned:
            # The shared servers' requests are judged against the template's task role after
            # the run (iam_coverage.py), with this instance's buckets, prefix and settings; its
            # requests to the shared DynamoDB go through a recording proxy for that.
            import iam
            iam.register_service(self.s3.dir, env)
            upstream = env.get('DYNAMODB_ENDPOINT')
            if upstream and upstream == _shared_ddb_endpoint():
                env['DYNAMODB_ENDPOINT'] = _recording_proxy(self.s3.dir, upstream).endpoint
        with open(self.log_path, 'ab') as log:
            log.write(('--- harness: starting %s on port %d\n' % (self.bin, self.port)).encode())
            log.flush()
            self.proc = subprocess.Popen(self.wrapper + [self.bin] + self.args, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, preexec_fn=_set_pdeathsig)

    def start(self, wait=True):
        """Starts the process (again, after stop()/kill9(): same port and log file). With
        wait, returns once GET /healthz answers 200, else raises with the log tail; if the port
        was taken meanwhile by someone else, retries on another one."""
        if self.running():
            raise RuntimeError('resizer already running (pid %d)' % self.proc.pid)
        for _attempt in range(3):
            self._spawn()
            if not wait:
                return
            if self._wait_healthy():
                return
            if self.proc.poll() is None or _port_is_free(self.port):
                break
            self.port = free_port()
        code = self.proc.poll()
        if code is None:
            self.kill9()
            why = 'GET /healthz did not answer 200 within %.0fs' % scaled(self.ready_timeout)
        else:
            why = 'it exited with %d during start-up' % code
        raise RuntimeError('resizer did not become healthy: %s. Log tail:\n%s'
                           % (why, _tail(self.log_text())))

    def _wait_healthy(self):
        deadline = time.monotonic() + scaled(self.ready_timeout)
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if http('GET', self.url('/healthz'), timeout=2)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout=10):
        """Waits for the process to exit by itself; returns its exit code (negative: signal).
        Raises AssertionError, with the log tail, if it is still running after timeout."""
        try:
            return self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError('resizer still running after %.0fs. Log tail:\n%s'
                                 % (scaled(timeout), _tail(self.log_text())))

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends sig and waits for the exit; returns the exit code (negative: killed by a
        signal). If it has not exited after timeout (scaled), kills it and raises
        AssertionError with the log tail."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError('resizer did not exit within %.0fs of signal %d. Log tail:\n%s'
                                 % (scaled(timeout), sig, _tail(self.log_text())))

    def kill9(self):
        """SIGKILL (a crash, as far as the service can tell); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def log_text(self):
        """Everything the process wrote so far (all runs of this object), as text."""
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', errors='replace')
        except OSError:
            return ''

    def close(self):
        """Kills the process if still running and removes the temp dir. Idempotent."""
        _untrack(self)
        if self in _resizers:
            _resizers.remove(self)
        self.kill9()
        if self.tmp and not KEEP_TMP:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- several replicas -------------------------------------------------------------------------

class ReplicaSet(list):
    """Resizers sharing one S3 (the same buckets) and one DynamoDB table. .table, .ddb, .s3."""

    def close(self):
        for r in self:
            r.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def create_table(ddb, table, env=None, timeout=60):
    """Runs `resizer --create-table` (RESIZER_BIN) for table on ddb; raises on failure."""
    binary = os.environ.get('RESIZER_BIN')
    if not binary or not os.access(binary, os.X_OK):
        raise RuntimeError('RESIZER_BIN (%r) is not an executable' % binary)
    full = {k: v for k, v in os.environ.items() if k in _INHERIT or k.startswith(_INHERIT_PREFIXES)}
    full.update({'AWS_REGION': 'us-east-1', 'AWS_ACCESS_KEY_ID': 'local',
                 'AWS_SECRET_ACCESS_KEY': 'local'})
    full.update(env or {})
    full.update(ddb.env())
    full.update({'STATE_STORE': 'dynamodb', 'DYNAMODB_TABLE': table})
    proc = subprocess.run([binary, '--create-table'], env=full, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=scaled(timeout))
    if proc.returncode != 0:
        raise RuntimeError('resizer --create-table %s failed (exit %d):\n%s'
                           % (table, proc.returncode, _tail(proc.stdout.decode(errors='replace'))))


def start_replicas(n, s3, ddb, env=None, table=None, src_bucket=None, dest_bucket=None,
                   start=True, **kwargs):
    """n Resizers on free ports, one S3 and one DynamoDB server: STATE_STORE=dynamodb,
    DYNAMODB_TABLE (table, default a unique_table('rz') created first with
    `resizer --create-table`; pass an existing table to skip that), DYNAMODB_ENDPOINT, the
    same SRC/DEST buckets (fresh ones if not given). env and kwargs go to every Resizer.
    Returns a ReplicaSet; each replica is stopped at exit like any Resizer."""
    s3env = s3.env()
    src_bucket = src_bucket or s3.create_bucket(prefix='src')
    dest_bucket = dest_bucket or s3.create_bucket(prefix='dest')
    if table is None:
        table = unique_table('rz')
        create_table(ddb, table, env=dict(s3env, **(env or {})))
    shared = dict(env or {})
    shared.update(ddb.env())
    shared.update({'STATE_STORE': 'dynamodb', 'DYNAMODB_TABLE': table})
    replicas = ReplicaSet()
    replicas.table, replicas.ddb, replicas.s3 = table, ddb, s3
    for _ in range(n):
        replicas.append(Resizer(s3, env=shared, src_bucket=src_bucket, dest_bucket=dest_bucket,
                                start=start, **kwargs))
    return replicas


class LoadBalancer:
    """nginx on 127.0.0.1:<free port> round-robining over replicas (Resizers or ports), with
    passive failover (deploy/local/nginx-lb.conf.in). Stopped at close() / exit."""

    def __init__(self, replicas):
        self.backends = [r if isinstance(r, int) else r.port for r in replicas]
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix='resizer-lb-')
        _track(self)
        proc = subprocess.run([LB_START, self.dir, str(self.port)] + [str(p) for p in self.backends],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError('deploy/local/lb-start failed (exit %d):\n%s'
                               % (proc.returncode, proc.stdout.decode(errors='replace')))

    def __repr__(self):
        return 'LoadBalancer(port %d -> %s)' % (self.port, self.backends)

    def url(self, path='/'):
        return 'http://127.0.0.1:%d%s' % (self.port, path)

    def close(self):
        """Stops nginx and removes its dir. Idempotent."""
        _untrack(self)
        if self.dir:
            subprocess.run([LB_STOP, self.dir], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            if not KEEP_TMP:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
