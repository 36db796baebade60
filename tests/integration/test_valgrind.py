#!/usr/bin/python3
"""The Release build under valgrind memcheck through one representative life: start, an
upload URL, the upload, its event, the job to `done`, status and a variant redirect, a
malformed request, metrics, then SIGTERM and a clean exit. No invalid read or write, no use of
uninitialised memory, no definitely lost block.

Registered for the Release build only: memcheck cannot run an ASan binary, and the sanitizer
build has ASan and LeakSanitizer for the same purpose. No suppressions are needed (none of
glib's or libvips' process-lifetime allocations counts as definitely lost).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

from harness import (API_TOKEN, Resizer, S3Server, SOURCE_DIR, http, json_http)
from fixtures import AUTH, announce, sanitized, wait_record

VALGRIND = shutil.which('valgrind')
# Under memcheck the service runs 10-50x slower: generous fixed timeouts.
START_TIMEOUT = 180
JOB_TIMEOUT = 300


class ValgrindTest(unittest.TestCase):
    def test_one_life_under_memcheck(self):
        if sanitized():
            self.skipTest('memcheck cannot run an ASan build (it has LeakSanitizer instead)')
        self.assertTrue(VALGRIND, 'valgrind is not installed (deploy/packages/test.txt)')
        tmp = tempfile.mkdtemp(prefix='resizer-valgrind-')
        try:
            self.run_life(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def run_life(self, tmp):
        subprocess.run([os.path.join(SOURCE_DIR, 'tests', 'corpus', 'make_corpus.sh'),
                        os.path.join(tmp, 'corpus')], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(tmp, 'corpus', 'photo.jpg'), 'rb') as f:
            photo = f.read()
        log = os.path.join(tmp, 'memcheck.log')
        wrapper = [VALGRIND, '--tool=memcheck', '--leak-check=full', '--error-exitcode=1',
                   '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite',
                   '--num-callers=40', '--log-file=' + log]
        with S3Server() as s3, Resizer(s3, env={'WORKERS': '1', 'LOG_LEVEL': 'info',
                                                 'G_SLICE': 'always-malloc'},
                                       wrapper=wrapper, ready_timeout=START_TIMEOUT) as svc:
            self.drive(svc, photo)
            code = svc.stop(signal.SIGTERM, timeout=120)
            with open(log) as f:
                report = f.read()
            sys.stderr.write('\nmemcheck: %s\n' % '; '.join(
                l.split('== ', 1)[-1].strip() for l in report.splitlines()
                if 'ERROR SUMMARY' in l or 'definitely lost' in l or 'total heap usage' in l))
            self.assertEqual(code, 0, report[-6000:])
            self.assertRegex(report, r'ERROR SUMMARY: 0 errors from 0 contexts')
            lost = re.search(r'definitely lost: ([\d,]+) bytes', report)
            self.assertTrue(lost is None or lost.group(1) == '0', report[-6000:])

    def drive(self, svc, photo):
        status, _, up = json_http('POST', svc.url('/v1/uploads'), headers=AUTH, timeout=60,
                                  obj={'filename': 'cat.jpg', 'content_type': 'image/jpeg'})
        self.assertEqual(status, 201, up)
        status, _, body = http('PUT', up['upload']['url'], headers=up['upload']['headers'],
                               body=photo, timeout=60)
        self.assertEqual(status, 200, body)
        self.assertEqual(announce(svc, up['key'], len(photo), timeout=60)[0], 202)
        rec = wait_record(svc, key=up['key'], timeout=JOB_TIMEOUT)
        self.assertEqual(rec['state'], 'done', rec)
        status, _, rec = json_http('GET', svc.url('/v1/images/' + up['id']), headers=AUTH,
                                   timeout=60)
        self.assertEqual(status, 200)
        self.assertTrue(all(v['url'] for v in rec['variants']))
        status, headers, _ = http('GET', svc.url('/v1/images/%s/variants/phone' % up['id']),
                                  headers={'Authorization': 'Bearer ' + API_TOKEN}, timeout=60)
        self.assertEqual(status, 302)
        status, _, _ = json_http('POST', svc.url('/v1/uploads'), headers=AUTH, timeout=60,
                                 body=b'{"filename":"a\xff"}')
        self.assertEqual(status, 400)
        self.assertEqual(http('GET', svc.url('/metrics'), timeout=60)[0], 200)
        self.assertEqual(http('GET', svc.url('/readyz'), timeout=60)[0], 200)


if __name__ == '__main__':
    unittest.main(verbosity=2)
