#!/usr/bin/python3
"""test_replicas.py - several replicas on one S3 and one DynamoDB table (STATE_STORE=dynamodb)
give one answer, as a user sees it through any of them:

- the same event at two replicas: one claim, one job; the other answers 202 duplicates: 1;
- an image that finished (or failed) on one replica reads the same on every replica, by id,
  by key and in ?state= listings;
- kill -9 of a replica holding accepted jobs: the others re-claim them once the lease runs
  out (LEASE_SECONDS) and finish them, with the bucket sweep off;
- the store unreachable: /readyz 503, events 503 + Retry-After, no 202; once it is back the
  same replicas (no restart) take the redelivered events and finish them;
- a newer object while the old one is processing (its event at the other replica) is
  processed again when the running job ends;
- the bucket sweep (for events that never came) runs on one replica at a time;
- a caller's listing pages hold its own images only, and so do their cursors, however many
  newer images other callers have (by_uploader); a key item whose record is gone (TTL) does
  not stall events for that key, and a pending upload's key item expires with its record;
- `resizer --create-table` makes the schema the CloudFormation stack declares;
- (memory store) upload URLs beyond INDEX_MAX_ENTRIES never make an event answer 429.

Real parts only: the Swift S3 server, dynalite, the resizer binary, libvips' CLI for images.
"""

import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
from urllib.parse import quote

from fixtures import (AUTH, eventbridge_event, get_record, post_event, put_source, wait_for,
                      without_urls)
from harness import (DynamoServer, Resizer, S3Server, create_table, json_http, http, scaled,
                     start_replicas, unique_table)

S3 = None
DDB = None
WORK = None
LEASE = 3


def setUpModule():
    global S3, DDB, WORK
    S3 = S3Server()
    DDB = DynamoServer()
    WORK = tempfile.mkdtemp(prefix='resizer-replicas-')


def tearDownModule():
    DDB.close()
    S3.close()


def image(name, width, height):
    """A noise JPEG made by the vips CLI (noise: it costs real work to resize)."""
    path = os.path.join(WORK, name)
    if not os.path.exists(path):
        subprocess.run(['vips', 'gaussnoise', path + '[Q=80]', str(width), str(height)],
                       check=True)
    with open(path, 'rb') as f:
        return f.read()


def post(svc, keys, size=1):
    """One EventBridge delivery per key, all to svc; returns [(status, headers, body)]."""
    return [post_event(svc, eventbridge_event(bucket=svc.src_bucket, key=key, size=size))
            for key in keys]


def states(svc, keys):
    return {k: (get_record(svc, key=k) or {}).get('state') for k in keys}


def wait_all(svc, keys, state, timeout):
    return wait_for(lambda: all(s == state for s in states(svc, keys).values()), timeout,
                    what='%s %s on %r' % (keys, state, svc), interval=0.3)


class Replicas(unittest.TestCase):

    def test_one_claim_one_answer(self):
        """Semantics 1 and 4: the same event at both replicas is one job; done and failed
        images look the same from either replica, by id, by key and listed by state."""
        with start_replicas(2, S3, DDB, env={'LEASE_SECONDS': str(LEASE)}) as (a, b):
            put_source(a, 'images/one.jpg', image('small.jpg', 400, 300))
            put_source(a, 'images/bad.jpg', b'not an image at all')
            ra = post(a, ['images/one.jpg'])[0]
            rb = post(b, ['images/one.jpg'])[0]
            self.assertEqual((ra[0], rb[0]), (202, 202), (ra, rb))
            self.assertEqual(sorted([ra[2]['accepted'], rb[2]['accepted']]), [0, 1], (ra, rb))
            self.assertEqual(sorted([ra[2]['duplicates'], rb[2]['duplicates']]), [0, 1])
            self.assertEqual(post(b, ['images/bad.jpg'])[0][0], 202)
            wait_all(a, ['images/one.jpg'], 'done', 20)
            wait_all(a, ['images/bad.jpg'], 'failed', 20)
            ra, rb = get_record(a, key='images/one.jpg'), get_record(b, key='images/one.jpg')
            self.assertEqual(ra['attempts'], 1, ra)
            # The same record, but for the presigned URLs (each replica signs its own, at its
            # own second), wherever they are: variants and their files.
            self.assertEqual(without_urls(ra), without_urls(rb))
            by_id = json_http('GET', b.url('/v1/images/' + ra['id']), headers=AUTH)
            self.assertEqual((by_id[0], by_id[2]['state']), (200, 'done'))
            for svc in (a, b):
                st, _, body = json_http('GET', svc.url('/v1/images?state=failed'), headers=AUTH)
                self.assertEqual(st, 200)
                self.assertEqual([i['source']['key'] for i in body['items']], ['images/bad.jpg'])
                self.assertEqual(body['items'][0]['error']['code'], 'unsupported_format')
            # One job ran for the doubled event: one replica counted it, the other not.
            jobs = [metric_sum(svc, 'resizer_jobs_total{outcome="done"}') for svc in (a, b)]
            self.assertEqual(sum(jobs), 1, jobs)

    def test_newer_object_while_processing_runs_again(self):
        """Semantics 2: a newer object (another etag, a newer sequencer) whose event reaches
        the other replica while the old one is processing is processed again when the
        running job ends: the record ends done with the new object's size and etag."""
        key = 'images/again.jpg'
        with start_replicas(2, S3, DDB, env={'LEASE_SECONDS': str(LEASE), 'WORKERS': '1'}) \
                as (a, b):
            put_source(a, key, image('huge.jpg', 4000, 3000))
            first = eventbridge_event(bucket=a.src_bucket, key=key, size=1, sequencer='0A')
            self.assertEqual(post_event(a, first)[2]['accepted'], 1)
            wait_for(lambda: states(b, [key])[key] == 'processing', 10,
                     what='the first run processing', interval=0.05)
            put_source(a, key, image('small.jpg', 400, 300))
            etag = a.s3.client().head_object(Bucket=a.src_bucket, Key=key)['ETag']
            newer = eventbridge_event(bucket=a.src_bucket, key=key, size=1, etag=etag.strip('"'),
                                      sequencer='0B')
            st, _, body = post_event(b, newer)
            self.assertEqual((st, body['accepted'], body['duplicates']), (202, 0, 1), body)
            wait_for(lambda: (get_record(b, key=key) or {}).get('attempts') == 2 and
                     states(b, [key])[key] == 'done', 30, what='the second run done', interval=0.3)
            rec = get_record(a, key=key)
            self.assertEqual((rec['source']['width'], rec['variants'][0]['width']), (400, 400))
            self.assertEqual(rec['source']['etag'].strip('"'), etag.strip('"'))

    def test_kill9_jobs_are_reclaimed(self):
        """Semantics 3: kill -9 with accepted jobs; the other replica finishes all of them
        within the lease time plus a few seconds, with the sweep off."""
        keys = ['images/k%d.jpg' % i for i in range(6)]
        with start_replicas(2, S3, DDB, env={'LEASE_SECONDS': str(LEASE), 'WORKERS': '1'}) as (a, b):
            data = image('big.jpg', 3000, 2250)
            for k in keys:
                put_source(a, k, data)
            self.assertTrue(all(r[0] == 202 and r[2]['accepted'] == 1 for r in post(a, keys)))
            a.kill9()
            killed = time.monotonic()
            at_kill = states(b, keys)
            self.assertNotEqual(set(at_kill.values()), {'done'}, at_kill)
            wait_all(b, keys, 'done', LEASE + 15)
            took = time.monotonic() - killed
            self.assertLess(took, scaled(LEASE + 15))
            print('kill -9 with %d of 6 not done: all done %.1f s later (lease %d s)'
                  % (sum(1 for s in at_kill.values() if s != 'done'), took, LEASE),
                  file=sys.stderr)
            self.assertGreaterEqual(metric_sum(b, 'resizer_reclaims_total'), 1)

    def test_sweep_is_one_replicas_repair_pass(self):
        """Semantics 8: uploads whose events never came are found by the sweep, run by one
        replica at a time (the lease item): each image is processed once, one replica sweeps
        and the other skips, and the sweep's LISTs are counted."""
        keys = ['images/lost%d.jpg' % i for i in range(3)]
        env = {'LEASE_SECONDS': str(LEASE), 'RECONCILE_INTERVAL': '1'}
        with start_replicas(2, S3, DDB, env=env) as (a, b):
            for k in keys:
                put_source(a, k, image('small.jpg', 400, 300))
            wait_all(a, keys, 'done', 30)
            time.sleep(2)
            self.assertEqual([get_record(b, key=k)['attempts'] for k in keys], [1, 1, 1])
            ok = [metric_sum(svc, 'resizer_reconcile_sweeps_total{outcome="ok"}')
                  for svc in (a, b)]
            skipped = [metric_sum(svc, 'resizer_reconcile_sweeps_total{outcome="skipped"}')
                       for svc in (a, b)]
            self.assertEqual(sorted(x > 0 for x in ok), [False, True], (ok, skipped))
            self.assertEqual(sorted(x > 0 for x in skipped), [False, True], (ok, skipped))
            sweeper = (a, b)[ok.index(max(ok))]
            self.assertGreater(metric_sum(sweeper, 'resizer_reconcile_requests_total'), 0)

    def test_store_outage(self):
        """Semantics 7: the store stops: /readyz 503, events 503 with Retry-After (never
        202); it comes back: the same replica, not restarted, takes the events again and
        every image ends done, once."""
        ddb = DynamoServer(private=True)
        try:
            with start_replicas(1, S3, ddb, env={'LEASE_SECONDS': str(LEASE)}) as (a,):
                put_source(a, 'images/o1.jpg', image('small.jpg', 400, 300))
                put_source(a, 'images/o2.jpg', image('small.jpg', 400, 300))
                self.assertEqual(post(a, ['images/o1.jpg'])[0][0], 202)
                wait_all(a, ['images/o1.jpg'], 'done', 20)
                ddb.stop()
                st, headers, _ = post(a, ['images/o2.jpg'])[0]
                self.assertEqual(st, 503)
                self.assertIn('retry-after', {k.lower() for k in headers})
                wait_for(lambda: http('GET', a.url('/readyz'))[0] == 503, 10,
                         what='/readyz 503 with the store down')
                up, _, _ = json_http('POST', a.url('/v1/uploads'),
                                     {'filename': 'x.jpg', 'content_type': 'image/jpeg'},
                                     headers=AUTH)
                self.assertEqual(up, 503)
                ddb.start()
                wait_for(lambda: http('GET', a.url('/readyz'))[0] == 200, 20,
                         what='/readyz 200 with the store back')
                self.assertEqual(post(a, ['images/o2.jpg'])[0][0], 202)
                wait_all(a, ['images/o1.jpg', 'images/o2.jpg'], 'done', 20)
                self.assertEqual(get_record(a, key='images/o2.jpg')['attempts'], 1)
                self.assertEqual(get_record(a, key='images/o1.jpg')['attempts'], 1)
        finally:
            ddb.close()


CALLERS = {'alice': 'alice-' + uuid.uuid4().hex, 'bob': 'bob-' + uuid.uuid4().hex}


def bearer(name):
    return {'Authorization': 'Bearer ' + CALLERS[name]}


def upload_url(svc, name):
    """POST /v1/uploads as name; returns the reply (id, key, upload)."""
    st, _, body = json_http('POST', svc.url('/v1/uploads'),
                            {'filename': 'a.jpg', 'content_type': 'image/jpeg'},
                            headers=bearer(name))
    assert st == 201, (st, body)
    return body


class SharedTenancy(unittest.TestCase):
    """Issue 13 on the shared store: named callers see only their own images."""

    def pages(self, svc, name, query):
        """Follows next_cursor; returns ([ids per page], [cursors])."""
        pages, cursors, cursor = [], [], None
        while len(pages) < 10:
            path = '/v1/images?' + query + ('&cursor=' + quote(cursor, safe='') if cursor else '')
            st, _, body = json_http('GET', svc.url(path), headers=bearer(name))
            self.assertEqual(st, 200, body)
            pages.append([i['id'] for i in body['items']])
            cursor = body['next_cursor']
            if cursor is None:
                return pages, cursors
            cursors.append(cursor)
        self.fail('%s: no last page after 10 (%r)' % (query, pages))

    def test_pages_and_cursors_hold_only_own_images(self):
        """alice has 2 upload entries, bob 6 newer ones: alice's ?limit=2 is her 2 on one
        page; no page or cursor of hers names one of bob's; filtered by state the same; bob
        pages through his 6 without an empty last page."""
        env = {'API_TOKENS': ','.join('%s:%s' % kv for kv in CALLERS.items())}
        with start_replicas(1, S3, DDB, env=env) as (svc,):
            alice = [upload_url(svc, 'alice')['id'] for _ in range(2)]
            time.sleep(0.01)
            bob = [upload_url(svc, 'bob')['id'] for _ in range(6)]
            for query, want in (('limit=2', [alice[::-1]]),
                                ('limit=1&state=pending', [[alice[1]], [alice[0]]]),
                                ('limit=2&state=done', [[]])):
                pages, cursors = self.pages(svc, 'alice', query)
                self.assertEqual(pages, want, query)
                for c in cursors:
                    named = re.fullmatch(r'd[0-9]{13}#([0-9a-f-]{36})', c)
                    self.assertTrue(named and named.group(1) in alice, (query, c))
            pages, _ = self.pages(svc, 'bob', 'limit=2')
            self.assertEqual(pages, [bob[5:3:-1], bob[3:1:-1], bob[1::-1]])
            # An admin still sees everyone's, newest first.
            st, _, body = json_http('GET', svc.url('/v1/images?limit=3'), headers=AUTH)
            self.assertEqual([i['id'] for i in body['items']], bob[5:2:-1])

    def test_key_items_never_name_a_missing_record(self):
        """A pending upload's key item expires with its record (the same ttl) and stops
        expiring when its event comes; a key item whose record is gone (TTL deleted it) is
        an unknown key: its event is taken (202) and the image ends done."""
        env = {'API_TOKENS': ','.join('%s:%s' % kv for kv in CALLERS.items())}
        with start_replicas(1, S3, DDB, env=env) as replicas:
            svc, ddb, table = replicas[0], DDB.client(), replicas.table
            up = upload_url(svc, 'alice')

            def item(pk):
                return ddb.get_item(TableName=table, Key={'pk': {'S': pk}},
                                    ConsistentRead=True).get('Item', {})
            key_pk = 'k#%s/%s' % (svc.src_bucket, up['key'])
            self.assertEqual(item(key_pk)['id']['S'], up['id'])
            self.assertEqual(item(key_pk).get('ttl'), item(up['id'])['ttl'])
            put_source(svc, up['key'], image('small.jpg', 400, 300))
            self.assertEqual(post(svc, [up['key']])[0][0], 202)
            wait_all(svc, [up['key']], 'done', 20)
            self.assertNotIn('ttl', item(key_pk))
            self.assertNotIn('ttl', item(up['id']))

            key = 'images/dangling-%s.jpg' % uuid.uuid4()
            ddb.put_item(TableName=table, Item={'pk': {'S': 'k#%s/%s' % (svc.src_bucket, key)},
                                                'id': {'S': str(uuid.uuid4())}})
            put_source(svc, key, image('small.jpg', 400, 300))
            st, _, body = post(svc, [key])[0]
            self.assertEqual((st, body and body['accepted']), (202, 1), body)
            wait_all(svc, [key], 'done', 20)


class Table(unittest.TestCase):

    def test_create_table_matches_the_stack(self):
        """`resizer --create-table` makes the schema deploy/cloudformation.yaml declares
        (test_deploy checks the template's side): the same keys, attribute types and indexes;
        running it again on the existing table succeeds."""
        table = unique_table('schema')
        create_table(DDB, table, env=S3.env())
        create_table(DDB, table, env=S3.env())
        t = DDB.client().describe_table(TableName=table)['Table']
        self.assertEqual({a['AttributeName']: a['AttributeType'] for a in t['AttributeDefinitions']},
                         {'pk': 'S', 'st': 'S', 'ck': 'S', 'all': 'S', 'fl': 'S', 'lease': 'N',
                          'up': 'S'})
        self.assertEqual(t['KeySchema'], [{'AttributeName': 'pk', 'KeyType': 'HASH'}])
        gsis = {g['IndexName']: [k['AttributeName'] for k in g['KeySchema']]
                for g in t['GlobalSecondaryIndexes']}
        self.assertEqual(gsis, {'by_state': ['st', 'ck'], 'by_time': ['all', 'ck'],
                                'by_uploader': ['up', 'ck'], 'in_flight': ['fl', 'lease']})
        self.assertEqual(t['BillingModeSummary']['BillingMode'], 'PAY_PER_REQUEST')

    def test_create_table_names_a_missing_index(self):
        """A table made before by_uploader existed: `resizer --create-table` fails, naming
        the index, rather than leave every caller's listing to fail one request at a time."""
        table, ddb = unique_table('old'), DDB.client()

        def gsi(name, hash_key, range_key):
            return {'IndexName': name, 'Projection': {'ProjectionType': 'ALL'},
                    'KeySchema': [{'AttributeName': hash_key, 'KeyType': 'HASH'},
                                  {'AttributeName': range_key, 'KeyType': 'RANGE'}]}
        ddb.create_table(
            TableName=table, BillingMode='PAY_PER_REQUEST',
            KeySchema=[{'AttributeName': 'pk', 'KeyType': 'HASH'}],
            AttributeDefinitions=[{'AttributeName': a, 'AttributeType': t} for a, t in
                                  (('pk', 'S'), ('st', 'S'), ('ck', 'S'), ('all', 'S'),
                                   ('fl', 'S'), ('lease', 'N'))],
            GlobalSecondaryIndexes=[gsi('by_state', 'st', 'ck'), gsi('by_time', 'all', 'ck'),
                                    gsi('in_flight', 'fl', 'lease')])
        with self.assertRaisesRegex(RuntimeError, 'has no index by_uploader'):
            create_table(DDB, table, env=S3.env())


class MemoryStore(unittest.TestCase):

    def test_uploads_never_block_events(self):
        """Semantics 6: more upload URLs than INDEX_MAX_ENTRIES; the next event is still
        taken (202), and the newest upload is still pending."""
        with Resizer(S3, env={'INDEX_MAX_ENTRIES': 100}) as svc:
            last = None
            for _ in range(150):
                st, _, body = json_http('POST', svc.url('/v1/uploads'),
                                        {'filename': 'a.jpg', 'content_type': 'image/jpeg'},
                                        headers=AUTH)
                self.assertEqual(st, 201, body)
                last = body['id']
            put_source(svc, 'images/direct.jpg', image('small.jpg', 400, 300))
            st, _, body = post(svc, ['images/direct.jpg'])[0]
            self.assertEqual((st, body['accepted']), (202, 1), body)
            st, _, body = json_http('GET', svc.url('/v1/images/' + last), headers=AUTH)
            self.assertEqual((st, body['state']), (200, 'pending'))
            wait_all(svc, ['images/direct.jpg'], 'done', 20)
            # Semantics 5, at intake: a key whose variant keys would pass S3's 1,024 bytes
            # fails for good at once (no job, nothing to retry), and the event is taken.
            long_key = 'images/' + 'k' * 1010 + '.jpg'
            st, _, body = post(svc, [long_key])[0]
            self.assertEqual((st, body['accepted']), (202, 1), body)
            rec = get_record(svc, key=long_key)
            self.assertEqual((rec['state'], rec['error']['code'], rec['attempts']),
                             ('failed', 'key_too_long', 0), rec)


def metric_sum(svc, name):
    """Sum of every sample whose name (with labels, if given) starts with name."""
    text = http('GET', svc.url('/metrics'))[2].decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith('#'):
            rest = line[len(name):]
            if rest.startswith(' ') or rest.startswith('{'):
                total += float(line.rsplit(' ', 1)[1])
    return total


if __name__ == '__main__':
    unittest.main(verbosity=2)
