#!/usr/bin/python3
"""Faults around the service, and nothing accepted is lost:

- S3 goes away while jobs are queued and running: each S3 call is retried with backoff, the
  jobs end `failed` / `upstream_error`, /readyz turns 503. S3 comes back: /readyz 200, and the
  failed jobs complete, through POST /v1/images/{id}/retry on one replica and on its own
  through the reconcile sweep (RECONCILE_INTERVAL=2) on another.
- S3 is slow or breaks connections (a TCP proxy in this test, between the service and
  Swift): S3_TIMEOUT fires, the job fails `upstream_error` in bounded time, the one worker is
  not stuck, and the failed jobs complete once the path is healthy.
- SIGTERM with a queue of slow jobs (WORKERS=1): the running job finishes, new events get 503
  + Retry-After while draining, the process exits 0 within SHUTDOWN_GRACE plus the job it was
  running; a restart's sweep processes what was still queued.
"""

import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

from fixtures import (AUTH, announce, assert_error, get_record, metric, metrics_text,
                      put_source, wait_for, wait_record)
from harness import S3Server, Resizer, SOURCE_DIR, json_http, scaled

VARIANT_DIRS = ('desktop/', 'tablet/', 'phone/')
_photo = None


def photo():
    """A 2000x1500 JPEG from the test corpus (made once per run)."""
    global _photo
    if _photo is None:
        tmp = tempfile.mkdtemp(prefix='resizer-faults-')
        subprocess.run([os.path.join(SOURCE_DIR, 'tests', 'corpus', 'make_corpus.sh'), tmp],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(tmp, 'photo.jpg'), 'rb') as f:
            _photo = f.read()
        subprocess.run(['rm', '-rf', tmp], check=True)
    return _photo


def variant_keys(s3, bucket):
    """Every variant object in the destination bucket (status records left out)."""
    keys = []
    for prefix in VARIANT_DIRS:
        listing = s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        keys += [o['Key'] for o in listing.get('Contents', [])]
    return sorted(keys)


def recorded_keys(s3, bucket):
    """The source keys whose by-key status record is in the destination bucket: the jobs
    that finished (a job cut after its variants but before its record is redone later)."""
    listing = s3.client().list_objects_v2(Bucket=bucket, Prefix='_status/keys/')
    return sorted('images/' + o['Key'][len('_status/keys/'):]
                  for o in listing.get('Contents', []))


def expected_variants(keys):
    return sorted(d + k[len('images/'):] for k in keys for d in VARIANT_DIRS)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of the S3 server. mode decides what happens to data
    coming back from S3 from now on (requests always go through):
      'pass'   forwarded as is
      'delay'  each response forwarded `delay` seconds late
      'stall'  dropped; the client hears nothing until it gives up
      'cut'    half of the next chunk is forwarded, then both connections are closed"""

    def __init__(self, upstream_port):
        self.upstream = ('127.0.0.1', upstream_port)
        self.mode = 'pass'
        self.delay = 0.0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, up), daemon=True).start()

    def _pump(self, client, up):
        socks = [client, up]
        answering = False  # S3 has started answering the last request
        try:
            while not self.closing:
                ready, _, _ = select.select(socks, [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        up.sendall(data)
                        answering = False
                    elif not self._to_client(client, data, answering):
                        return
                    else:
                        answering = True
        except OSError:
            return
        finally:
            client.close()
            up.close()

    def _to_client(self, client, data, answering):
        """Forwards (or not) one chunk from S3; False closes the connection."""
        mode = self.mode
        if mode == 'stall':
            return True
        if mode == 'cut':
            client.sendall(data[:len(data) // 2])
            return False
        if mode == 'delay' and not answering:
            time.sleep(self.delay)
        client.sendall(data)
        return True

    def close(self):
        self.closing = True
        self.listener.close()


class S3OutageTest(unittest.TestCase):
    def test_outage_then_recovery_loses_nothing(self):
        with S3Server(private=True) as s3:
            # One replica recovers by operator retries, the other by its sweep.
            by_api = Resizer(s3, env={'WORKERS': '1'})
            by_sweep = Resizer(s3, env={'WORKERS': '1', 'RECONCILE_INTERVAL': '2'})
            keys = {svc: ['images/out%d.jpg' % i for i in range(6)] for svc in (by_api, by_sweep)}
            for svc in (by_api, by_sweep):
                for key in keys[svc]:
                    put_source(svc, key, photo())
            # Queue work, then pull S3 away while it runs.
            for svc in (by_api, by_sweep):
                for key in keys[svc][:4]:
                    self.assertEqual(announce(svc, key, len(photo()))[0], 202)
            s3.stop()
            for svc in (by_api, by_sweep):
                for key in keys[svc][4:]:
                    self.assertEqual(announce(svc, key, len(photo()))[0], 202)
            failed = {}
            for svc in (by_api, by_sweep):
                recs = [wait_record(svc, key=k, timeout=60) for k in keys[svc]]
                failed[svc] = [r for r in recs if r['state'] == 'failed']
                self.assertGreaterEqual(len(failed[svc]), 2, recs)
                for r in failed[svc]:
                    self.assertEqual(r['error']['code'], 'upstream_error', r)
                self.assertEqual(json_http('GET', svc.url('/healthz'))[0], 200)
                wait_for(lambda: json_http('GET', svc.url('/readyz'))[0] == 503, 15,
                         what='/readyz 503 while S3 is down')
                # Every failed job tried its S3 call max_attempts (4) times before giving up.
                text = metrics_text(svc)
                errors = sum(metric(text, 'resizer_s3_requests_total',
                                    'op="%s",outcome="EUPSTREAM"' % op)
                             for op in ('GetObject', 'PutObject'))
                self.assertGreaterEqual(errors, 4 * len(failed[svc]), text)
            s3.start()
            for svc in (by_api, by_sweep):
                wait_for(lambda: json_http('GET', svc.url('/readyz'))[0] == 200, 20,
                         what='/readyz 200 once S3 is back')
            for r in failed[by_api]:
                status, _, body = json_http('POST', by_api.url('/v1/images/%s/retry' % r['id']),
                                            headers=AUTH)
                self.assertEqual(status, 202, body)
            for svc in (by_api, by_sweep):
                for key in keys[svc]:
                    rec = wait_record(svc, key=key, timeout=60)
                    self.assertEqual(rec['state'], 'done', rec)
                    self.assertEqual(len(rec['variants']), 3)
                self.assertEqual(variant_keys(s3, svc.dest_bucket),
                                 expected_variants(keys[svc]))
            by_api.close()
            by_sweep.close()


class SlowS3Test(unittest.TestCase):
    S3_TIMEOUT = 2

    @classmethod
    def setUpClass(cls):
        cls.s3 = S3Server()
        cls.proxy = FaultProxy(int(cls.s3.endpoint.rsplit(':', 1)[1]))
        # JOB_ATTEMPTS=1: the bounds below are those of one run of a job (S3's own retries);
        # further runs after a backoff are test_replicas' and test_status' business.
        cls.svc = Resizer(cls.s3, env={
            'WORKERS': '1', 'S3_TIMEOUT': str(cls.S3_TIMEOUT), 'JOB_ATTEMPTS': '1',
            'S3_ENDPOINT': 'http://127.0.0.1:%d' % cls.proxy.port})

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()
        cls.proxy.close()
        cls.s3.close()

    def run_one(self, key, mode):
        """Uploads key (straight to S3), sets the proxy mode, announces; returns the terminal
        record and the seconds it took."""
        put_source(self.svc, key, photo())
        self.proxy.mode = mode
        start = time.monotonic()
        self.assertEqual(announce(self.svc, key, len(photo()))[0], 202)
        rec = wait_record(self.svc, key=key, timeout=60)
        return rec, time.monotonic() - start

    def test_timeouts_and_cut_connections_fail_in_bounded_time(self):
        rec, _ = self.run_one('images/through.jpg', 'pass')
        self.assertEqual(rec['state'], 'done', rec)

        rec, secs = self.run_one('images/cut.jpg', 'cut')
        self.assertEqual((rec['state'], rec['error']['code']), ('failed', 'upstream_error'), rec)
        cut_secs = secs

        # Wait out the cut job's status write (it retries too) so the timing below is the
        # stalled job's own.
        self.proxy.mode = 'pass'
        wait_for(lambda: metric(metrics_text(self.svc), 'resizer_jobs_in_flight') == 0, 30,
                 what='the worker to be free')
        rec, secs = self.run_one('images/stall.jpg', 'stall')
        self.assertEqual((rec['state'], rec['error']['code']), ('failed', 'upstream_error'), rec)
        # Four attempts, each cut off by S3_TIMEOUT, plus at most 0.2+0.4+0.8 s of backoff.
        attempts = 4
        self.assertGreaterEqual(secs, attempts * self.S3_TIMEOUT - 0.5)
        self.assertLess(secs, attempts * self.S3_TIMEOUT + 1.4 + scaled(3))
        self.assertIn('imeout', rec['error']['message'])
        sys.stderr.write('\nslow S3: cut -> failed in %.1f s, stalled -> failed in %.1f s '
                         '(S3_TIMEOUT=%d)\n' % (cut_secs, secs, self.S3_TIMEOUT))

        # The path heals: the one worker is free again and the failures can be retried.
        rec, _ = self.run_one('images/after.jpg', 'pass')
        self.assertEqual(rec['state'], 'done', rec)
        for key in ('images/cut.jpg', 'images/stall.jpg'):
            failed = get_record(self.svc, key=key)
            status, _, body = json_http('POST', self.svc.url('/v1/images/%s/retry' % failed['id']),
                                        headers=AUTH)
            self.assertEqual(status, 202, body)
            self.assertEqual(wait_record(self.svc, key=key, timeout=60)['state'], 'done')


class StalledShutdownTest(unittest.TestCase):
    """A job stuck on a stalled S3 must not hold the process past its grace period: ECS
    kills at 30 s, while 4 attempts of a 30 s S3 timeout would take two minutes."""
    GRACE = 2

    def test_sigterm_cuts_a_stalled_job_at_the_end_of_the_grace(self):
        s3 = S3Server()
        proxy = FaultProxy(int(s3.endpoint.rsplit(':', 1)[1]))
        svc = Resizer(s3, env={'WORKERS': '1', 'SHUTDOWN_GRACE': str(self.GRACE),
                               'S3_TIMEOUT': '30',
                               'S3_ENDPOINT': 'http://127.0.0.1:%d' % proxy.port})
        try:
            put_source(svc, 'images/stuck.jpg', photo())
            proxy.mode = 'stall'
            self.assertEqual(announce(svc, 'images/stuck.jpg', len(photo()))[0], 202)
            wait_for(lambda: metric(metrics_text(svc), 'resizer_jobs_in_flight') == 1, 20,
                     what='the job to start')
            start = time.monotonic()
            svc.proc.send_signal(signal.SIGTERM)
            code = svc.wait_exit(timeout=self.GRACE + 20)
            elapsed = time.monotonic() - start
            self.assertEqual(code, 0, svc.log_text()[-3000:])
            # The grace, plus about a second for curl to notice the abort.
            self.assertLess(elapsed, self.GRACE + scaled(3))
            self.assertIn('"jobs_left":1', svc.log_text())
            sys.stderr.write('\nstalled S3 at SIGTERM: exit 0 after %.1f s (grace %d s)\n'
                             % (elapsed, self.GRACE))
            # Nothing is lost: after a restart the sweep does the job.
            proxy.mode = 'pass'
            svc.env['RECONCILE_INTERVAL'] = '2'
            svc.start()
            rec = wait_record(svc, key='images/stuck.jpg', timeout=60)
            self.assertEqual(rec['state'], 'done', rec)
        finally:
            svc.close()
            proxy.close()
            s3.close()


class StalledSweepShutdownTest(unittest.TestCase):
    """A sweep and a status look-up stuck on the stalled S3 too must not eat the running
    job's grace period: the drain asks the sweep to stop without waiting, and both are cut
    only after the jobs' grace."""
    GRACE = 3

    def test_sigterm_with_a_stuck_sweep_and_lookup_keeps_the_grace(self):
        s3 = S3Server()
        proxy = FaultProxy(int(s3.endpoint.rsplit(':', 1)[1]))
        svc = Resizer(s3, env={'WORKERS': '1', 'SHUTDOWN_GRACE': str(self.GRACE),
                               'S3_TIMEOUT': '30', 'RECONCILE_INTERVAL': '1',
                               'S3_ENDPOINT': 'http://127.0.0.1:%d' % proxy.port})
        lookup = []
        try:
            wait_for(lambda: metric(metrics_text(svc), 'resizer_reconcile_requests_total',
                                    'op="list"') >= 1, 10, what='a first sweep')
            proxy.mode = 'stall'
            put_source(svc, 'images/stuck2.jpg', photo())  # straight to S3, not through the proxy
            self.assertEqual(announce(svc, 'images/stuck2.jpg', len(photo()))[0], 202)
            wait_for(lambda: metric(metrics_text(svc), 'resizer_jobs_in_flight') == 1, 20,
                     what='the job to start')
            time.sleep(1.5)  # the next sweep's LIST is stalled too by now
            t = threading.Thread(target=lambda: lookup.append(json_http(
                'GET', svc.url('/v1/images/' + str(uuid.uuid4())), headers=AUTH,
                timeout=30)[0]))
            t.start()
            start = time.monotonic()
            svc.proc.send_signal(signal.SIGTERM)
            code = svc.wait_exit(timeout=self.GRACE + 40)
            elapsed = time.monotonic() - start
            t.join()
            self.assertEqual(code, 0, svc.log_text()[-3000:])
            self.assertGreaterEqual(elapsed, self.GRACE - 0.5)
            # Well under one S3_TIMEOUT (30 s) that a waited-for sweep would add.
            self.assertLess(elapsed, self.GRACE + scaled(4))
            self.assertIn(lookup[0], (404, 503), lookup)
            sys.stderr.write('\nstalled S3, sweep and look-up stuck at SIGTERM: exit 0 after '
                             '%.1f s (grace %d s)\n' % (elapsed, self.GRACE))
        finally:
            svc.close()
            proxy.close()
            s3.close()


class SigtermUnderLoadTest(unittest.TestCase):
    GRACE = 4
    S3_DELAY = 0.25  # per response from S3: a job (GET, 3 PUTs, 2 status PUTs) takes ~1.5 s

    def test_sigterm_drains_then_restart_finishes_the_queue(self):
        s3 = S3Server()
        proxy = FaultProxy(int(s3.endpoint.rsplit(':', 1)[1]))
        svc = Resizer(s3, env={'WORKERS': '1', 'SHUTDOWN_GRACE': str(self.GRACE),
                               'S3_ENDPOINT': 'http://127.0.0.1:%d' % proxy.port})
        try:
            self.run_drain(s3, proxy, svc)
        finally:
            svc.close()
            proxy.close()
            s3.close()

    def run_drain(self, s3, proxy, svc):
        keys = ['images/q%02d.jpg' % i for i in range(10)]
        for key in keys + ['images/late.jpg']:
            put_source(svc, key, photo())
        proxy.delay, proxy.mode = self.S3_DELAY, 'delay'
        for key in keys:
            self.assertEqual(announce(svc, key, len(photo()))[0], 202)
        running = wait_for(lambda: [k for k in keys
                                    if get_record(svc, key=k)['state'] == 'processing'], 20,
                           what='a job to start')[0]
        start = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        # While draining: events are refused with a redelivery hint, readiness is off,
        # liveness is on.
        refused = wait_for(
            lambda: (lambda r: r if r[0] == 503 else None)(announce(svc, 'images/late.jpg', 1)),
            5, what='503 for an event while draining', interval=0.05)
        assert_error(refused, 503, 'draining')
        self.assertTrue(int(refused[1]['retry-after']) > 0, refused[1])
        status, _, body = json_http('GET', svc.url('/readyz'))
        self.assertEqual(status, 503, body)
        self.assertIn('draining', body['reason'])
        self.assertEqual(json_http('GET', svc.url('/healthz'))[0], 200)
        code = svc.wait_exit(timeout=self.GRACE + 10)
        elapsed = time.monotonic() - start
        self.assertEqual(code, 0, svc.log_text()[-3000:])
        # The grace, plus the job that was running when it ran out (a job takes ~1.5 s here).
        self.assertLess(elapsed, self.GRACE + 6 * self.S3_DELAY + scaled(2.5))
        self.assertIn('"event":"stopped"', svc.log_text())
        done_first = variant_keys(s3, svc.dest_bucket)
        finished_first = recorded_keys(s3, svc.dest_bucket)
        self.assertLessEqual(len(finished_first) * 3, len(done_first))
        self.assertIn('desktop/' + running[len('images/'):], done_first,
                      'the job running at SIGTERM finished')
        self.assertLess(len(done_first), 3 * len(keys), 'the queue outlived the grace')
        sys.stderr.write('\nSIGTERM: exit 0 after %.1f s (grace %d s), %d of %d jobs done\n'
                         % (elapsed, self.GRACE, len(done_first) // 3, len(keys)))

        # Restart: the sweep finds what was still queued; the refused event is delivered
        # again, as EventBridge would. Nothing is done twice.
        proxy.mode = 'pass'
        svc.env['RECONCILE_INTERVAL'] = '2'
        svc.start()
        self.assertEqual(announce(svc, 'images/late.jpg', len(photo()))[0], 202)
        all_keys = keys + ['images/late.jpg']
        for key in all_keys:
            wait_for(lambda: (get_record(svc, key=key) or {}).get('state') == 'done' or
                     ('desktop/' + key[len('images/'):]) in done_first, 60, what='%s done' % key)
        wait_for(lambda: variant_keys(s3, svc.dest_bucket) == expected_variants(all_keys), 30,
                 what='every variant in S3')
        # A job whose record was written is never redone; one the grace cut between its
        # variants and its record is (its variants are overwritten with the same bytes).
        redone = metric(metrics_text(svc), 'resizer_jobs_total', 'outcome="done"')
        self.assertEqual(redone, len(all_keys) - len(finished_first))


if __name__ == '__main__':
    unittest.main(verbosity=2)
