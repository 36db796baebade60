#!/usr/bin/python3
"""Hostile and odd uploads, put straight into the source bucket and announced as EventBridge
would: each ends `failed` with the code a client can act on, or, where the file is a valid
image that is merely odd, `done` with sane variants. Meanwhile /healthz stays 200 and the
service's peak memory (VmHWM) stays under a stated bound.

Decisions this test pins down:
- Polyglots: a valid image that carries extra bytes (HTML after a JPEG's end marker, a GIF
  whose header doubles as the start of a JavaScript comment) IS processed: the variants are
  re-encoded from decoded pixels, so none of the extra bytes survive into them. A file that
  only borrows an image's magic bytes (JPEG SOI followed by HTML) fails `corrupt_image`.
- An animated GIF: the pixel limit counts width x height x frames of the whole file (from the
  header, before decoding), so 1000 frames of 400x300 (120 MP) fail `too_many_pixels`, while
  1000 frames of 100x100 (10 MP) pass and the variants are the first frame.
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import unittest
import zlib

from fixtures import (announce, metric, metrics_text, proc_status_kb, put_source, sanitized,
                      timed_healthz, wait_record)
from harness import S3Server, Resizer, SOURCE_DIR

sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'corpus'))
import make_corpus as corpus  # noqa: E402  (its helpers write JPEG/PNG/GIF structures by hand)

# Peak resident memory allowed for the Release build while it works through every case
# (two workers, default VARIANTS and MAX_PIXELS). Measured: about 120-200 MB.
MAX_HWM_KB = 600 * 1024

JS_TAIL = b'*/=1;alert("polyglot");\n'
HTML_TAIL = b'<html><body><script>alert("polyglot")</script></body></html>\n'
EXIF_MARK = b'ResizerTestCam'


# -- images made here (everything else comes from tests/corpus/make_corpus.sh) ------------------

def gif_many_frames(width, height, frames):
    """A GIF with a full first frame (blue, palette 0) and frames-1 more 1x1 frames (red): a
    tiny file whose header claims width x height x frames pixels."""
    palette = [(0, 0, 255), (255, 255, 0), (255, 0, 0), (255, 255, 255)] + [(0, 0, 0)] * 124
    out = bytearray(b'GIF89a' + struct.pack('<HHBBB', width, height, 0xF6, 0, 0))
    out += b''.join(bytes(c) for c in palette)
    out += b'\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00'
    for f in range(frames):
        w, h = (width, height) if f == 0 else (1, 1)
        out += b'\x21\xf9\x04\x04' + struct.pack('<H', 2) + b'\x00\x00'
        out += b'\x2c' + struct.pack('<HHHHB', 0, 0, w, h, 0)
        pixels = bytes([0 if f == 0 else 2]) * (w * h)
        out += bytes([7]) + corpus.gif_sub_blocks(corpus.gif_lzw_uncompressed(pixels))
    out += b'\x3b'
    return bytes(out)


def gif_js_polyglot():
    """A GIF whose logical-screen width bytes are '/*' (10799 px wide, 10 high): read as
    JavaScript it is `GIF89a/* ... */=1;alert(...)`, read as an image it is a valid GIF."""
    width, height = 0x2a2f, 10
    out = bytearray(b'GIF89a' + struct.pack('<HHBBB', width, height, 0xF6, 0, 0))
    out += bytes([0, 0, 255, 255, 255, 0, 255, 0, 0, 255, 255, 255]) + bytes(3 * 124)
    out += b'\x2c' + struct.pack('<HHHHB', 0, 0, width, height, 0)
    pixels = bytes((x // 500) % 3 for _y in range(height) for x in range(width))
    out += bytes([7]) + corpus.gif_sub_blocks(corpus.gif_lzw_uncompressed(pixels)) + b'\x3b'
    assert b'*/' not in out, 'the comment must not close early'
    return bytes(out) + JS_TAIL


def exif_huge():
    """An APP1 Exif segment of about 60 KB: Make plus a 60000-byte ImageDescription."""
    desc = b'D' * 60000 + b'\0'
    make = EXIF_MARK + b'\0'
    data_off = 8 + 2 + 2 * 12 + 4
    extra = bytearray()
    entries = [corpus.tiff_entry(0x010E, 2, len(desc), desc, data_off, extra),
               corpus.tiff_entry(0x010F, 2, len(make), make, data_off, extra)]
    tiff = b'II*\0' + struct.pack('<I', 8) + struct.pack('<H', 2) + b''.join(entries)
    payload = b'Exif\0\0' + tiff + struct.pack('<I', 0) + bytes(extra)
    assert len(payload) + 2 <= 0xFFFF
    return b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload


def png_gray(width, height):
    """A real decompression bomb under the pixel limit: all-zero 8-bit grey rows, zlib 9."""
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    raw = (b'\0' * (width + 1)) * height
    return (b'\x89PNG\r\n\x1a\n' + corpus.png_chunk(b'IHDR', ihdr) +
            corpus.png_chunk(b'IDAT', zlib.compress(raw, 9)) + corpus.png_chunk(b'IEND', b''))


def vips_jpeg(tmp, name, width, height):
    path = os.path.join(tmp, name)
    subprocess.run(['vips', 'black', path + '.v', str(width), str(height), '--bands', '3'],
                   check=True)
    subprocess.run(['vips', 'linear', path + '.v', path + '[Q=90]', '1', '100', '--uchar'],
                   check=True)
    return corpus.read(path)


# -- the cases -----------------------------------------------------------------------------------

# key name -> (how to make the bytes, expected: ('failed', code) or ('done', None))
def make_cases(cdir, tmp):
    c = lambda name: corpus.read(os.path.join(cdir, name))  # noqa: E731
    small = c('small.jpg')
    return {
        'empty.jpg': (b'', ('failed', 'unsupported_format')),
        'text.jpg': (c('text.jpg'), ('failed', 'unsupported_format')),
        'truncated.jpg': (c('truncated.jpg'), ('failed', 'corrupt_image')),
        'truncated.png': (c('truncated.png'), ('failed', 'corrupt_image')),
        'bomb.png': (c('bomb.png'), ('failed', 'too_many_pixels')),
        'sof60000.jpg': (corpus.jpeg_patch_sof(small, 60000, 60000),
                         ('failed', 'too_many_pixels')),
        'svg.jpg': (c('svg_as.jpg'), ('failed', 'unsupported_format')),
        'pdf.jpg': (c('pdf_as.jpg'), ('failed', 'unsupported_format')),
        'html.jpg': (corpus.HTML, ('failed', 'unsupported_format')),
        'soi_html.jpg': (b'\xff\xd8\xff\xe0' + corpus.HTML, ('failed', 'corrupt_image')),
        'jpeg_html.jpg': (small + HTML_TAIL, ('done', None)),
        'gif_js.gif': (gif_js_polyglot(), ('done', None)),
        'strip_wide.jpg': (vips_jpeg(tmp, 'wide.jpg', 20000, 1), ('done', None)),
        'strip_tall.jpg': (vips_jpeg(tmp, 'tall.jpg', 1, 20000), ('done', None)),
        'frames_big.gif': (gif_many_frames(400, 300, 1000), ('failed', 'too_many_pixels')),
        'frames_small.gif': (gif_many_frames(100, 100, 1000), ('done', None)),
        'exif_huge.jpg': (corpus.jpeg_insert_segments(small, [exif_huge()]), ('done', None)),
        'inflate_bomb.png': (png_gray(9000, 9000), ('done', None)),
        'cmyk.jpg': (c('cmyk_icc.jpg'), ('done', None)),
        'cmyk_noicc.jpg': (c('cmyk_noicc.jpg'), ('done', None)),
        'deep16.png': (c('photo16.png'), ('done', None)),
    }


class HealthWatch(threading.Thread):
    """Polls /healthz every 100 ms until stopped; keeps every non-200 and the latencies."""

    def __init__(self, svc):
        super().__init__(daemon=True)
        self.svc = svc
        self.stopping = threading.Event()
        self.bad = []
        self.latencies = []

    def run(self):
        while not self.stopping.is_set():
            try:
                status, secs = timed_healthz(self.svc, timeout=5)
                self.latencies.append(secs)
                if status != 200:
                    self.bad.append(status)
            except OSError as e:
                self.bad.append(repr(e))
            self.stopping.wait(0.1)

    def stop(self):
        self.stopping.set()
        self.join()


class HostileInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix='resizer-hostile-')
        cdir = os.path.join(cls.tmp, 'corpus')
        subprocess.run([os.path.join(SOURCE_DIR, 'tests', 'corpus', 'make_corpus.sh'), cdir],
                       check=True, stdout=subprocess.DEVNULL)
        cls.cases = make_cases(cdir, cls.tmp)
        cls.s3 = S3Server()
        cls.svc = Resizer(cls.s3, env={'WORKERS': '2'})
        cls.watch = HealthWatch(cls.svc)
        cls.watch.start()
        cls.announced = {}
        cls.records = {}
        try:
            for name, (data, _) in cls.cases.items():
                put_source(cls.svc, 'images/' + name, data)
            for name, (data, _) in cls.cases.items():
                cls.announced[name] = announce(cls.svc, 'images/' + name, len(data))[0]
            for name in cls.cases:
                cls.records[name] = wait_record(cls.svc, key='images/' + name, timeout=60)
        finally:
            cls.watch.stop()
        cls.hwm_kb = proc_status_kb(cls.svc.proc.pid, 'VmHWM')
        sys.stderr.write('\nhostile: %d inputs, VmHWM %d MB, /healthz max %.1f ms\n'
                         % (len(cls.cases), cls.hwm_kb // 1024,
                            max(cls.watch.latencies) * 1000))

    @classmethod
    def tearDownClass(cls):
        cls.svc.close()
        cls.s3.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def variant_bytes(self, rec, name):
        key = [v['key'] for v in rec['variants'] if v['name'] == name][0]
        obj = self.s3.client().get_object(Bucket=self.svc.dest_bucket, Key=key)
        return obj['Body'].read()

    def vips_field(self, data, field):
        path = os.path.join(self.tmp, 'variant')
        with open(path, 'wb') as f:
            f.write(data)
        return subprocess.run(['vipsheader', '-f', field, path], check=True, capture_output=True,
                              text=True).stdout.strip()

    def test_every_event_was_accepted(self):
        self.assertEqual(set(self.announced.values()), {202}, self.announced)

    def test_each_input_ends_as_expected(self):
        for name, (_, (state, code)) in self.cases.items():
            with self.subTest(name):
                rec = self.records[name]
                self.assertEqual(rec['state'], state, rec)
                if state == 'failed':
                    self.assertEqual(rec['error']['code'], code, rec)
                    self.assertTrue(rec['error']['message'], rec)
                    self.assertEqual(rec['variants'], [], rec)
                else:
                    self.assertEqual([v['name'] for v in rec['variants']],
                                     ['desktop', 'tablet', 'phone'], rec)

    def test_done_variants_have_sane_sizes_in_s3(self):
        targets = {'desktop': 1920, 'tablet': 1024, 'phone': 640}
        for name, (_, (state, _code)) in self.cases.items():
            if state != 'done':
                continue
            rec = self.records[name]
            for v in rec['variants']:
                with self.subTest(name=name, variant=v['name']):
                    self.assertGreaterEqual(v['width'], 1)
                    self.assertGreaterEqual(v['height'], 1)
                    self.assertLessEqual(v['width'], targets[v['name']])
                    self.assertLessEqual(v['width'], rec['source']['width'])
                    data = self.variant_bytes(rec, v['name'])
                    self.assertEqual(int(self.vips_field(data, 'width')), v['width'])
                    self.assertEqual(int(self.vips_field(data, 'height')), v['height'])

    def test_strips_keep_one_pixel_at_least(self):
        wide = {v['name']: (v['width'], v['height']) for v in self.records['strip_wide.jpg']['variants']}
        self.assertEqual(wide, {'desktop': (1920, 1), 'tablet': (1024, 1), 'phone': (640, 1)})
        tall = {v['name']: (v['width'], v['height']) for v in self.records['strip_tall.jpg']['variants']}
        self.assertEqual(tall, {n: (1, 20000) for n in ('desktop', 'tablet', 'phone')})

    def test_polyglot_junk_does_not_reach_the_variants(self):
        for name, junk in (('jpeg_html.jpg', b'<script>'), ('gif_js.gif', b'alert(')):
            rec = self.records[name]
            for v in rec['variants']:
                with self.subTest(name=name, variant=v['name']):
                    self.assertNotIn(junk, self.variant_bytes(rec, v['name']))
        self.assertEqual(self.records['gif_js.gif']['source']['width'], 10799)

    def test_animated_gif_uses_the_first_frame(self):
        rec = self.records['frames_small.gif']
        self.assertEqual((rec['source']['width'], rec['source']['height']), (100, 100))
        path = os.path.join(self.tmp, 'frame')
        with open(path, 'wb') as f:
            f.write(self.variant_bytes(rec, 'phone'))
        point = subprocess.run(['vips', 'getpoint', path, '99', '99'], check=True,
                               capture_output=True, text=True).stdout.split()
        # Frame 0 is blue everywhere; the 999 later frames paint (0,0) red.
        self.assertEqual([round(float(x)) for x in point[:3]], [0, 0, 255], point)
        msg = self.records['frames_big.gif']['error']['message']
        self.assertIn('1000 page(s)', msg)

    def test_huge_exif_is_stripped(self):
        rec = self.records['exif_huge.jpg']
        for v in rec['variants']:
            data = self.variant_bytes(rec, v['name'])
            self.assertNotIn(b'Exif\0\0', data)
            self.assertNotIn(EXIF_MARK, data)

    def test_health_stayed_200(self):
        self.assertEqual(self.watch.bad, [])
        self.assertGreater(len(self.watch.latencies), 5)

    def test_peak_memory_is_bounded(self):
        if sanitized():
            self.skipTest('ASan build: its shadow memory makes VmHWM meaningless (health is '
                          'still checked)')
        self.assertLess(self.hwm_kb, MAX_HWM_KB, 'VmHWM %d kB' % self.hwm_kb)

    def test_jobs_counted_and_nothing_written_for_failures(self):
        text = metrics_text(self.svc)
        done = sum(1 for _, (st, _c) in self.cases.values() if st == 'done')
        self.assertEqual(metric(text, 'resizer_jobs_total', 'outcome="done"'), done)
        for code in ('unsupported_format', 'corrupt_image', 'too_many_pixels'):
            want = sum(1 for _, (st, c) in self.cases.values() if c == code)
            self.assertEqual(metric(text, 'resizer_jobs_total', 'outcome="%s"' % code), want, code)
        listing = self.s3.client().list_objects_v2(Bucket=self.svc.dest_bucket, Prefix='desktop/')
        keys = sorted(o['Key'] for o in listing.get('Contents', []))
        want = sorted(v['key'] for rec in self.records.values() for v in rec['variants']
                      if v['name'] == 'desktop')
        self.assertEqual(len(want), done)
        self.assertEqual(keys, want)


if __name__ == '__main__':
    unittest.main(verbosity=2)
