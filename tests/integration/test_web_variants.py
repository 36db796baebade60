#!/usr/bin/python3
"""Issue 16, web-ready variants, as a browser and a page author see them: with
VARIANTS=...,thumb:256x256:cover and OUTPUT_FORMATS=jpeg,webp,avif, every variant is stored in
every format (read back from S3 and decoded with vips: size, Content-Type, no metadata, alpha
where the format has it); the cover thumbnail is exactly its box for wide, tall and square
sources and keeps a small bright subject placed far from the centre; the redirect route picks
the format from Accept (and ?format=), says Vary: Accept, and answers 406 when nothing
acceptable is stored; the record's BlurHash decodes with the authors' npm package to the
image's colours and the dominant colour of a flat image is that colour. Bad VARIANTS and
OUTPUT_FORMATS stop the service with exit 2 naming the part. Real S3 (Swift), real binary."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from fixtures import AUTH, assert_error, eventbridge_event, post_event, put_source, wait_record
from harness import API_TOKEN, EVENTS_API_KEY, SOURCE_DIR, Resizer, S3Server, http, scaled

sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'corpus'))
from make_corpus import exif_app1, jpeg_insert_segments, xmp_app1  # noqa: E402

VARIANTS = 'desktop:1920,tablet:1024,phone:640,thumb:256x256:cover'
FORMATS = ('jpeg', 'webp', 'avif')
EXT = {'jpeg': 'jpg', 'webp': 'webp', 'avif': 'avif'}
MIME = {'jpeg': 'image/jpeg', 'webp': 'image/webp', 'avif': 'image/avif'}
BLURHASH_NODE = os.path.join(SOURCE_DIR, 'tests', 'blurhash')
GROUND = (96, 104, 100)      # the flat background of the subject images
SUBJECT = (255, 150, 20)     # a small bright orange disc
# name -> (width, height, subject centre as fractions, subject radius)
SUBJECT_IMAGES = {
    'wide.png': (1200, 400, (0.88, 0.3), 40),
    'tall.png': (400, 1200, (0.25, 0.88), 40),
    'square.png': (800, 800, (0.8, 0.2), 40),
}
FLAT = {'flat-blue.png': (30, 120, 200), 'flat-red.png': (200, 30, 40)}

WORK = None
S3 = None


def ppm(w, h, pixel):
    """A binary PPM of w x h with pixel(x, y) -> (r, g, b), built row by row."""
    rows = []
    for y in range(h):
        rows.append(bytes(v for x in range(w) for v in pixel(x, y)))
    return b'P6\n%d %d\n255\n' % (w, h) + b''.join(rows)


def write_png(name, w, h, pixel, alpha=False):
    """Writes WORK/name from a PPM through vips (and an alpha band when asked)."""
    src = os.path.join(WORK, name + '.ppm')
    with open(src, 'wb') as f:
        f.write(ppm(w, h, pixel))
    out = os.path.join(WORK, name)
    if alpha:
        # alpha: opaque on the left half, fading to 25% on the right
        mask = os.path.join(WORK, name + '.alpha.ppm')
        with open(mask, 'wb') as f:
            f.write(ppm(w, h, lambda x, y: (255,) * 3 if x < w // 2 else (64,) * 3))
        grey = os.path.join(WORK, name + '.alpha.v')
        subprocess.run(['vips', 'extract_band', mask, grey, '0'], check=True)
        subprocess.run(['vips', 'bandjoin', '%s %s' % (src, grey), out], check=True)
    else:
        subprocess.run(['vips', 'copy', src, out], check=True)
    with open(out, 'rb') as f:
        return f.read()


def write_camera_jpeg(name, w, h):
    """WORK/name: a JPEG carrying what a phone's photo carries, an sRGB ICC profile (libvips'
    own), Exif with a camera name and GPS position, and XMP."""
    src = os.path.join(WORK, name + '.ppm')
    with open(src, 'wb') as f:
        f.write(ppm(w, h, lambda x, y: (x % 256, 90, y % 256)))
    tagged = os.path.join(WORK, name + '.v')
    subprocess.run(['vips', 'icc_transform', src, tagged, 'srgb', '--input-profile', 'srgb'],
                   check=True)
    plain = os.path.join(WORK, name + '.plain.jpg')
    subprocess.run(['vips', 'jpegsave', tagged, plain, '--Q', '90'], check=True)
    with open(plain, 'rb') as f:
        data = jpeg_insert_segments(f.read(), [exif_app1(1), xmp_app1()])
    assert b'ResizerTestCam' in data and b'ICC_PROFILE' in data
    return data


def subject_pixel(w, h, centre, r):
    cx, cy = centre[0] * w, centre[1] * h

    def px(x, y):
        return SUBJECT if (x - cx) ** 2 + (y - cy) ** 2 <= r * r else GROUND
    return px


def decode(data, suffix):
    """(width, height, bands, header fields, RGB(A) pixels) of an encoded image, via vips."""
    path = tempfile.mktemp(dir=WORK, suffix='.' + suffix)
    with open(path, 'wb') as f:
        f.write(data)
    fields = {}
    out = subprocess.run(['vipsheader', '-a', path], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines()[1:]:
        name, _, value = line.partition(': ')
        fields[name] = value
    return int(fields['width']), int(fields['height']), int(fields['bands']), fields, path


def pixels(path):
    """RGB pixel tuples of an image file (vips writes a PPM, alpha dropped)."""
    out = path + '.ppm'
    subprocess.run(['vips', 'copy', path, out], check=True, capture_output=True)
    with open(out, 'rb') as f:
        data = f.read()
    # header: P6, width, height, maxval, each maybe after a "#..." comment line
    fields, pos = [], 0
    while len(fields) < 4:
        end = data.index(b'\n', pos)
        line = data[pos:end]
        pos = end + 1
        if not line.startswith(b'#'):
            fields += line.split()
    w, h = int(fields[1]), int(fields[2])
    body = data[pos:]
    return w, h, [tuple(body[i:i + 3]) for i in range(0, w * h * 3, 3)]


def near(a, b, tol):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def blurhash_decode_mean(hash_, w=32, h=32):
    """Mean RGB of the BlurHash decoded by the npm reference package."""
    script = ("import('blurhash').then(({decode}) => {const p = decode(%s, %d, %d); "
              "const m = [0, 0, 0]; for (let i = 0; i < %d; i++) for (let k = 0; k < 3; k++) "
              "m[k] += p[i * 4 + k]; console.log(JSON.stringify(m.map(v => v / %d)));})"
              % (json.dumps(hash_), w, h, w * h, w * h))
    out = subprocess.run(['node', '--input-type=module', '-e', script], cwd=BLURHASH_NODE,
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise AssertionError('node blurhash decode failed: %s' % out.stderr)
    return json.loads(out.stdout)


def setUpModule():
    global WORK, S3
    WORK = tempfile.mkdtemp(prefix='resizer-web-')
    S3 = S3Server()


def tearDownModule():
    if S3 is not None:
        S3.close()
    shutil.rmtree(WORK, ignore_errors=True)


class WebVariantsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Resizer(S3, env={'VARIANTS': VARIANTS, 'OUTPUT_FORMATS': ','.join(FORMATS),
                                   'WORKERS': '2'})
        cls.records = {}
        sources = {}
        for name, (w, h, centre, r) in SUBJECT_IMAGES.items():
            sources[name] = write_png(name, w, h, subject_pixel(w, h, centre, r))
        for name, colour in FLAT.items():
            sources[name] = write_png(name, 300, 200, lambda x, y, c=colour: c)
        sources['alpha.png'] = write_png('alpha.png', 320, 240,
                                         lambda x, y: (x % 256, y % 256, 128), alpha=True)
        sources['camera.jpg'] = write_camera_jpeg('camera.jpg', 700, 500)
        for name, data in sources.items():
            key = 'images/' + name
            size, etag = put_source(cls.svc, key, data,
                                    'image/jpeg' if name.endswith('.jpg') else 'image/png')
            status, _, body = post_event(cls.svc, eventbridge_event(bucket=cls.svc.src_bucket,
                                                                    key=key, size=size, etag=etag))
            assert status == 202, (status, body)
        for name in sources:
            cls.records[name] = wait_record(cls.svc, key='images/' + name)

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()

    def record(self, name):
        rec = self.records[name]
        self.assertEqual(rec['state'], 'done', rec)
        return rec

    def variant(self, name, vname):
        return next(v for v in self.record(name)['variants'] if v['name'] == vname)

    def fetch(self, key):
        obj = S3.client().get_object(Bucket=self.svc.dest_bucket, Key=key)
        return obj['ContentType'], obj['Body'].read()

    # -- every variant in every format --------------------------------------------------------

    def test_no_metadata_in_any_file(self):
        # The source carries Exif (camera, GPS), XMP and an ICC profile: no file of any
        # variant in any format keeps one of them.
        for v in self.record('camera.jpg')['variants']:
            for f in v['files']:
                where = '%s %s' % (v['name'], f['format'])
                _, data = self.fetch(f['key'])
                fields = decode(data, EXT[f['format']])[3]
                for meta in ('exif-data', 'xmp-data', 'iptc-data', 'icc-profile-data'):
                    self.assertNotIn(meta, fields, where)
                for trace in (b'ResizerTestCam', b'ICC_PROFILE', b'x:xmpmeta'):
                    self.assertNotIn(trace, data, where)

    def test_every_variant_in_every_format(self):
        rec = self.record('wide.png')
        self.assertEqual([v['name'] for v in rec['variants']],
                         ['desktop', 'tablet', 'phone', 'thumb'])
        for v in rec['variants']:
            self.assertEqual([f['format'] for f in v['files']], list(FORMATS))
            # the variant's own fields are its first format's, as before
            self.assertEqual(v['key'], v['files'][0]['key'])
            for f in v['files']:
                where = '%s %s' % (v['name'], f['format'])
                self.assertEqual(f['key'], '%s/wide.%s' % (v['name'], EXT[f['format']]), where)
                self.assertEqual(f['content_type'], MIME[f['format']], where)
                ctype, data = self.fetch(f['key'])
                self.assertEqual(ctype, MIME[f['format']], where)
                self.assertEqual(len(data), f['bytes'], where)
                w, h, bands, fields, _ = decode(data, EXT[f['format']])
                self.assertEqual((w, h), (f['width'], f['height']), where)
                self.assertEqual((w, h), (v['width'], v['height']), where)
                for meta in ('exif-data', 'xmp-data', 'iptc-data', 'icc-profile-data'):
                    self.assertNotIn(meta, fields, where)
                # the presigned url serves the same bytes
                status, _, body = http('GET', f['url'])
                self.assertEqual((status, body), (200, data), where)
        sizes = {v['name']: (v['width'], v['height']) for v in rec['variants']}
        self.assertEqual(sizes, {'desktop': (1200, 400), 'tablet': (1024, 341),
                                 'phone': (640, 213), 'thumb': (256, 256)})

    def test_alpha_kept_where_the_format_can(self):
        rec = self.record('alpha.png')
        for v in rec['variants']:
            for f in v['files']:
                _, data = self.fetch(f['key'])
                _, _, bands, _, _ = decode(data, EXT[f['format']])
                want = 3 if f['format'] == 'jpeg' else 4
                self.assertEqual(bands, want, '%s %s' % (v['name'], f['format']))

    # -- cover: exact boxes, cropped to the subject -------------------------------------------

    def test_cover_is_exactly_the_box_and_keeps_the_subject(self):
        for name, (w, h, centre, r) in SUBJECT_IMAGES.items():
            v = self.variant(name, 'thumb')
            self.assertEqual((v['width'], v['height']), (256, 256), name)
            # at the thumbnail's scale the disc covers this many pixels
            scale = 256 / min(w, h)
            disc = 3.14159 * (r * scale) ** 2
            for f in v['files']:
                _, data = self.fetch(f['key'])
                tw, th, _, _, path = decode(data, EXT[f['format']])
                self.assertEqual((tw, th), (256, 256), '%s %s' % (name, f['format']))
                _, _, px = pixels(path)
                lit = sum(1 for p in px if near(p, SUBJECT, 60))
                self.assertGreater(lit, 0.8 * disc,
                                   '%s %s: %d subject pixels of %d in the thumbnail'
                                   % (name, f['format'], lit, disc))

    def test_a_centre_crop_would_have_lost_the_subject(self):
        # The test is only worth something if the centre crop misses the disc: for the wide
        # and tall images the disc lies outside the centred 256x256 window.
        for name in ('wide.png', 'tall.png'):
            w, h, (fx, fy), r = SUBJECT_IMAGES[name]
            side = min(w, h)
            x0, y0 = (w - side) / 2, (h - side) / 2
            cx, cy = fx * w, fy * h
            outside = cx + r < x0 or cx - r > x0 + side or cy + r < y0 or cy - r > y0 + side
            self.assertTrue(outside, name)

    # -- placeholders -------------------------------------------------------------------------

    def test_dominant_colour_of_flat_images(self):
        for name, colour in FLAT.items():
            ph = self.record(name)['placeholder']
            self.assertEqual(ph['dominant_color'], '#%02x%02x%02x' % colour, name)
            self.assertEqual(ph['aspect_ratio'], 1.5, name)

    def test_blurhash_decodes_to_the_image_colours(self):
        for name, colour in FLAT.items():
            ph = self.record(name)['placeholder']
            self.assertEqual(len(ph['blurhash']), 4 + 2 * 4 * 3, ph)  # 4x3 components
            self.assertTrue(near(blurhash_decode_mean(ph['blurhash']), colour, 3),
                            '%s: %s' % (name, ph['blurhash']))
        # a non-flat image: the decoded mean is the picture's mean colour
        rec = self.record('wide.png')
        _, data = self.fetch(self.variant('wide.png', 'phone')['files'][0]['key'])
        _, _, _, _, path = decode(data, 'jpg')
        _, _, px = pixels(path)
        mean = [sum(p[k] for p in px) / len(px) for k in range(3)]
        got = blurhash_decode_mean(rec['placeholder']['blurhash'])
        self.assertTrue(near(got, mean, 8), 'decoded %s, image mean %s' % (got, mean))
        self.assertEqual(rec['placeholder']['aspect_ratio'], 3.0)

    # -- negotiation on the redirect route ----------------------------------------------------

    def redirect(self, accept=None, query=''):
        rec = self.record('square.png')
        hdrs = dict(AUTH)
        if accept is not None:
            hdrs['Accept'] = accept
        return http('GET', self.svc.url('/v1/images/%s/variants/phone%s' % (rec['id'], query)),
                    headers=hdrs)

    def assert_sent(self, accept, fmt, query=''):
        status, hdrs, _ = self.redirect(accept, query)
        self.assertEqual(status, 302, accept)
        self.assertIn('Accept', vary_tokens(hdrs), accept)
        path = hdrs['location'].split('?')[0]
        self.assertTrue(path.endswith('/phone/square.' + EXT[fmt]),
                        '%s -> %s' % (accept, path))
        status, rh, _ = http('GET', hdrs['location'])
        self.assertEqual((status, rh.get('content-type')), (200, MIME[fmt]), accept)

    def test_accept_picks_the_format(self):
        chrome = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8'
        self.assert_sent(chrome, 'avif')
        self.assert_sent('image/webp,*/*', 'webp')
        self.assert_sent('image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5', 'jpeg')
        self.assert_sent('*/*', 'jpeg')
        self.assert_sent(None, 'jpeg')
        self.assert_sent('image/avif;q=0.4,image/webp;q=0.8,*/*;q=0.1', 'webp')
        self.assert_sent('image/avif;q=0,image/webp,*/*', 'webp')

    def test_format_parameter_overrides_accept(self):
        self.assert_sent('image/avif,*/*', 'webp', '?format=webp')
        self.assert_sent('image/avif,*/*', 'jpeg', '?format=jpeg')
        assert_error(self.redirect(None, '?format=bmp'), 400, 'invalid_parameter')
        assert_error(self.redirect(None, '?format=png'), 404, 'not_found')

    def test_406_when_nothing_acceptable(self):
        refused = self.redirect('image/png,text/html')
        assert_error(refused, 406, 'not_acceptable')
        self.assertIn('Accept', vary_tokens(refused[1]))
        status, _, _ = self.redirect('image/jpeg;q=0,image/*')
        self.assertEqual(status, 406)


def vary_tokens(hdrs):
    """The names a Vary header lists (the variant route is a CORS path too: Origin)."""
    return [t.strip() for t in hdrs.get('vary', '').split(',') if t.strip()]


class BadSpecsTest(unittest.TestCase):
    def run_binary(self, **env):
        base = {k: v for k, v in os.environ.items() if k.startswith(('ASAN', 'LSAN', 'UBSAN'))}
        base.update(PATH=os.environ.get('PATH', '/usr/bin:/bin'), DEST_BUCKET='dest-bucket',
                    SRC_BUCKET='src-bucket',
                    AWS_REGION='us-east-1', API_TOKENS=API_TOKEN, EVENTS_API_KEY=EVENTS_API_KEY,
                    AWS_ACCESS_KEY_ID='k', AWS_SECRET_ACCESS_KEY='s')
        base.update(env)
        return subprocess.run([os.environ['RESIZER_BIN']], env=base, capture_output=True,
                              text=True, timeout=scaled(30))

    def test_bad_specs_exit_2_naming_the_part(self):
        cases = [
            ({'VARIANTS': 'desktop:1920,thumb:256x256:fill'}, '"thumb:256x256:fill"'),
            ({'VARIANTS': 'thumb:256x0:cover'}, 'the height'),
            ({'VARIANTS': 'thumb:256:cover'}, 'a fit needs WIDTHxHEIGHT'),
            ({'VARIANTS': '_status:100'}, '"_status:100"'),
            ({'VARIANTS': 'images:100'}, 'SRC_PREFIX'),
            ({'VARIANTS': 'a:100,a:200'}, 'unique'),
            ({'OUTPUT_FORMATS': 'jpeg,webp,jpeg'}, '"jpeg": is listed twice'),
            ({'OUTPUT_FORMATS': 'jpeg,heic'}, '"heic"'),
            ({'AVIF_QUALITY': '0'}, 'AVIF_QUALITY'),
        ]
        for env, part in cases:
            res = self.run_binary(**env)
            self.assertEqual(res.returncode, 2, (env, res.stderr))
            self.assertIn(part, res.stderr, env)
            self.assertIn(list(env)[0], res.stderr, env)


if __name__ == '__main__':
    unittest.main(verbosity=2)
