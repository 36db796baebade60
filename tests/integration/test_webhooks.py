#!/usr/bin/python3
"""Issue 15, completion webhooks, as a receiver sees them: a Python http.server on loopback that
this test runs, checking every delivery's Standard Webhooks signature with Python's hmac (not
the service's code) against the secrets it was given.

- done and failed images are each notified once per endpoint (image.done / image.failed), with
  the status record (no presigned URL) and a valid signature under both secrets of a rotation;
- a receiver that answers 500 once gets the same webhook-id and body again, validly signed;
- a 410 is final (no retry); a redirect is not followed (and is retried); a receiver that hangs
  is cut by WEBHOOK_TIMEOUT and retried, then given up, while the images themselves are done
  at once; /metrics counts it all; SIGTERM does not wait on the hanging receiver;
- an image that fails at intake (a key too long for its variants: no job ever runs) is
  notified as image.failed like one whose job failed;
- with the shared store (STATE_STORE=dynamodb), deliveries wait in its table: a replica killed
  with -9 while its receiver was down leaves them to a replica started afterwards, which
  delivers them with the same webhook-id; two replicas sharing the outbox send each message
  once, not once each;
- bad WEBHOOK_URLS / WEBHOOK_SECRET stop the start with a clear message.
Real S3 (Swift), real dynalite, real binary; images made with the vips CLI."""

import base64
import calendar
import collections
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import contract
from harness import (SOURCE_DIR, DynamoServer, Resizer, S3Server, http, json_http, scaled,
                     start_replicas)
from fixtures import (AUTH, announce, metric, metrics_text, put_source, wait_for, without_urls,
                      wait_record)

# Two secrets, as while rotating: the old one and the new one (32 random bytes each).
SECRET_OLD = 'whsec_' + base64.b64encode(b'old-secret-0123456789abcdefghijk').decode()
SECRET_NEW = 'whsec_' + base64.b64encode(b'new-secret-0123456789abcdefghijk').decode()
REPLAY_WINDOW = 300  # seconds, what receivers usually accept (standardwebhooks libraries)

S3 = None
DDB = None
JPEG = None


def setUpModule():
    global S3, DDB, JPEG
    S3 = S3Server()
    DDB = DynamoServer()
    with tempfile.TemporaryDirectory(prefix='resizer-webhooks-') as tmp:
        path = os.path.join(tmp, 'noise.jpg')
        subprocess.run(['vips', 'gaussnoise', path, '320', '240'], check=True, timeout=60)
        with open(path, 'rb') as f:
            JPEG = f.read()


def tearDownModule():
    if DDB is not None:
        DDB.close()
    if S3 is not None:
        S3.close()


def readme_block(lang):
    """The first ```lang block of the README's Webhooks section."""
    with open(os.path.join(SOURCE_DIR, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    section = re.search(r'^## Webhooks\n(.*?)(?=^## )', text, re.M | re.S).group(1)
    return re.search(r'^```%s\n(.*?)^```' % lang, section, re.M | re.S).group(1)


def readme_verify():
    """The verify() function of the README's Webhooks section, as a reader would copy it."""
    code = readme_block('python')
    scope = {}
    exec(compile(code, 'README.md', 'exec'), scope)
    return scope['verify']


README_VERIFY = readme_verify()


def expected_signature(secret, msg_id, timestamp, body):
    """The Standard Webhooks signature, computed here from the specification alone."""
    key = base64.b64decode(secret[len('whsec_'):], validate=True)
    signed = msg_id.encode() + b'.' + timestamp.encode() + b'.' + body
    return 'v1,' + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class Receiver:
    """An HTTP endpoint on 127.0.0.1 recording every POST. What it answers depends on the
    path: /ok 204; /flaky 500 the first time it sees a webhook-id, then 200; /gone 410;
    /moved 302 to /elsewhere; /hang holds the request until close(); /down 503 while .down
    is set, else 200."""

    def __init__(self):
        self.down = True
        self.lock = threading.Lock()
        self.requests = []
        self.hanging = 0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
                receiver.record(self, body)
                receiver.answer(self)

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return 'http://127.0.0.1:%d%s' % (self.server.server_address[1], path)

    def record(self, handler, body):
        with self.lock:
            self.requests.append({
                'path': handler.path, 'body': body, 'at': time.time(),
                'headers': {k.lower(): v for k, v in handler.headers.items()}})

    def seen(self, path, msg_id):
        return sum(1 for r in self.requests
                   if r['path'] == path and r['headers'].get('webhook-id') == msg_id)

    def answer(self, h):
        if h.path == '/hang':
            with self.lock:
                self.hanging += 1
            self.release.wait(30)
            with self.lock:
                self.hanging -= 1
            return
        if h.path == '/flaky':
            with self.lock:
                first = self.seen('/flaky', h.headers.get('webhook-id')) == 1
            status = 500 if first else 200
        elif h.path == '/down':
            status = 503 if self.down else 200
        else:
            status = {'/ok': 204, '/gone': 410, '/moved': 302}.get(h.path, 404)
        h.send_response(status)
        if status == 302:
            h.send_header('Location', self.url('/elsewhere'))
        h.send_header('Content-Length', '0')
        h.end_headers()

    def on(self, path):
        with self.lock:
            return [r for r in self.requests if r['path'] == path]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def iso_seconds(text):
    """Unix seconds of the service's "2026-12-01T08:30:00.123Z"."""
    whole, _, frac = text.rstrip('Z').partition('.')
    return calendar.timegm(time.strptime(whole, '%Y-%m-%dT%H:%M:%S')) + float('0.' + (frac or '0'))


def messages(requests):
    """The deliveries grouped by webhook-id, in arrival order."""
    by_id = collections.OrderedDict()
    for r in requests:
        by_id.setdefault(r['headers']['webhook-id'], []).append(r)
    return by_id


class WebhooksTest(unittest.TestCase):
    def setUp(self):
        self.receiver = Receiver()
        self.addCleanup(self.receiver.close)

    def service(self, paths, secret, **env):
        env = dict({'WEBHOOK_URLS': ','.join(self.receiver.url(p) for p in paths),
                    'WEBHOOK_SECRET': secret, 'WEBHOOK_RETRY_BASE_MS': '50', 'WORKERS': '2'},
                   **env)
        svc = Resizer(S3, env=env)
        self.addCleanup(svc.close)
        return svc

    def submit(self, svc, data, ext='jpg'):
        key = 'images/%s.%s' % (uuid.uuid4(), ext)
        put_source(svc, key, data)
        status, _, body = announce(svc, key, len(data))
        self.assertEqual(status, 202, body)
        return key

    def check_signed(self, req, secrets):
        """The delivery is signed under each of secrets, with a current timestamp."""
        h = req['headers']
        self.assertEqual(h.get('content-type'), 'application/json')
        self.assertRegex(h['webhook-id'], r'^msg_[0-9a-f]{32}$')
        ts = h['webhook-timestamp']
        self.assertRegex(ts, r'^[0-9]+$')
        self.assertLess(abs(int(ts) - time.time()), REPLAY_WINDOW)
        sent = h['webhook-signature'].split(' ')
        self.assertEqual(len(sent), len(secrets), sent)
        for secret in secrets:
            self.assertIn(expected_signature(secret, h['webhook-id'], ts, req['body']), sent)
            # The README's receiver accepts it with either secret alone...
            self.assertTrue(README_VERIFY(secret, h, req['body']))
        # ... and refuses another secret, a changed body and a replayed timestamp.
        wrong = 'whsec_' + base64.b64encode(b'x' * 32).decode()
        self.assertFalse(README_VERIFY(wrong, h, req['body']))
        self.assertFalse(README_VERIFY(secrets[0], h, req['body'] + b' '))
        self.assertFalse(README_VERIFY(secrets[0], dict(h, **{'webhook-timestamp': str(
            int(ts) - 3600)}), req['body']))

    def test_done_and_failed_notified_once_signed_with_both_secrets(self):
        svc = self.service(['/ok', '/flaky'], SECRET_OLD + ' ' + SECRET_NEW)
        good = self.submit(svc, JPEG)
        bad = self.submit(svc, b'this is not an image at all')
        done = wait_record(svc, key=good, timeout=30)
        failed = wait_record(svc, key=bad, timeout=30)
        self.assertEqual((done['state'], failed['state']), ('done', 'failed'))

        # /ok: each image once; /flaky: each twice (a 500, then the same message again).
        wait_for(lambda: len(self.receiver.on('/ok')) >= 2 and
                   len(self.receiver.on('/flaky')) >= 4, timeout=15,
                   what='both images delivered to both endpoints')
        time.sleep(0.5)  # time for a duplicate to show up, if one were sent
        ok = messages(self.receiver.on('/ok'))
        self.assertEqual([len(v) for v in ok.values()], [1, 1], ok)
        by_type = {}
        for msg_id, (req,) in ok.items():
            self.check_signed(req, [SECRET_OLD, SECRET_NEW])
            msg = json.loads(req['body'])
            self.assertEqual(sorted(msg), ['data', 'timestamp', 'type'])
            self.assert_contract(req, msg)
            by_type[msg['type']] = msg
        self.assertEqual(sorted(by_type), ['image.done', 'image.failed'])
        self.assert_record(by_type['image.done'], done, svc)
        self.assert_record(by_type['image.failed'], failed, svc)
        self.assertEqual(by_type['image.failed']['data']['error']['code'], 'unsupported_format')

        flaky = messages(self.receiver.on('/flaky'))
        self.assertEqual(sorted(flaky), sorted(ok), 'the same webhook-id on every endpoint')
        for msg_id, reqs in flaky.items():
            self.assertEqual(len(reqs), 2, reqs)
            self.assertEqual(reqs[0]['body'], reqs[1]['body'])
            for req in reqs:
                self.check_signed(req, [SECRET_OLD, SECRET_NEW])

        text = metrics_text(svc)
        self.assertEqual(metric(text, 'resizer_webhook_deliveries_total',
                                'outcome="delivered"'), 4)
        self.assertEqual(metric(text, 'resizer_webhook_attempts_total', 'result="2xx"'), 4)
        self.assertEqual(metric(text, 'resizer_webhook_attempts_total', 'result="5xx"'), 2)
        self.assertEqual(metric(text, 'resizer_webhook_attempt_seconds_count'), 6)
        self.assertEqual(metric(text, 'resizer_webhook_queue_depth'), 0)
        self.assertEqual(svc.stop(), 0)  # and, in the sanitizer build, nothing leaked

    def assert_contract(self, req, msg):
        """The delivery fits the webhooks: section of openapi/openapi.yaml."""
        name = {'image.done': 'imageDone', 'image.failed': 'imageFailed'}[msg['type']]
        c = contract.shared()
        op = c.doc['webhooks'][name]['post']
        for param in op['parameters']:
            self.assertRegex(req['headers'][param['name']], param['schema']['pattern'])
        validator = c._validator(op['requestBody']['content']['application/json']['schema'])
        validator.validate(msg)
        if msg['data']['variants']:  # the document forbids what must never be sent
            leaked = json.loads(json.dumps(msg))
            leaked['data']['variants'][0]['url'] = 'https://example.com/x?X-Amz-Signature=1'
            self.assertFalse(validator.is_valid(leaked))
            for f in msg['data']['variants'][0].get('files', [])[:1]:
                leaked = json.loads(json.dumps(msg))
                leaked['data']['variants'][0]['files'][0]['url'] = 'https://example.com/y'
                self.assertFalse(validator.is_valid(leaked))

    def assert_record(self, msg, record, svc):
        """msg's data is the record the API gives, without the presigned URLs."""
        data = msg['data']
        self.assertRegex(msg['timestamp'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$')
        self.assertNotIn('X-Amz-Signature', json.dumps(msg))
        self.assertEqual(without_urls(data), data, 'a presigned url in the payload')
        self.assertEqual(data, without_urls(record))
        self.assertEqual(data['state'], msg['type'][len('image.'):])
        if data['state'] == 'done':
            self.assertEqual(sorted(v['name'] for v in data['variants']),
                             ['desktop', 'phone', 'tablet'])
            self.assertTrue(all(v['key'] and v['bytes'] > 0 for v in data['variants']))
        # A receiver that asks the API at once finds the record.
        status, _, got = json_http('GET', svc.url('/v1/images/' + data['id']), headers=AUTH)
        self.assertEqual((status, got['state']), (200, data['state']))

    def test_gone_stops_hang_does_not_delay_images(self):
        timeout = int(max(2, scaled(1)))
        svc = self.service(['/gone', '/hang', '/moved'], SECRET_NEW,
                           WEBHOOK_TIMEOUT=str(timeout), WEBHOOK_MAX_ATTEMPTS='2')
        keys = ['images/%s.jpg' % uuid.uuid4() for _ in range(3)]
        for key in keys:
            put_source(svc, key, JPEG)
        for key in keys:
            self.assertEqual(announce(svc, key, len(JPEG))[0], 202)
        records = [wait_record(svc, key=key, timeout=30) for key in keys]
        self.assertEqual([r['state'] for r in records], ['done'] * 3)
        # Had a worker waited on its delivery, the third image (2 workers) would have waited
        # for a hanging attempt to time out: all three are done while the first one hangs.
        first_hang = min(r['at'] for r in self.receiver.on('/hang'))
        last_done = max(iso_seconds(r['finished_at']) for r in records)
        self.assertLess(last_done, first_hang + timeout - 0.2,
                        'images finished %.2fs after the first hanging delivery began'
                        % (last_done - first_hang))
        sys.stderr.write('\nall images done %.2fs after the first hanging delivery began\n'
                         % (last_done - first_hang))

        # Each hanging attempt is cut after 1 s and retried once (same id), then given up;
        # the redirect is never followed, and retried like a failure.
        wait_for(lambda: metric(metrics_text(svc), 'resizer_webhook_deliveries_total',
                                  'outcome="expired"') == 6, timeout=20,
                   what='the /hang and /moved deliveries given up')
        for path in ('/hang', '/moved'):
            reqs = messages(self.receiver.on(path))
            self.assertEqual(len(reqs), 3, path)
            for msg_id, tries in reqs.items():
                self.assertEqual(len(tries), 2, (path, msg_id))
                self.assertEqual(tries[0]['body'], tries[1]['body'])
                self.check_signed(tries[1], [SECRET_NEW])
        self.assertEqual(self.receiver.on('/elsewhere'), [])
        # 410: one attempt per message, no retry.
        gone = messages(self.receiver.on('/gone'))
        self.assertEqual([len(v) for v in gone.values()], [1, 1, 1])
        self.assertEqual(sorted(gone), sorted(messages(self.receiver.on('/hang'))))

        text = metrics_text(svc)
        self.assertEqual(metric(text, 'resizer_webhook_deliveries_total', 'outcome="rejected"'),
                         3)

        self.assertEqual(metric(text, 'resizer_webhook_attempts_total', 'result="timeout"'), 6)
        self.assertEqual(metric(text, 'resizer_webhook_attempts_total', 'result="4xx"'), 3)
        self.assertEqual(metric(text, 'resizer_webhook_attempts_total', 'result="3xx"'), 6)
        self.assertEqual(metric(text, 'resizer_webhook_queue_depth'), 0)
        log = svc.log_text()
        self.assertIn('"webhook_gone"', log)
        self.assertIn('"webhook_expired"', log)
        self.assertNotIn(SECRET_NEW[len('whsec_'):], log)

        # A new image while /hang holds a thread: SIGTERM still ends promptly, and says what
        # the memory outbox loses.
        self.submit(svc, JPEG)
        wait_for(lambda: len(self.receiver.on('/hang')) == 7, timeout=10,
                   what='a new delivery hanging')
        t0 = time.monotonic()
        self.assertEqual(svc.stop(), 0)
        stopped = time.monotonic() - t0
        sys.stderr.write('SIGTERM to exit with a hanging delivery: %.2fs\n' % stopped)
        self.assertLess(stopped, scaled(8))
        self.assertIn('"webhooks_lost"', svc.log_text())

    def test_hanging_receiver_does_not_hold_up_the_others(self):
        timeout = int(max(2, scaled(1)))
        self.check_hang_isolated(self.service(['/hang', '/ok'], SECRET_NEW,
                                              WEBHOOK_TIMEOUT=str(timeout),
                                              WEBHOOK_MAX_ATTEMPTS='1'), timeout)

    def test_hanging_receiver_does_not_hold_up_the_others_shared(self):
        # The shared outbox keeps each receiver's deliveries apart: the hanging one's, due
        # first, do not hide the healthy one's.
        timeout = int(max(3, scaled(1)))
        (svc,) = self.replicas(1, ['/hang', '/ok'], WEBHOOK_TIMEOUT=str(timeout),
                               WEBHOOK_MAX_ATTEMPTS='1', WORKERS='2')
        self.check_hang_isolated(svc, timeout)

    def check_hang_isolated(self, svc, timeout):
        # 5 messages to a receiver that hangs, more than the 4 delivery threads: it gets at
        # most half of them, so the healthy receiver is served while the hangs last.
        keys = ['images/%s.jpg' % uuid.uuid4() for _ in range(5)]
        for key in keys:
            put_source(svc, key, JPEG)
        for key in keys:
            self.assertEqual(announce(svc, key, len(JPEG))[0], 202)
        wait_for(lambda: len(self.receiver.on('/ok')) == 5, timeout=15,
                   what='the healthy receiver served')
        first_hang = min(r['at'] for r in self.receiver.on('/hang'))
        last_ok = max(r['at'] for r in self.receiver.on('/ok'))
        self.assertLess(last_ok, first_hang + timeout - 0.2,
                        'the healthy receiver was served %.2fs after the first hang began'
                        % (last_ok - first_hang))
        early = [r for r in self.receiver.on('/hang') if r['at'] < first_hang + timeout - 0.2]
        self.assertLessEqual(len(early), 2, 'attempts to the hanging receiver at once')

    def test_failed_at_intake_notified(self):
        svc = self.service(['/ok'], SECRET_NEW)
        key = 'images/' + 'k' * 1010 + '.jpg'
        status, _, body = announce(svc, key, 1)
        self.assertEqual((status, body['accepted']), (202, 1), body)
        wait_for(lambda: self.receiver.on('/ok'), timeout=10,
                   what='the intake failure notified')
        (req,) = self.receiver.on('/ok')
        self.check_signed(req, [SECRET_NEW])
        msg = json.loads(req['body'])
        self.assert_contract(req, msg)
        self.assertEqual((msg['type'], msg['data']['source']['key'], msg['data']['error']['code']),
                         ('image.failed', key, 'key_too_long'))
        # Redelivered by EventBridge: a duplicate, and no second message.
        status, _, body = announce(svc, key, 1)
        self.assertEqual((status, body['accepted'], body['duplicates']), (202, 0, 1), body)
        time.sleep(0.5)
        self.assertEqual(set(messages(self.receiver.on('/ok'))), {req['headers']['webhook-id']})

    def replicas(self, n, paths, **env):
        env = dict({'WEBHOOK_URLS': ','.join(self.receiver.url(p) for p in paths),
                    'WEBHOOK_SECRET': SECRET_NEW, 'WORKERS': '1'}, **env)
        group = start_replicas(n, S3, DDB, env=env)
        self.addCleanup(group.close)
        return group

    def test_shared_outbox_survives_kill9(self):
        # Retries 2 s (+-20%) apart: the receiver is down for the first attempts, the replica
        # dies before it comes back, and a replica started afterwards has never seen the images.
        group = self.replicas(1, ['/down'], WEBHOOK_RETRY_BASE_MS='2000')
        a = group[0]
        keys = [self.submit(a, JPEG), self.submit(a, b'not an image')]
        for key in keys:
            wait_record(a, key=key, timeout=30)
        wait_for(lambda: len(messages(self.receiver.on('/down'))) == 2, timeout=10,
                   what='both first attempts refused')
        a.kill9()
        first = messages(self.receiver.on('/down'))
        self.receiver.down = False
        # Its list differs (as in a rolling update that adds a receiver first): deliveries
        # follow their receiver, not their place in the list.
        (b,) = start_replicas(1, S3, DDB, table=group.table, src_bucket=a.src_bucket,
                              dest_bucket=a.dest_bucket,
                              env={'WEBHOOK_URLS': self.receiver.url('/ok') + ',' +
                                   self.receiver.url('/down'), 'WEBHOOK_SECRET': SECRET_NEW})
        self.addCleanup(b.close)
        wait_for(lambda: all(len(v) >= 2 for v in messages(
            self.receiver.on('/down')).values()), timeout=20,
            what='the dead replica\'s deliveries sent by the new one')
        after = messages(self.receiver.on('/down'))
        self.assertEqual(sorted(after), sorted(first), 'the same webhook-ids, no new message')
        for msg_id, reqs in after.items():
            self.assertEqual(reqs[0]['body'], reqs[-1]['body'])
            self.check_signed(reqs[-1], [SECRET_NEW])
        self.assertEqual(sorted(json.loads(r[0]['body'])['type'] for r in after.values()),
                         ['image.done', 'image.failed'])
        wait_for(lambda: metric(metrics_text(b), 'resizer_webhook_deliveries_total',
                                  'outcome="delivered"') == 2, timeout=5,
                   what='both counted as delivered by the new replica')
        wait_for(lambda: metric(metrics_text(b), 'resizer_webhook_queue_depth') == 0,
                   timeout=10, what='the shared outbox empty')
        time.sleep(1)
        self.assertEqual({k: len(v) for k, v in messages(self.receiver.on('/down')).items()},
                         {k: len(v) for k, v in after.items()}, 'nothing sent twice once 2xx')
        self.assertEqual(self.receiver.on('/ok'), [], 'a delivery sent to another receiver')

    def test_two_replicas_send_each_message_once(self):
        group = self.replicas(2, ['/ok'])
        keys = [self.submit(group[i % 2], JPEG) for i in range(4)]
        for key in keys:
            wait_record(group[0], key=key, timeout=30)
        wait_for(lambda: len(self.receiver.on('/ok')) >= 4, timeout=15,
                   what='four deliveries')
        time.sleep(scaled(6))  # past a poll of the other replica's threads
        got = messages(self.receiver.on('/ok'))
        self.assertEqual(len(got), 4, got)
        self.assertEqual([len(v) for v in got.values()], [1] * 4, 'a message sent twice')
        self.assertEqual({json.loads(v[0]['body'])['data']['source']['key'] for v in got.values()},
                         set(keys))

    def test_shared_outbox_discards_items_it_did_not_write(self):
        # Items in a receiver's partition of the outbox written by someone else (the table is
        # shared): more of them than one look reads, due first, of every wrong shape. They are
        # dropped, and the real delivery goes out.
        group = self.replicas(1, ['/ok'])
        ddb = DDB.client()
        rx = hashlib.sha256(self.receiver.url('/ok').encode()).hexdigest()[:16]
        bogus = [('o#../../etc#' + rx, '1'), ('o#msg_x#99', '2'), ('o#', '3'),
                 ('x#msg_0#' + rx, '4'), ('o#msg_%032x#%s' % (1, rx.upper()), '5'),
                 ('o#msg_%032x#%s' % (2, rx), '1.5'), ('o#msg_%032x#%s' % (3, rx), '6e0')]
        bogus += [('o#msg_%032x#%s' % (10 + i, rx), str(10 + i)) for i in range(30)]  # no body
        for i, (pk, lease) in enumerate(bogus):
            item = {'pk': {'S': pk}, 'fl': {'S': 'o#' + rx}, 'lease': {'N': lease}}
            if i < 7:
                item['b'] = {'S': '{}'}
                item['att'] = {'N': '0'}
            ddb.put_item(TableName=group.table, Item=item)
        key = self.submit(group[0], JPEG)
        wait_record(group[0], key=key, timeout=30)
        def delivered():
            return [json.loads(r['body']) for r in self.receiver.on('/ok')]
        wait_for(lambda: key in [m.get('data', {}).get('source', {}).get('key')
                                   for m in delivered()], timeout=20,
                   what='the real delivery past the foreign items')
        # Well-formed foreign deliveries (the two with odd leases) are sent as they are: only
        # a writer with the table's rights can make them. The malformed are never sent.
        self.assertLessEqual(len(delivered()), 3, delivered())
        # Empty once the real delivery is settled too (it is removed after its 2xx).
        wait_for(lambda: ddb.query(TableName=group.table, IndexName='in_flight',
                                   KeyConditionExpression='fl = :o',
                                   ExpressionAttributeValues={':o': {'S': 'o#' + rx}})
                 ['Items'] == [], timeout=10, what='no foreign item left in the outbox')
        self.assertIn('"outbox_bad_item"', group[0].log_text())
        self.assertEqual(http('GET', group[0].url('/healthz'))[0], 200)

    def test_readme_example_fits_the_contract(self):
        msg = json.loads(readme_block('json'))
        c = contract.shared()
        op = c.doc['webhooks']['imageDone']['post']
        c._validator(op['requestBody']['content']['application/json']['schema']).validate(msg)

    def test_bad_settings_refused_at_start(self):
        cases = [
            ({'WEBHOOK_URLS': 'http://example.com/hook', 'WEBHOOK_SECRET': SECRET_NEW},
             'WEBHOOK_URLS: may use http:// only to a loopback host'),
            ({'WEBHOOK_URLS': self.receiver.url('/ok')}, 'WEBHOOK_SECRET: is required'),
            ({'WEBHOOK_URLS': self.receiver.url('/ok'), 'WEBHOOK_SECRET': 'whsec_c2hvcnQ='},
             'WEBHOOK_SECRET: after whsec_'),
        ]
        for env, want in cases:
            svc = Resizer(S3, env=env, start=False)
            self.addCleanup(svc.close)
            svc.start(wait=False)
            self.assertEqual(svc.wait_exit(), 2, svc.log_text())
            self.assertIn(want, svc.log_text())
            self.assertNotIn('c2hvcnQ', svc.log_text())


if __name__ == '__main__':
    unittest.main(verbosity=2)
