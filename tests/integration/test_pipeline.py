#!/usr/bin/python3
"""Issue 4, event intake and the resize pipeline, as a client, EventBridge and an operator see
it: an image uploaded through a presigned PUT, its "Object Created" event posted exactly as
EventBridge sends it, and every variant read back from the destination bucket and inspected
(key, Content-Type, format, size, orientation, metadata, colour, alpha). Also the classic S3
Records shape with form-encoded keys, EventBridge's ambiguous key encoding, duplicates,
filtering, auth, malformed and oversized bodies, back-pressure with redelivery, the failure
codes of hostile files, and OUTPUT_FORMAT=webp. Real S3 (Swift), real binary, curl and
http.client; images from tests/corpus/make_corpus.sh."""

import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
import unittest
import uuid
from base64 import b64encode

from fixtures import (AUTH, assert_error, eventbridge_event, get_record, next_sequencer,
                      post_event, put_source, records_event, s3_record, wait_for, wait_record)
from harness import EVENTS_API_KEY, SOURCE_DIR, Resizer, S3Server, http, json_http, scaled

VARIANTS = (('desktop', 1920), ('tablet', 1024), ('phone', 640))  # the service's default
EXT = {'jpeg': 'jpg', 'png': 'png', 'webp': 'webp', 'gif': 'gif'}
MIME = {'jpeg': 'image/jpeg', 'png': 'image/png', 'webp': 'image/webp', 'gif': 'image/gif'}
LOADER_FORMAT = {'jpegload': 'jpeg', 'pngload': 'png', 'webpload': 'webp', 'gifload': 'gif',
                 'tiffload': 'tiff'}

# corpus name -> (upload Content-Type, variant format under OUTPUT_FORMAT=same, alpha kept)
CORPUS_VALID = {
    'photo.jpg': ('image/jpeg', 'jpeg', False),
    'photo_orient6.jpg': ('image/jpeg', 'jpeg', False),
    'small.jpg': ('image/jpeg', 'jpeg', False),
    'alpha.png': ('image/png', 'png', True),
    'photo.webp': ('image/webp', 'webp', True),
    'anim.gif': ('image/gif', 'gif', None),
    'photo16.tif': ('image/tiff', 'jpeg', False),
    'photo16.png': ('image/png', 'png', True),
    'cmyk_icc.jpg': ('image/jpeg', 'jpeg', False),
    'cmyk_noicc.jpg': ('image/jpeg', 'jpeg', False),
}

S3 = None
CORPUS = None
WORK = None


def setUpModule():
    global S3, CORPUS, WORK
    WORK = tempfile.mkdtemp(prefix='resizer-pipeline-')
    CORPUS = os.path.join(WORK, 'corpus')
    subprocess.run([os.path.join(SOURCE_DIR, 'tests', 'corpus', 'make_corpus.sh'), CORPUS],
                   check=True, stdout=subprocess.DEVNULL, timeout=120)
    S3 = S3Server()


def tearDownModule():
    if S3 is not None:
        S3.close()
    shutil.rmtree(WORK, ignore_errors=True)


def corpus(name):
    with open(os.path.join(CORPUS, name), 'rb') as f:
        return f.read()


# -- S3 and the service -----------------------------------------------------------------------

def source_object(svc, key):
    """(size, etag without quotes) of a source object."""
    head = S3.client().head_object(Bucket=svc.src_bucket, Key=key)
    return head['ContentLength'], head['ETag'].strip('"')


def upload_presigned(svc, name, content_type):
    """POST /v1/uploads, then curl PUTs the corpus file with exactly the URL and headers that
    came back (no credentials). Returns (id, key)."""
    status, _, up = json_http('POST', svc.url('/v1/uploads'), headers=AUTH,
                              obj={'filename': name, 'content_type': content_type,
                                   'method': 'PUT'})
    if status != 201 or up['upload']['method'] != 'PUT':
        raise AssertionError('POST /v1/uploads -> %d %r' % (status, up))
    args = ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'PUT',
            '--data-binary', '@' + os.path.join(CORPUS, name)]
    for k, v in up['upload']['headers'].items():
        args += ['-H', '%s: %s' % (k, v)]
    res = subprocess.run(args + [up['upload']['url']], capture_output=True, text=True,
                         timeout=60)
    if res.stdout != '200':
        raise AssertionError('presigned PUT of %s -> %s %s' % (name, res.stdout, res.stderr))
    return up['id'], up['key']


def stop_clean(svc):
    """SIGTERM, then: exit status 0 and no sanitizer report in the log (ASan, LSan at exit,
    UBSan), so a memory error anywhere in the pipeline fails the test."""
    try:
        code = svc.stop()
        log = svc.log_text()
        reports = [l for l in log.splitlines()
                   if 'Sanitizer' in l or 'runtime error:' in l]
        if code != 0 or reports:
            raise AssertionError('resizer exited with %r; sanitizer reports: %s\nLog tail:\n%s'
                                 % (code, reports[:5], '\n'.join(log.splitlines()[-30:])))
    finally:
        svc.close()


def jobs_total(svc):
    """Sum of resizer_jobs_total over its outcomes, from /metrics."""
    status, _, body = http('GET', svc.url('/metrics'))
    assert status == 200, status
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith('resizer_jobs_total{'):
            total += float(line.rsplit(' ', 1)[1])
    return total


# -- looking at image files ---------------------------------------------------------------------

def sniff(data):
    """The format named by the magic bytes, else None."""
    if data[:3] == b'\xff\xd8\xff':
        return 'jpeg'
    if data[:8] == b'\x89PNG\r\n\x1a\n':
        return 'png'
    if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        return 'webp'
    if data[:6] in (b'GIF87a', b'GIF89a'):
        return 'gif'
    return None


def jpeg_app_segments(data):
    """(marker, payload) of every segment before the scan data."""
    out, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:
            break
        length = struct.unpack('>H', data[pos + 2:pos + 4])[0]
        out.append((marker, data[pos + 4:pos + 2 + length]))
        pos += 2 + length
    return out


def png_chunk_types(data):
    out, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack('>I', data[pos:pos + 4])[0]
        out.append(data[pos + 4:pos + 8])
        pos += 12 + length
    return out


def webp_chunk_types(data):
    out, pos = [], 12
    while pos + 8 <= len(data):
        size = struct.unpack('<I', data[pos + 4:pos + 8])[0]
        out.append(data[pos:pos + 4])
        pos += 8 + size + (size & 1)
    return out


class ImageFile:
    """An image written to a temp file so the vips CLI can inspect it."""

    def __init__(self, data, suffix):
        fd, self.path = tempfile.mkstemp(dir=WORK, suffix='.' + suffix)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        self.data = data
        out = subprocess.run(['vipsheader', '-a', self.path], capture_output=True, text=True,
                             check=True).stdout
        self.fields = {}
        for line in out.splitlines()[1:]:
            name, _, value = line.partition(': ')
            self.fields[name] = value

    def int(self, name):
        return int(self.fields[name])

    def point(self, x, y):
        out = subprocess.run(['vips', 'getpoint', self.path, str(x), str(y)],
                             capture_output=True, text=True, check=True).stdout
        return [float(v) for v in out.split()]

    def band_means(self):
        """Mean of each band (vips stats)."""
        mat = self.path + '.stats.mat'
        subprocess.run(['vips', 'stats', self.path, mat], check=True, capture_output=True)
        with open(mat) as f:
            rows = f.read().splitlines()[1:]  # after the "10 n" header: all bands, then each
        return [float(r.split()[4]) for r in rows]

    def upright_size(self):
        """(width, height) as displayed: EXIF orientation 5..8 swaps them."""
        w, h = self.int('width'), self.int('height')
        if self.fields.get('orientation', '1').split()[0] in ('5', '6', '7', '8'):
            return h, w
        return w, h


def is_red(px):
    return px[0] > 200 and px[1] < 70 and px[2] < 70


# -- the checks a client would make on a done image ---------------------------------------------

class VariantChecks:
    """Mixed into the test cases: the full inspection of a done image."""

    def read_dest(self, svc, key):
        obj = S3.client().get_object(Bucket=svc.dest_bucket, Key=key)
        return obj['ContentType'], obj['Body'].read()

    def check_status_records(self, svc, record, rel_key):
        """_status/ids/<id> and _status/keys/<rel> exist, parse, and say done."""
        for key in ('_status/ids/' + record['id'], '_status/keys/' + rel_key):
            ctype, data = self.read_dest(svc, key)
            stored = json.loads(data)
            self.assertEqual(stored['id'], record['id'], key)
            self.assertEqual(stored['state'], 'done', key)
            # the stored record is the API's without the presigned urls (on each variant and
            # on each of its files)
            self.assertEqual(stored['variants'], [
                dict({k: v for k, v in var.items() if k not in ('url', 'files')},
                     files=[{k: v for k, v in f.items() if k != 'url'} for f in var['files']])
                for var in record['variants']], key)

    def check_source(self, svc, record, key, src_img):
        size, etag = source_object(svc, key)
        src = record['source']
        self.assertEqual(src['bucket'], svc.src_bucket)
        self.assertEqual(src['key'], key)
        self.assertEqual(src['bytes'], size)
        self.assertEqual(src['etag'], etag)
        self.assertEqual(src['format'], LOADER_FORMAT[src_img.fields['vips-loader']])
        self.assertEqual((src['width'], src['height']), src_img.upright_size())

    def check_no_metadata(self, img, fmt, where):
        leftover = [n for n in img.fields if n.startswith('exif-') or n == 'xmp-data']
        self.assertEqual(leftover, [], '%s keeps metadata' % where)
        # A kept orientation tag would make viewers rotate the upright pixels again.
        self.assertIn(img.fields.get('orientation', '1').split()[0], ('1',), where)
        if fmt == 'jpeg':
            for marker, payload in jpeg_app_segments(img.data):
                self.assertFalse(marker == 0xE1 and payload.startswith(b'Exif\0\0'),
                                 '%s has an APP1 Exif segment' % where)
                self.assertFalse(marker == 0xE1 and payload.startswith(b'http://ns.adobe.com/xap'),
                                 '%s has an APP1 XMP segment' % where)
        elif fmt == 'png':
            self.assertNotIn(b'eXIf', png_chunk_types(img.data), where)
        elif fmt == 'webp':
            types = webp_chunk_types(img.data)
            self.assertNotIn(b'EXIF', types, where)
            self.assertNotIn(b'XMP ', types, where)

    def check_alpha(self, img, fmt, alpha, where):
        bands = img.int('bands')
        if fmt == 'jpeg':
            self.assertEqual(bands, 3, where)
        elif alpha:
            # the corpus alpha ramps from 0 (left) to 255 (two thirds across)
            self.assertEqual(bands, 4, where)
            mid = img.int('height') // 2
            self.assertLess(img.point(0, mid)[3], 20, '%s: left edge not transparent' % where)
            self.assertEqual(img.point(img.int('width') - 1, mid)[3], 255, where)
        elif alpha is False:
            self.assertEqual(bands, 3, where)

    def check_done(self, svc, record, key, src_data, fmt, alpha, variant_stem):
        """Everything about a done image: record, S3 objects, pixels. variant_stem is the key
        of each variant without "<variant>/" and extension. Returns {variant: ImageFile}."""
        self.assertEqual(record['state'], 'done', record)
        self.assertIsNone(record['error'])
        self.assertEqual(record['attempts'], 1)
        src_img = ImageFile(src_data, 'src')
        self.check_source(svc, record, key, src_img)
        src_w, src_h = src_img.upright_size()
        self.assertEqual([v['name'] for v in record['variants']], [n for n, _ in VARIANTS])
        out = {}
        for var, (name, target) in zip(record['variants'], VARIANTS):
            where = '%s %s' % (key, name)
            want_key = '%s/%s.%s' % (name, variant_stem, EXT[fmt])
            self.assertEqual(var['key'], want_key, where)
            self.assertEqual(var['content_type'], MIME[fmt], where)
            self.assertTrue(var.get('url'), where)
            ctype, data = self.read_dest(svc, want_key)
            self.assertEqual(sniff(data), fmt, where)
            self.assertEqual(ctype, MIME[fmt], where)
            self.assertEqual(var['bytes'], len(data), where)
            img = ImageFile(data, EXT[fmt])
            self.assertEqual(LOADER_FORMAT.get(img.fields['vips-loader']), fmt, where)
            w, h = img.int('width'), img.int('height')
            self.assertEqual((var['width'], var['height']), (w, h), where)
            self.assertEqual(w, min(target, src_w), '%s: width (never upscaled)' % where)
            self.assertLessEqual(abs(h - src_h * w / src_w), 1.0, '%s: aspect' % where)
            self.assertEqual(img.fields['format'], 'uchar', where)
            self.assertEqual(img.fields['interpretation'], 'srgb', where)
            self.check_no_metadata(img, fmt, where)
            self.check_alpha(img, fmt, alpha, where)
            out[name] = img
        return out


# -- 1. every valid corpus image, uploaded, announced by EventBridge, inspected ------------------

class CorpusTest(unittest.TestCase, VariantChecks):
    """Uploads every valid corpus image through a presigned PUT and posts its EventBridge event
    (all at once, so the workers run side by side); each test then waits for one image."""

    @classmethod
    def setUpClass(cls):
        cls.svc = Resizer(S3, env={'WORKERS': '2'})
        cls.uploads = {}
        for name, (ctype, _, _) in CORPUS_VALID.items():
            image_id, key = upload_presigned(cls.svc, name, ctype)
            size, etag = source_object(cls.svc, key)
            # Every field S3 fills in for a versioned bucket.
            event = eventbridge_event(bucket=cls.svc.src_bucket, key=key, size=size, etag=etag,
                                      sequencer=next_sequencer(),
                                      version_id='IYV3p45BT0ac8hjHg1houSdS1a.Mro8e')
            answer = post_event(cls.svc, event)
            cls.uploads[name] = (image_id, key, answer)
        cls.done = {}

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.svc)

    def run_corpus(self, name):
        """Waits for the image and checks it all; returns {variant: ImageFile}."""
        if name in self.done:
            return self.done[name]
        _, fmt, alpha = CORPUS_VALID[name]
        image_id, key, (status, headers, body) = self.uploads[name]
        self.assertEqual(status, 202, body)
        self.assertEqual(body, {'accepted': 1, 'duplicates': 0, 'ignored': 0})
        record = wait_record(self.svc, image_id=image_id)
        imgs = self.check_done(self.svc, record, key, corpus(name), fmt, alpha, image_id)
        self.check_status_records(self.svc, record, key[len('images/'):])
        self.done[name] = imgs
        return imgs

    def test_photo_jpeg(self):
        self.run_corpus('photo.jpg')

    def test_orientation_6_is_applied(self):
        imgs = self.run_corpus('photo_orient6.jpg')
        for name, img in imgs.items():
            w, h = img.int('width'), img.int('height')
            self.assertLess(w, h, '%s: stored landscape must come out portrait' % name)
            # The red block at the STORED top-left shows at the DISPLAYED top-right.
            d = max(2, w * 100 // 1500)
            self.assertTrue(is_red(img.point(w - 1 - d, d)), '%s: top-right not red' % name)
            self.assertFalse(is_red(img.point(d, d)), '%s: top-left is red' % name)
            self.assertFalse(is_red(img.point(d, h - 1 - d)), '%s: bottom-left is red' % name)

    def test_narrow_image_is_never_upscaled(self):
        imgs = self.run_corpus('small.jpg')
        for img in imgs.values():
            self.assertEqual((img.int('width'), img.int('height')), (500, 375))

    def test_png_with_alpha(self):
        self.run_corpus('alpha.png')

    def test_webp_with_alpha(self):
        self.run_corpus('photo.webp')

    def test_animated_gif_gives_its_first_frame(self):
        imgs = self.run_corpus('anim.gif')
        for name, img in imgs.items():
            self.assertIn(img.fields.get('n-pages', '1'), ('1',), '%s is animated' % name)
            # frame 0: blue, with a yellow square at x 150..250, y 100..200 (frames 1..3: red)
            blue, yellow = img.point(20, 20), img.point(200, 150)
            self.assertTrue(blue[2] > 200 and blue[0] < 60 and blue[1] < 60, (name, blue))
            self.assertTrue(yellow[0] > 200 and yellow[1] > 200 and yellow[2] < 60,
                            (name, yellow))

    def test_16_bit_tiff_becomes_8_bit_jpeg(self):
        self.run_corpus('photo16.tif')
        self.assert_colours_match('photo16.tif')

    def test_16_bit_png_becomes_8_bit_png(self):
        self.run_corpus('photo16.png')

    def test_cmyk_with_profile_becomes_srgb(self):
        self.run_corpus('cmyk_icc.jpg')
        self.assert_colours_match('cmyk_icc.jpg')

    def test_cmyk_without_profile_becomes_srgb(self):
        self.run_corpus('cmyk_noicc.jpg')
        self.assert_colours_match('cmyk_noicc.jpg')

    def assert_colours_match(self, name):
        """The corpus makes these from the same photograph as photo.jpg: their phone variants
        (640x480 each) must have about the same mean R, G, B. An inverted CMYK or a 16-bit
        image cast without scaling is off by a hundred levels."""
        want = self.run_corpus('photo.jpg')['phone'].band_means()
        got = self.run_corpus(name)['phone'].band_means()
        for band in range(1, 4):
            self.assertLess(abs(got[band] - want[band]), 12,
                            '%s band %d mean %.1f, photo.jpg %.1f' % (name, band - 1, got[band],
                                                                     want[band]))



# -- 2, 3. objects put straight into the bucket; the two event shapes and their key encodings ---

class DirectUploadTest(unittest.TestCase, VariantChecks):
    @classmethod
    def setUpClass(cls):
        cls.svc = Resizer(S3)

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.svc)

    def test_records_batch_with_form_encoded_keys(self):
        odd, plain = 'images/a b+c.jpg', 'images/plain.jpg'
        records = []
        for key, name in ((odd, 'photo.jpg'), (plain, 'small.jpg')):
            size, etag = put_source(self.svc, key, corpus(name))
            records.append(s3_record(bucket=self.svc.src_bucket, key=key, size=size, etag=etag))
        self.assertEqual(records[0]['s3']['object']['key'], 'images/a+b%2Bc.jpg')
        status, _, body = post_event(self.svc, records_event(records))
        self.assertEqual((status, body), (202, {'accepted': 2, 'duplicates': 0, 'ignored': 0}))
        for key, name, stem in ((odd, 'photo.jpg', 'a b+c'), (plain, 'small.jpg', 'plain')):
            record = wait_record(self.svc, key=key)
            self.check_done(self.svc, record, key, corpus(name), 'jpeg', False, stem)
            self.check_status_records(self.svc, record, key[len('images/'):])
        self.assertEqual(record['variants'][0]['key'], 'desktop/plain.jpg')

    def test_eventbridge_percent_encoded_key_falls_back_to_decoded(self):
        key = 'images/sp ace.jpg'
        size, etag = put_source(self.svc, key, corpus('small.jpg'))
        status, _, body = post_event(
            self.svc, eventbridge_event(bucket=self.svc.src_bucket, key='images/sp%20ace.jpg',
                                        size=size, etag=etag))
        self.assertEqual((status, body), (202, {'accepted': 1, 'duplicates': 0, 'ignored': 0}))
        record = wait_record(self.svc, key=key)
        self.check_done(self.svc, record, key, corpus('small.jpg'), 'jpeg', False, 'sp ace')
        self.check_status_records(self.svc, record, 'sp ace.jpg')


# -- 4. what /v1/events accepts, refuses and ignores ---------------------------------------------

class EventIntakeTest(unittest.TestCase):
    BASIC = 'eb-user:eb-secret-0123'

    @classmethod
    def setUpClass(cls):
        cls.svc = Resizer(S3, env={'EVENTS_BASIC_AUTH': cls.BASIC})

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.svc)

    def put_small(self, key):
        return put_source(self.svc, key, corpus('small.jpg'))

    def test_same_event_twice_runs_one_job(self):
        key = 'images/dup.jpg'
        size, etag = self.put_small(key)
        event = eventbridge_event(bucket=self.svc.src_bucket, key=key, size=size, etag=etag)
        before = jobs_total(self.svc)
        self.assertEqual(post_event(self.svc, event)[2],
                         {'accepted': 1, 'duplicates': 0, 'ignored': 0})
        self.assertEqual(post_event(self.svc, event)[2],
                         {'accepted': 0, 'duplicates': 1, 'ignored': 0})
        record = wait_record(self.svc, key=key)
        self.assertEqual(record['state'], 'done', record)
        # Delivered again after it is done (EventBridge retries): still nothing new to do.
        self.assertEqual(post_event(self.svc, event)[2],
                         {'accepted': 0, 'duplicates': 1, 'ignored': 0})
        wait_for(lambda: jobs_total(self.svc) >= before + 1, 10,
                 what='resizer_jobs_total to count the job')
        time.sleep(scaled(1))
        self.assertEqual(jobs_total(self.svc), before + 1)
        self.assertEqual(get_record(self.svc, key=key)['attempts'], 1)

    def test_event_for_another_bucket_is_ignored(self):
        size, etag = self.put_small('images/other-bucket.jpg')
        event = eventbridge_event(bucket='someone-elses-bucket', key='images/other-bucket.jpg',
                                  size=size, etag=etag)
        status, _, body = post_event(self.svc, event)
        self.assertEqual((status, body), (202, {'accepted': 0, 'duplicates': 0, 'ignored': 1}))

    def test_key_outside_the_prefix_is_ignored(self):
        size, etag = self.put_small('uploads/outside.jpg')
        for key in ('uploads/outside.jpg', 'imagesX/outside.jpg', 'desktop/outside.jpg'):
            event = eventbridge_event(bucket=self.svc.src_bucket, key=key, size=size, etag=etag)
            status, _, body = post_event(self.svc, event)
            self.assertEqual((status, body), (202, {'accepted': 0, 'duplicates': 0, 'ignored': 1}),
                             key)
        self.assertIsNone(get_record(self.svc, key='uploads/outside.jpg'))

    def test_s3_test_event_is_accepted_and_ignored(self):
        event = {'Service': 'Amazon S3', 'Event': 's3:TestEvent', 'Time': '2021-11-12T00:00:00Z',
                 'Bucket': self.svc.src_bucket, 'RequestId': '5582815E1AEA5ADF',
                 'HostId': '8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE'}
        status, _, body = post_event(self.svc, event)
        self.assertEqual((status, body), (202, {'accepted': 0, 'duplicates': 0, 'ignored': 1}))

    def test_wrong_or_missing_api_key_is_401(self):
        event = eventbridge_event(bucket=self.svc.src_bucket, key='images/x.jpg', size=1,
                                  etag='abc')
        assert_error(post_event(self.svc, event, {'x-api-key': EVENTS_API_KEY + 'x'}), 401,
                     'unauthorized')
        assert_error(post_event(self.svc, event, {'x-api-key': None}), 401, 'unauthorized')
        self.assertIsNone(get_record(self.svc, key='images/x.jpg'))

    def test_basic_auth_when_configured(self):
        event = {'Service': 'Amazon S3', 'Event': 's3:TestEvent'}
        good = 'Basic ' + b64encode(self.BASIC.encode()).decode()
        bad = 'Basic ' + b64encode(b'eb-user:wrong').decode()
        status, _, body = post_event(self.svc, event, {'x-api-key': None, 'Authorization': good})
        self.assertEqual(status, 202, body)
        assert_error(post_event(self.svc, event, {'x-api-key': None, 'Authorization': bad}), 401,
                     'unauthorized')

    def test_malformed_json_is_400(self):
        for raw in (b'{"detail": {"bucket":', b'not json', b'{"Records": [{"eventVersion": "2.1",'
                    b' "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}]}'):
            assert_error(post_event(self.svc, raw), 400, 'invalid_event')

    def test_body_over_256_kib_is_413(self):
        event = eventbridge_event(bucket=self.svc.src_bucket, key='images/big.jpg', size=1,
                                  etag='abc')
        event['padding'] = 'x' * (256 * 1024)
        assert_error(post_event(self.svc, event), 413, 'too_large')

    def test_head_is_200(self):
        status, _, body = http('HEAD', self.svc.url('/v1/events'))
        self.assertEqual((status, body), (200, b''))


class BackPressureTest(unittest.TestCase):
    """QUEUE_SIZE=1, one worker: a batch of several objects is refused with 429 and
    Retry-After; redelivered as EventBridge would, it is taken in the end, every object once."""

    def test_queue_full_then_redelivery(self):
        svc = Resizer(S3, env={'QUEUE_SIZE': '1', 'WORKERS': '1'})
        self.addCleanup(stop_clean, svc)
        keys = ['images/busy%d.jpg' % i for i in range(4)]
        records = []
        for key in keys:
            size, etag = put_source(svc, key, corpus('photo.jpg'))
            records.append(s3_record(bucket=svc.src_bucket, key=key, size=size, etag=etag))
        batch = records_event(records)
        before = jobs_total(svc)
        refused = post_event(svc, batch)
        assert_error(refused, 429, 'busy')
        retry_after = int(refused[1]['retry-after'])
        self.assertGreaterEqual(retry_after, 1)
        # Redelivered as EventBridge does: after Retry-After, until taken.
        status, headers, body = wait_for(
            lambda: (lambda r: r if r[0] != 429 else None)(post_event(svc, batch)), 90,
            what='the batch taken after 429s', interval=retry_after)
        self.assertEqual(status, 202, body)
        self.assertEqual(body['accepted'] + body['duplicates'], len(keys), body)
        self.assertGreaterEqual(body['duplicates'], 1, body)
        for key in keys:
            record = wait_record(svc, key=key)
            self.assertEqual((record['state'], record['attempts']), ('done', 1), record)
        wait_for(lambda: jobs_total(svc) >= before + len(keys), 10,
                 what='resizer_jobs_total to count every job')
        time.sleep(scaled(1))
        self.assertEqual(jobs_total(svc), before + len(keys))
        status, _, body = post_event(svc, batch)
        self.assertEqual((status, body),
                         (202, {'accepted': 0, 'duplicates': len(keys), 'ignored': 0}))


# -- 5. hostile files fail with a code, and the service goes on ---------------------------------

class FailureTest(unittest.TestCase):
    CASES = (  # corpus file, Content-Type it is put with, failure code
        ('truncated.jpg', 'image/jpeg', 'corrupt_image'),
        ('truncated.png', 'image/png', 'corrupt_image'),
        ('text.jpg', 'image/jpeg', 'unsupported_format'),
        ('empty.jpg', 'image/jpeg', 'unsupported_format'),
        ('svg_as.jpg', 'image/jpeg', 'unsupported_format'),
        ('pdf_as.jpg', 'image/jpeg', 'unsupported_format'),
        ('page.html', 'image/jpeg', 'unsupported_format'),
        ('bomb.png', 'image/png', 'too_many_pixels'),
        ('bomb.jpg', 'image/jpeg', 'too_many_pixels'),
    )

    @classmethod
    def setUpClass(cls):
        cls.svc = Resizer(S3)

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.svc)

    def assert_failed(self, key, codes):
        record = wait_record(self.svc, key=key)
        self.assertEqual(record['state'], 'failed', record)
        self.assertIn(record['error']['code'], codes, record)
        self.assertTrue(record['error']['message'], record)
        self.assertEqual(record['variants'], [], record)
        stored = json.loads(S3.client().get_object(
            Bucket=self.svc.dest_bucket, Key='_status/ids/' + record['id'])['Body'].read())
        self.assertEqual((stored['state'], stored['error']['code']),
                         ('failed', record['error']['code']))
        return record

    def test_hostile_files_fail_with_their_code(self):
        for name, ctype, _ in self.CASES:
            key = 'images/bad-' + name
            size, etag = put_source(self.svc, key, corpus(name), ctype)
            status, _, body = post_event(self.svc,
                                         eventbridge_event(bucket=self.svc.src_bucket, key=key,
                                                           size=size, etag=etag))
            self.assertEqual(status, 202, body)
        for name, _, code in self.CASES:
            with self.subTest(name):
                self.assert_failed('images/bad-' + name, (code,))
        listed = S3.client().list_objects_v2(Bucket=self.svc.dest_bucket)
        variants = [o['Key'] for o in listed.get('Contents', [])
                    if '/bad-' in o['Key'] and not o['Key'].startswith('_status/')]
        self.assertEqual(variants, [])
        self.assert_still_serving()

    def test_event_for_a_missing_object(self):
        key = 'images/never-uploaded.jpg'
        event = eventbridge_event(bucket=self.svc.src_bucket, key=key, size=1234,
                                  etag=uuid.uuid4().hex)
        status, _, body = post_event(self.svc, event)
        self.assertEqual((status, body), (202, {'accepted': 1, 'duplicates': 0, 'ignored': 0}))
        self.assert_failed(key, ('source_missing', 'access_denied'))
        self.assert_still_serving()

    def assert_still_serving(self):
        self.assertTrue(self.svc.running())
        self.assertEqual(http('GET', self.svc.url('/healthz'))[0], 200)
        self.assertEqual(http('GET', self.svc.url('/readyz'))[0], 200)
        key = 'images/after-%s.jpg' % uuid.uuid4().hex[:8]
        size, etag = put_source(self.svc, key, corpus('small.jpg'))
        post_event(self.svc, eventbridge_event(bucket=self.svc.src_bucket, key=key, size=size,
                                               etag=etag))
        self.assertEqual(wait_record(self.svc, key=key)['state'], 'done')


# -- 6. OUTPUT_FORMAT=webp ---------------------------------------------------------------------

class WebpOutputTest(unittest.TestCase, VariantChecks):
    def test_variants_are_webp(self):
        svc = Resizer(S3, env={'OUTPUT_FORMAT': 'webp'})
        self.addCleanup(stop_clean, svc)
        cases = (('images/photo.jpg', 'photo.jpg', 'image/jpeg', False),
                 ('images/alpha.png', 'alpha.png', 'image/png', True))
        for key, name, ctype, _ in cases:
            size, etag = put_source(svc, key, corpus(name), ctype)
            status, _, body = post_event(svc, eventbridge_event(bucket=svc.src_bucket, key=key,
                                                                size=size, etag=etag))
            self.assertEqual(status, 202, body)
        for key, name, _, alpha in cases:
            record = wait_record(svc, key=key)
            stem = key[len('images/'):].rsplit('.', 1)[0]
            self.check_done(svc, record, key, corpus(name), 'webp', alpha, stem)
            self.assertEqual(record['variants'][0]['key'], 'desktop/%s.webp' % stem)


if __name__ == '__main__':
    unittest.main(verbosity=2)
