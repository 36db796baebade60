#!/usr/bin/python3
"""pillow_resize.py - the Pillow baselines for tests/bench/run, one image per process.

Usage: pillow_resize.py [-n N] reference|tuned FILE [OUTDIR]
       pillow_resize.py baseline

reference  the original Lambda's way, plainly: open, ImageOps.exif_transpose, and for each
           width a copy of the full-size image shrunk with thumbnail((w, huge)) -- Pillow's
           defaults (bicubic, reducing_gap 2.0) -- then saved. exif_transpose loads the full
           image, so thumbnail's own draft() has nothing left to shrink: three resizes from
           the fully decoded image.
tuned      what a careful Pillow user writes: draft('RGB', size) before the first load, so
           libjpeg decodes at 1/2, 1/4 or 1/8 scale (JPEG only; Pillow has no such path for
           PNG or WebP), then each variant resized from the previous, larger one (Lanczos,
           reducing_gap 3.0: reduce() by an integer factor first, then resample).

Both save what the service saves: the input's format, JPEG quality 85 (4:2:0, Pillow's
default), WebP quality 85, PNG with Pillow's defaults, no metadata (Pillow writes none unless
asked). Widths 1920/1024/640, never upscaled.

The file is read into memory first and the outputs are kept in memory: only the work between
is timed (CPU of this process from getrusage, and wall), N times (default 1), as in the C
drivers. Prints one JSON line: the first, cold, run and the median of the others, warm, as a
warm Lambda sees it: {"cpu","wall","cpu_warm","wall_warm","variants":[{"name","width",
"height","bytes"}]}; with OUTDIR, writes OUTDIR/<name>.<ext> of the last run afterwards.
baseline imports Pillow and exits: its peak RSS is the fixed cost of the interpreter."""

import io
import json
import os
import resource
import statistics
import sys
import time

from PIL import Image, ImageOps

VARIANTS = (('desktop', 1920), ('tablet', 1024), ('phone', 640))
HUGE = 10_000_000
SAVE = {'JPEG': ('jpg', {'quality': 85}), 'PNG': ('png', {}), 'WEBP': ('webp', {'quality': 85})}


def cpu_now():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def encode(img, fmt):
    out = io.BytesIO()
    img.save(out, fmt, **SAVE[fmt][1])
    return out.getvalue()


def reference(data):
    """The Lambda: open, upright, one thumbnail per width from the full image."""
    results = []
    with Image.open(io.BytesIO(data)) as src:
        fmt = src.format
        img = ImageOps.exif_transpose(src)
        for name, width in VARIANTS:
            variant = img.copy()
            variant.thumbnail((width, HUGE))
            results.append((name, variant.size, encode(variant, fmt)))
    return fmt, results


def fit(size, width):
    w, h = size
    if w <= width:
        return size
    return width, max(1, round(h * width / w))


def tuned(data):
    """draft() to the largest variant before decoding, then a chain of resizes."""
    results = []
    with Image.open(io.BytesIO(data)) as src:
        fmt = src.format
        orientation = src.getexif().get(0x0112, 1)
        largest = VARIANTS[0][1]
        if fmt == 'JPEG':
            w, h = fit(src.size if orientation < 5 else src.size[::-1], largest)
            src.draft('RGB', (w, h) if orientation < 5 else (h, w))
        img = ImageOps.exif_transpose(src)
        upright = img.size
        for name, width in VARIANTS:
            size = fit(upright, width)
            if img.size != size:
                img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
            results.append((name, img.size, encode(img, fmt)))
    return fmt, results


def main(argv):
    args = argv[1:]
    n = 1
    if len(args) >= 2 and args[0] == '-n' and args[1].isdigit() and 1 <= int(args[1]) <= 100:
        n = int(args[1])
        args = args[2:]
    if args == ['baseline']:
        print(json.dumps({'cpu': 0, 'wall': 0, 'variants': []}))
        return 0
    if len(args) not in (2, 3) or args[0] not in ('reference', 'tuned'):
        sys.stderr.write(__doc__)
        return 2
    with open(args[1], 'rb') as f:
        data = f.read()
    work = reference if args[0] == 'reference' else tuned
    cpu, wall = [], []
    for _ in range(n):
        results = None  # the previous run's outputs are freed first, as in the C drivers
        cpu0, wall0 = cpu_now(), time.monotonic()
        fmt, results = work(data)
        cpu.append(cpu_now() - cpu0)
        wall.append(time.monotonic() - wall0)
    if len(args) == 3:
        for name, _size, blob in results:
            with open(os.path.join(args[2], '%s.%s' % (name, SAVE[fmt][0])), 'wb') as f:
                f.write(blob)
    out = {'cpu': round(cpu[0], 6), 'wall': round(wall[0], 6)}
    if n > 1:
        out.update(cpu_warm=round(statistics.median(cpu[1:]), 6),
                   wall_warm=round(statistics.median(wall[1:]), 6))
    out['variants'] = [{'name': name, 'width': s[0], 'height': s[1], 'bytes': len(b)}
                       for name, s, b in results]
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
