#!/usr/bin/python3
"""A burst of EventBridge deliveries against a small queue: nothing is dropped, nothing is
done twice.

Setup: LOAD_KEYS small JPEGs (default 200) uploaded straight to the source bucket; the service
with QUEUE_SIZE=50 and one worker per CPU. event_burst (tests/load/event_burst.c, env
EVENT_BURST) delivers LOAD_RATE events/s for LOAD_SECONDS s (default 200/s for 5 s; the
README's figures come from tests/load/run: 500/s for 20 s), every key several times, and
redelivers each 429/503 after its Retry-After until all are taken, as EventBridge would.

Asserted: every response was 202, 429 or 503 (no timeout, no other status); every delivery
was finally taken; the service accepted each key exactly once (the 202 bodies' "accepted"
sum to the number of keys, resizer_jobs_total{outcome="done"} equals it, every status record
has attempts == 1); the destination holds exactly 3 variants per key and S3 saw exactly one
PUT of each (Swift's proxy log). Prints the figures, including the service's VmHWM.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'integration'))

from harness import EVENTS_API_KEY, Resizer, S3Server, scaled  # noqa: E402
from fixtures import (get_record, metric, metrics_text, proc_status_kb, sanitized,  # noqa: E402
                      wait_for)

RATE = float(os.environ.get('LOAD_RATE', '200'))
SECONDS = float(os.environ.get('LOAD_SECONDS', '5'))
KEYS = int(os.environ.get('LOAD_KEYS', '200'))
QUEUE_SIZE = 50
VARIANT_DIRS = ('desktop', 'tablet', 'phone')


def small_jpegs(tmp, n):
    """n distinct 320x240 JPEGs: crops of the test corpus's photograph, as bytes."""
    corpus = os.path.join(tmp, 'corpus')
    subprocess.run([os.path.join(HERE, '..', 'corpus', 'make_corpus.sh'), corpus], check=True,
                   stdout=subprocess.DEVNULL)
    out = []
    for i in range(n):
        path = os.path.join(tmp, 'img%d.jpg' % i)
        subprocess.run(['vips', 'extract_area', os.path.join(corpus, 'photo.jpg'),
                        path + '[Q=80,strip]', str(200 * i), str(150 * i), '320', '240'],
                       check=True)
        with open(path, 'rb') as f:
            out.append(f.read())
    return out


class LoadTest(unittest.TestCase):
    def test_burst_loses_nothing_and_does_nothing_twice(self):
        burst = os.environ.get('EVENT_BURST')
        self.assertTrue(burst and os.access(burst, os.X_OK),
                        'EVENT_BURST (%r) is not an executable; build event_burst' % burst)
        with tempfile.TemporaryDirectory(prefix='resizer-load-') as tmp, S3Server() as s3:
            svc = Resizer(s3, env={'QUEUE_SIZE': str(QUEUE_SIZE), 'WORKERS': str(os.cpu_count()),
                                   'LOG_LEVEL': 'warn'})
            try:
                self.run_burst(tmp, s3, svc, burst)
            finally:
                svc.close()

    def run_burst(self, tmp, s3, svc, burst):
        keys = ['images/load%04d.jpg' % i for i in range((KEYS))]
        images = small_jpegs(tmp, 8)
        client = s3.client()
        for i, key in enumerate(keys):
            client.put_object(Bucket=svc.src_bucket, Key=key, Body=images[i % len(images)],
                              ContentType='image/jpeg')
        keys_file = os.path.join(tmp, 'keys.txt')
        with open(keys_file, 'w') as f:
            f.write('\n'.join(keys) + '\n')
        start = time.monotonic()
        proc = subprocess.run([burst, '--url', svc.url('/v1/events'), '--api-key', EVENTS_API_KEY,
                               '--bucket', svc.src_bucket, '--keys', keys_file,
                               '--rate', str(RATE), '--seconds', str(SECONDS),
                               '--give-up', str(scaled(120))],
                              capture_output=True, text=True, timeout=SECONDS + scaled(240))
        report = json.loads(proc.stdout)
        sys.stderr.write('\nevent_burst: %s\n' % proc.stdout.strip())
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

        first = report['first']
        self.assertEqual(report['deliveries'], round(RATE * SECONDS))
        self.assertEqual(first['202'] + first['429'] + first['503'], report['deliveries'])
        self.assertEqual((first['other'], report['redelivered']['other'],
                          report['transport_errors'], report['unaccepted']), (0, 0, 0, 0))
        self.assertGreater(first['429'] + first['503'], 0,
                           'the queue never filled: the test did not test back-pressure')
        # Each key was accepted once; every other delivery of it was a duplicate.
        self.assertEqual(report['accepted'], len(keys))
        self.assertEqual(report['accepted'] + report['duplicates'], report['deliveries'])

        wait_for(lambda: metric(metrics_text(svc), 'resizer_jobs_total', 'outcome="done"')
                 >= len(keys), 180, what='every job done', interval=0.5)
        drained = time.monotonic() - start
        text = metrics_text(svc)
        self.assertEqual(metric(text, 'resizer_jobs_total', 'outcome="done"'), len(keys))
        self.assertEqual(metric(text, 'resizer_queue_depth'), 0)
        hwm_mb = proc_status_kb(svc.proc.pid, 'VmHWM') / 1024.0
        for key in keys:
            rec = get_record(svc, key=key)
            self.assertEqual((rec['state'], rec['attempts']), ('done', 1), rec)
        self.assert_each_variant_written_once(s3, svc, keys)
        sys.stderr.write('load: %d events/s for %.0f s, %d keys, queue %d, %d workers: '
                         'first answers 202=%d 429=%d 503=%d, %d redeliveries, all %d jobs '
                         'done %.1f s after the start; event latency p50 %.1f ms p99 %.1f ms; '
                         'VmHWM %.0f MB%s\n'
                         % (RATE, SECONDS, len(keys), QUEUE_SIZE, os.cpu_count(), first['202'],
                            first['429'], first['503'], sum(report['redelivered'].values()),
                            len(keys), drained, report['latency_ms']['p50'],
                            report['latency_ms']['p99'], hwm_mb,
                            ' (ASan build)' if sanitized() else ''))

    def assert_each_variant_written_once(self, s3, svc, keys):
        names = sorted('%s/%s' % (d, k[len('images/'):]) for k in keys for d in VARIANT_DIRS)
        found = []
        for d in VARIANT_DIRS:
            pages = s3.client().get_paginator('list_objects_v2').paginate(
                Bucket=svc.dest_bucket, Prefix=d + '/')
            found += [o['Key'] for page in pages for o in page.get('Contents', [])]
        self.assertEqual(sorted(found), names)
        # Swift logs one line per S3 request: count the variant PUTs into this test's bucket.
        put = re.compile(r' PUT /%s/(?:%s)/\S+ HTTP/1\.[01] 2\d\d ' % (
            re.escape(svc.dest_bucket), '|'.join(VARIANT_DIRS)))

        def puts():
            with open(s3.log_path(), errors='replace') as f:
                return sum(1 for line in f if put.search(line))
        wait_for(lambda: puts() >= len(names), 10, what='the S3 log to catch up')
        self.assertEqual(puts(), len(names))


if __name__ == '__main__':
    unittest.main(verbosity=2)
