#!/usr/bin/python3
"""Status as a client and an operator see it, against the real binary and the local S3:
the states an upload walks through, variant downloads (presigned urls and the redirect),
listing pages, retry of a failure, a second replica answering from the status records in S3,
and the reconcile sweep finishing the work a kill -9 left queued, without any new event."""

import os
import shutil
import subprocess
import tempfile
import unittest
import uuid

from fixtures import (AUTH, TERMINAL, announce, assert_error, get_record, metric,
                      metrics_text, next_sequencer, post_event, put_source,
                      records_event, s3_record, wait_for, wait_record)
from harness import API_TOKEN, SOURCE_DIR, Resizer, S3Server, http, json_http

VARIANTS = {'desktop': 1920, 'tablet': 1024, 'phone': 640}
STATES = ['pending', 'queued', 'processing', 'done']

s3 = None
corpus = None


def setUpModule():
    global s3, corpus
    s3 = S3Server()
    corpus = tempfile.mkdtemp(prefix='resizer-status-corpus-')
    subprocess.run([os.path.join(SOURCE_DIR, 'tests', 'corpus', 'make_corpus.sh'), corpus],
                   check=True, stdout=subprocess.DEVNULL)


def tearDownModule():
    shutil.rmtree(corpus, ignore_errors=True)
    s3.close()


def image_bytes(name):
    with open(os.path.join(corpus, name), 'rb') as f:
        return f.read()


# -- talking to the service -------------------------------------------------------------------

def api(svc, method, path, headers=AUTH, obj=None):
    return json_http(method, svc.url(path), obj=obj, headers=headers)


def put_image(svc, key, name):
    """A direct upload of corpus file name into the source bucket (not through the API);
    returns (size, etag)."""
    return put_source(svc, key, image_bytes(name))


def send_event(svc, event):
    """post_event(), which must be taken (202); returns the answer's body."""
    code, _, body = post_event(svc, event)
    if code != 202:
        raise AssertionError('POST /v1/events -> %d %r' % (code, body))
    return body


def direct_records(svc, objs):
    """One Records notification for objs [(key, (size, etag))], in order."""
    return records_event(s3_record(bucket=svc.src_bucket, key=k, size=size, etag=etag,
                                   sequencer=next_sequencer()) for k, (size, etag) in objs)


def upload_direct(svc, keys, name):
    """Direct uploads of corpus file name under each key, then one Records event for all."""
    return send_event(svc, direct_records(svc, [(k, put_image(svc, k, name)) for k in keys]))


# -- downloads, with curl as a client would ---------------------------------------------------

def curl(args, out):
    proc = subprocess.run(['curl', '-sS', '-o', out, '-w', '%{http_code}'] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if proc.returncode != 0:
        raise AssertionError('curl %s failed: %s' % (args, proc.stderr.decode()))
    return int(proc.stdout)


def image_size(path):
    """(width, height) of an image file, read by libvips; raises on anything else."""
    out = subprocess.run(['vipsheader', '-f', 'width', path], check=True,
                         stdout=subprocess.PIPE).stdout
    width = int(out)
    out = subprocess.run(['vipsheader', '-f', 'height', path], check=True,
                         stdout=subprocess.PIPE).stdout
    return width, int(out)


class Downloads:
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='resizer-status-dl-')

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def assert_variants_download(self, rec, source_width):
        """Every variant of a done record has a url that curl downloads as a valid image of
        the variant's width (never wider than the source)."""
        self.assertEqual(rec['state'], 'done', rec)
        names = sorted(v['name'] for v in rec['variants'])
        self.assertEqual(names, sorted(VARIANTS))
        for v in rec['variants']:
            self.assertTrue(v.get('url'), v)
            out = os.path.join(self.tmp, v['name'] + '.img')
            self.assertEqual(curl([v['url']], out), 200, v)
            w, h = image_size(out)
            self.assertEqual(w, min(VARIANTS[v['name']], source_width), v)
            self.assertEqual((w, h), (v['width'], v['height']))
            self.assertEqual(os.path.getsize(out), v['bytes'])


# -- 1 and 3: one image through its states; retry ----------------------------------------------

class StatusWalkTest(Downloads, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Resizer(s3, env={'WORKERS': '1'})

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()

    def new_upload(self):
        code, _, body = api(self.svc, 'POST', '/v1/uploads',
                            obj={'filename': 'cat.jpg', 'content_type': 'image/jpeg'})
        self.assertEqual(code, 201, body)
        return body

    def test_states_in_order_then_variants_download(self):
        svc = self.svc
        up = self.new_upload()
        image_id = up['id']
        seen = [get_record(svc, image_id=image_id)['state']]
        self.assertEqual(seen, ['pending'])
        # Keep the one worker busy so the upload is seen waiting, then working.
        upload_direct(svc, ['images/walk-blocker-%d.jpg' % i for i in range(3)], 'photo.jpg')
        code, _, data = http('PUT', up['upload']['url'], headers=up['upload']['headers'],
                             body=image_bytes('photo.jpg'))
        self.assertEqual(code, 200, data)
        self.assertEqual(announce(svc, up['key'])[0], 202)

        def walked():
            rec = get_record(svc, image_id=image_id)
            if rec['state'] != seen[-1]:
                seen.append(rec['state'])
            return rec if rec['state'] in TERMINAL else None
        rec = wait_for(walked, 90, what='the upload to finish', interval=0.01)
        # An ordered walk: never back, never skipping to the end unseen.
        self.assertEqual(seen[-1], 'done', (seen, rec))
        self.assertEqual(seen, [s for s in STATES if s in seen], seen)
        self.assertGreaterEqual(len(seen), 3, seen)
        self.assertEqual(rec['source']['key'], up['key'])
        self.assertEqual(rec['source']['filename'], 'cat.jpg')
        self.assertEqual((rec['source']['width'], rec['source']['height']), (2000, 1500))
        self.assertIsNone(rec['error'])
        self.assertEqual(rec['attempts'], 1)
        for field in ('created_at', 'started_at', 'finished_at'):
            self.assertRegex(rec[field], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')
        self.assertTrue(rec['created_at'] <= rec['started_at'] <= rec['finished_at'], rec)
        self.assert_variants_download(rec, 2000)

        # The redirect, followed by curl -L with the same token.
        out = os.path.join(self.tmp, 'phone-redirect.jpg')
        code = curl(['-L', '-H', 'Authorization: Bearer ' + API_TOKEN,
                     svc.url('/v1/images/%s/variants/phone' % image_id)], out)
        with open(out, 'rb') as f:
            self.assertEqual(code, 200, f.read()[:300])
        self.assertEqual(image_size(out), (640, 480))
        code, headers, _ = http('GET', svc.url('/v1/images/%s/variants/phone' % image_id),
                                headers=AUTH)
        self.assertEqual(code, 302)
        self.assertIn('X-Amz-Signature=', headers['location'])

        assert_error(api(svc, 'GET', '/v1/images/%s/variants/poster' % image_id), 404,
                     'not_found')

    def test_variant_of_unfinished_image_is_404(self):
        up = self.new_upload()
        assert_error(api(self.svc, 'GET', '/v1/images/%s/variants/phone' % up['id']), 404,
                     'not_found')
        self.assertEqual(get_record(self.svc, image_id=up['id'])['variants'], [])

    def test_failure_then_retry_after_fixing_the_object(self):
        svc = self.svc
        key = 'images/retry-%s.jpg' % uuid.uuid4().hex[:8]
        upload_direct(svc, [key], 'truncated.jpg')
        rec = wait_record(svc, key=key, timeout=90)
        self.assertEqual(rec['state'], 'failed', rec)
        self.assertEqual(rec['error']['code'], 'corrupt_image', rec)
        self.assertTrue(rec['error']['message'])
        self.assertEqual(rec['variants'], [])
        image_id = rec['id']
        self.assertEqual(get_record(svc, image_id=image_id)['state'], 'failed')
        assert_error(api(svc, 'GET', '/v1/images/%s/variants/phone' % image_id), 404,
                     'not_found')

        # The operator replaces the object and retries; no new event is sent.
        put_image(svc, key, 'small.jpg')
        code, _, body = api(svc, 'POST', '/v1/images/%s/retry' % image_id)
        self.assertEqual(code, 202, body)
        self.assertEqual(body, {'id': image_id, 'state': 'queued'})
        rec = wait_record(svc, image_id=image_id, timeout=90)
        self.assertEqual(rec['state'], 'done', rec)
        self.assertIsNone(rec['error'])
        self.assertEqual(rec['attempts'], 2)
        self.assertEqual((rec['source']['width'], rec['source']['height']), (500, 375))
        self.assert_variants_download(rec, 500)

        assert_error(api(svc, 'POST', '/v1/images/%s/retry' % image_id), 409, 'not_failed')
        assert_error(api(svc, 'POST', '/v1/images/%s/retry' % uuid.uuid4()), 404, 'not_found')
        assert_error(api(svc, 'POST', '/v1/images/not-an-id/retry'), 400, 'invalid_id')
        assert_error(api(svc, 'POST', '/v1/images/%s/retry' % image_id, headers={}), 401,
                     'unauthorized')


# -- 2: listing --------------------------------------------------------------------------------

class ListingTest(unittest.TestCase):
    N_DONE = 25
    N_FAILED = 5

    @classmethod
    def setUpClass(cls):
        cls.svc = Resizer(s3, env={'WORKERS': '2'})
        svc = cls.svc
        # In one order, in three batches: done and failed images interleaved.
        cls.keys = ['images/list/%02d.jpg' % i for i in range(cls.N_DONE + cls.N_FAILED)]
        cls.failed_keys = set(cls.keys[3::6])
        objs = []
        for k in cls.keys:
            name = 'text.jpg' if k in cls.failed_keys else 'small.jpg'
            objs.append((k, put_image(svc, k, name)))
        for i in range(0, len(objs), 10):
            body = send_event(svc, direct_records(svc, objs[i:i + 10]))
            assert body['accepted'] == len(objs[i:i + 10]), body

        def all_finished():
            code, _, body = api(svc, 'GET', '/v1/images?limit=200')
            return len(body['items']) == len(cls.keys) and all(
                it['state'] in ('done', 'failed') for it in body['items'])
        wait_for(all_finished, 90, what='30 images finished', interval=0.2)

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()

    def pages(self, query):
        """Follows next_cursor from the first page; returns (items, number of pages)."""
        items, npages, cursor = [], 0, None
        while True:
            path = '/v1/images?' + query + ('&cursor=' + cursor if cursor else '')
            code, _, body = api(self.svc, 'GET', path)
            self.assertEqual(code, 200, body)
            self.assertLessEqual(len(body['items']), 7)
            npages += 1
            items += body['items']
            cursor = body['next_cursor']
            if cursor is None:
                return items, npages
            self.assertEqual(len(body['items']), 7, 'a short page before the end')
            self.assertLess(npages, 20, 'cursor loop')

    def test_pages_show_every_image_once_newest_first(self):
        items, npages = self.pages('limit=7')
        self.assertEqual(npages, 5)  # 7+7+7+7+2
        keys = [it['source']['key'] for it in items]
        self.assertEqual(keys, list(reversed(self.keys)))
        ids = [it['id'] for it in items]
        self.assertEqual(len(set(ids)), len(self.keys))
        created = [it['created_at'] for it in items]
        self.assertEqual(created, sorted(created, reverse=True))

    def test_state_filters(self):
        items, _ = self.pages('limit=7&state=done')
        self.assertEqual([it['source']['key'] for it in items],
                         [k for k in reversed(self.keys) if k not in self.failed_keys])
        for it in items:
            self.assertEqual(it['state'], 'done')
            self.assertEqual(len(it['variants']), 3)
            self.assertTrue(all(v.get('url') for v in it['variants']))
        items, _ = self.pages('limit=7&state=failed')
        self.assertEqual(sorted(it['source']['key'] for it in items), sorted(self.failed_keys))
        for it in items:
            self.assertEqual(it['state'], 'failed')
            self.assertEqual(it['error']['code'], 'unsupported_format')
        items, _ = self.pages('limit=7&state=queued')
        self.assertEqual(items, [])

    def test_bad_parameters_are_400(self):
        for query in ('limit=0', 'limit=201', 'limit=-1', 'limit=abc', 'limit=', 'state=bogus',
                      'state=DONE', 'cursor=zzz', 'cursor=', 'cursor=c' + 'f' * 40):
            with self.subTest(query):
                assert_error(api(self.svc, 'GET', '/v1/images?' + query), 400,
                             'invalid_parameter')
        for query in ('limit=1', 'limit=200'):
            code, _, body = api(self.svc, 'GET', '/v1/images?' + query)
            self.assertEqual(code, 200, (query, body))

    def test_ids_and_auth(self):
        assert_error(api(self.svc, 'GET', '/v1/images/%s' % uuid.uuid4()), 404, 'not_found')
        for bad in ('123', 'ZZZZZZZZ-d9cb-469f-a165-70867728950e',
                    '0F8FAD5B-D9CB-469F-A165-70867728950E', '0f8fad5b-d9cb-469f-a165-70867728950e0',
                    '0f8fad5b_d9cb_469f_a165_70867728950e', '..'):
            with self.subTest(bad):
                assert_error(api(self.svc, 'GET', '/v1/images/' + bad), 400, 'invalid_id')
        # No route takes a percent escape in its path: ids and names never need one.
        assert_error(api(self.svc, 'GET', '/v1/images/%2e%2e'), 404, 'not_found')
        for path in ('/v1/images', '/v1/images/%s' % uuid.uuid4(), '/v1/images?state=done'):
            for headers in ({}, {'Authorization': 'Bearer wrong-token-0123456789'},
                            {'Authorization': API_TOKEN}):
                refused = api(self.svc, 'GET', path, headers=headers)
                assert_error(refused, 401, 'unauthorized')
                self.assertIn('www-authenticate', refused[1])

    def test_by_key(self):
        key = self.keys[0]
        rec = get_record(self.svc, key=key)
        self.assertEqual(rec['source']['key'], key)
        self.assertEqual(rec['state'], 'done')
        self.assertIsNone(get_record(self.svc, key='images/list/nope.jpg'))


# -- 4: another replica ------------------------------------------------------------------------

class ReplicaTest(Downloads, unittest.TestCase):
    def test_second_replica_reads_status_from_s3(self):
        first = Resizer(s3, env={'WORKERS': '1'})
        second = Resizer(s3, env={'WORKERS': '1'}, src_bucket=first.src_bucket,
                         dest_bucket=first.dest_bucket)
        try:
            self.assertNotEqual(first.port, second.port)
            code, _, up = api(first, 'POST', '/v1/uploads',
                              obj={'filename': 'dog.jpg', 'content_type': 'image/jpeg'})
            self.assertEqual(code, 201, up)
            code, _, _ = http('PUT', up['upload']['url'], headers=up['upload']['headers'],
                              body=image_bytes('small.jpg'))
            self.assertEqual(code, 200)
            self.assertEqual(announce(first, up['key'])[0], 202)
            done = wait_record(first, image_id=up['id'])
            self.assertEqual(done['state'], 'done', done)
            failed_key = 'images/replica-bad.jpg'
            upload_direct(first, [failed_key], 'text.jpg')
            failed = wait_record(first, key=failed_key)

            # The second replica never saw these events.
            rec = get_record(second, image_id=up['id'])
            self.assertEqual(rec['state'], 'done')
            for field in ('id', 'source', 'attempts', 'created_at', 'finished_at'):
                self.assertEqual(rec[field], done[field], field)
            self.assertEqual([(v['name'], v['key'], v['width']) for v in rec['variants']],
                             [(v['name'], v['key'], v['width']) for v in done['variants']])
            self.assert_variants_download(rec, 500)
            rec = get_record(second, key=up['key'])
            self.assertEqual(rec['id'], up['id'])
            self.assert_variants_download(rec, 500)
            out = os.path.join(self.tmp, 'r.jpg')
            code = curl(['-L', '-H', 'Authorization: Bearer ' + API_TOKEN,
                         second.url('/v1/images/%s/variants/tablet' % up['id'])], out)
            self.assertEqual(code, 200)
            self.assertEqual(image_size(out), (500, 375))

            # (Its copy in S3 is written a moment after the first replica shows it.)
            rec = wait_for(lambda: get_record(second, key=failed_key), 10,
                           what='the second replica to read the failed record', interval=0.5)
            self.assertEqual(rec['id'], failed['id'])
            self.assertEqual(rec['state'], 'failed')
            self.assertEqual(rec['error'], failed['error'])
            # Unknown on both: still a 404 from the second, not an error.
            assert_error(api(second, 'GET', '/v1/images/%s' % uuid.uuid4()), 404, 'not_found')
            self.assertIsNone(get_record(second, key='images/never.jpg'))
        finally:
            second.close()
            first.close()


class ReplicaRefreshTest(unittest.TestCase):
    def test_cached_copy_follows_a_retry_on_the_other_replica(self):
        first = Resizer(s3, env={'WORKERS': '1'})
        second = Resizer(s3, env={'WORKERS': '1'}, src_bucket=first.src_bucket,
                         dest_bucket=first.dest_bucket)
        try:
            key = 'images/refresh.jpg'
            upload_direct(first, [key], 'text.jpg')
            failed = wait_record(first, key=key)
            self.assertEqual(failed['state'], 'failed')
            # now cached. (The first replica shows the record a moment before its copy in S3
            # is written, and an id the second does not find stays unknown there for 2 s.)
            wait_for(lambda: get_record(second, image_id=failed['id'])['state'] == 'failed', 10,
                     what='the second replica to read the failed record', interval=0.5)
            put_image(first, key, 'small.jpg')
            code, _, body = api(first, 'POST', '/v1/images/%s/retry' % failed['id'])
            self.assertEqual(code, 202, body)
            self.assertEqual(wait_record(first, image_id=failed['id'])['state'], 'done')
            # The second replica's copy is re-read once it is 10 s old.
            wait_for(lambda: get_record(second, image_id=failed['id'])['state'] == 'done', 20,
                     what='the second replica to see the retry', interval=0.5)
        finally:
            second.close()
            first.close()


class StatusUrlSurvivesTest(unittest.TestCase):
    """The id handed out by POST /v1/uploads is the id the job keeps, even when the event
    reaches another replica or a restarted process that never saw the upload."""

    def test_status_url_answers_after_restart_and_on_another_replica(self):
        first = Resizer(s3, env={'WORKERS': '1'})
        other = None
        try:
            code, _, up = api(first, 'POST', '/v1/uploads',
                              obj={'filename': 'cat.jpg', 'content_type': 'image/jpeg'})
            self.assertEqual(code, 201, up)
            code, _, _ = http('PUT', up['upload']['url'], headers=up['upload']['headers'],
                              body=image_bytes('small.jpg'))
            self.assertEqual(code, 200)
            first.kill9()
            # The event arrives at a replica that never saw the upload.
            other = Resizer(s3, env={'WORKERS': '1'}, src_bucket=first.src_bucket,
                            dest_bucket=first.dest_bucket)
            self.assertEqual(announce(other, up['key'])[0], 202)
            rec = wait_record(other, image_id=up['id'])
            self.assertEqual(rec['state'], 'done', rec)
            self.assertEqual(rec['source']['key'], up['key'])
            # And the restarted first replica answers the same status_url from S3.
            first.start()
            code, _, rec = api(first, 'GET', up['status_url'])
            self.assertEqual(code, 200, rec)
            self.assertEqual((rec['id'], rec['state']), (up['id'], 'done'))
        finally:
            if other:
                other.close()
            first.close()


# -- 5 and 6: kill -9 with jobs queued; the sweep finishes them ---------------------------------

class CrashReconcileTest(unittest.TestCase):
    N = 20

    def test_sweep_after_kill9_finishes_queued_uploads(self):
        svc = Resizer(s3, env={'WORKERS': '1', 'RECONCILE_INTERVAL': '0'})
        try:
            keys = ['images/crash/%02d.jpg' % i for i in range(self.N)]
            objs = [(k, put_image(svc, k, 'photo.jpg')) for k in keys]
            body = send_event(svc, direct_records(svc, objs))
            svc.kill9()
            self.assertEqual(body['accepted'], self.N, body)
            done_before = self.finished(svc, keys)
            self.assertLess(len(done_before), self.N // 2,
                            'most jobs should have been queued at the crash')

            svc.env['RECONCILE_INTERVAL'] = '2'
            svc.start()
            wait_for(lambda: len(self.finished(svc, keys)) == self.N, 120,
                     what='all %d variants sets' % self.N, interval=0.5)
            for k in keys:
                rec = wait_record(svc, key=k, timeout=30)
                self.assertEqual(rec['state'], 'done', rec)
                self.assertEqual(len(rec['variants']), 3)

            # 6: the sweep shows in /metrics; no event reached this process.
            text = metrics_text(svc)
            self.assertGreaterEqual(
                metric(text, 'resizer_reconcile_sweeps_total', 'outcome="ok"'), 1)
            self.assertGreaterEqual(
                metric(text, 'resizer_reconcile_objects_total', 'kind="scanned"'),
                self.N)
            self.assertGreaterEqual(
                metric(text, 'resizer_reconcile_objects_total', 'kind="queued"'),
                self.N - len(done_before))
            self.assertGreaterEqual(
                metric(text, 'resizer_reconcile_duration_seconds_count'), 1)
            self.assertIn('# TYPE resizer_reconcile_sweeps_total counter', text)
            self.assertIn('# TYPE resizer_reconcile_duration_seconds histogram', text)
            self.assertEqual(
                metric(text, 'resizer_events_total', 'outcome="accepted"'), 0)
            # Later sweeps find nothing left to do: no second round of work.
            before = metric(text, 'resizer_reconcile_objects_total', 'kind="queued"')
            wait_for(lambda: metric(metrics_text(svc), 'resizer_reconcile_sweeps_total',
                                    'outcome="ok"') >= 2 +
                     metric(text, 'resizer_reconcile_sweeps_total', 'outcome="ok"'), 30,
                     what='two more sweeps', interval=0.5)
            after = metric(metrics_text(svc), 'resizer_reconcile_objects_total', 'kind="queued"')
            self.assertEqual(after, before)
        finally:
            svc.close()

    def test_sweeps_leave_finished_images_alone(self):
        """Images done within the second of their upload (S3 times are whole seconds) are
        not taken for overwritten ones by later sweeps."""
        svc = Resizer(s3, env={'WORKERS': '2', 'RECONCILE_INTERVAL': '1'})
        try:
            keys = ['images/quick/%02d.jpg' % i for i in range(6)]
            upload_direct(svc, keys, 'small.jpg')
            for k in keys:
                self.assertEqual(wait_record(svc, key=k)['state'], 'done')
            text = metrics_text(svc)
            sweeps = metric(text, 'resizer_reconcile_sweeps_total', 'outcome="ok"')
            wait_for(lambda: metric(metrics_text(svc), 'resizer_reconcile_sweeps_total',
                                    'outcome="ok"') >= sweeps + 3, 30,
                     what='three more sweeps', interval=0.3)
            text = metrics_text(svc)
            self.assertEqual(metric(text, 'resizer_jobs_total', 'outcome="done"'),
                             len(keys))
            self.assertEqual(
                metric(text, 'resizer_reconcile_objects_total', 'kind="queued"'), 0)
        finally:
            svc.close()

    @staticmethod
    def finished(svc, keys):
        """Source keys whose three variants are all in the destination bucket."""
        found = set()
        client = s3.client()
        for variant in VARIANTS:
            pages = client.get_paginator('list_objects_v2').paginate(
                Bucket=svc.dest_bucket, Prefix=variant + '/crash/')
            for page in pages:
                for obj in page.get('Contents', []):
                    found.add(obj['Key'])
        return [k for k in keys
                if all(k.replace('images/', v + '/', 1) in found for v in VARIANTS)]


if __name__ == '__main__':
    unittest.main(verbosity=2)
