#!/usr/bin/python3
"""bench.py - the measurements behind tests/bench/run (which installs, builds, then runs this).

Usage: bench.py --build DIR [--runs N] [--repeat N] [--e2e-images N] [--latency-samples N]
                [--http-seconds S] [--connections C] [--only images,e2e,http,formats]
                [--out FILE]

1. corpus   DIR/../bench-corpus: a real photograph (Kleiber_by_Lukas_Baubkus.jpg from Debian's
            lomiri-wallpapers-20.04) scaled to 12 MP and 48 MP JPEG (Q90), a 3000x3000 PNG with
            alpha (a centre square of it, soft round mask) and the 12 MP as WebP (Q90).
2. images   per image and case, --runs fresh processes each making the variants --repeat
            times: CPU and wall of that call (measured inside the process; the first call is
            "cold", the others "warm") and the process's peak RSS (/usr/bin/time), medians.
            Cases: the Pillow reference, Pillow tuned, bare libvips (three thumbnails; decode
            once), resizer's pipeline in-process. PSNR of every case's variants against the
            reference's; a perf profile when a CPU target is missed.
3. e2e      local S3 (deploy/local/s3-start, via tests/integration/harness.py) and the Release
            resizer (WORKERS = nproc): a burst of N 12 MP uploads' events, then N one at a time.
4. http     wrk on loopback against /healthz, POST /v1/uploads, POST /v1/events, and nginx
            answering a static 200 on the same machine.
5. formats  the 12 MP JPEG's three default variants as JPEG, WebP and AVIF at the default
            qualities: CPU of the JPEG-only path, of all three, of each variant and format
            alone; bytes and SSIM against the unencoded resize (issue 16's targets).
Writes --out (RESULTS.md) with every figure, and DIR/../bench-results.json with the raw data.
Debian's /usr/bin/python3 with python3-pil and python3-botocore only."""

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from PIL import Image, ImageChops
import PIL

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

PHOTO_PACKAGE = 'lomiri-wallpapers-20.04'
PHOTO = '/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg'
CORPUS_RECIPE = 'v1'
IMAGES = (  # name, file, what
    ('12mp-jpeg', '12mp.jpg', '4619x2598 JPEG Q90 (12.0 MP)'),
    ('48mp-jpeg', '48mp.jpg', '9238x5197 JPEG Q90 (48.0 MP), upscaled from the 20 MP original'),
    ('3000-png-alpha', '3000-alpha.png', '3000x3000 RGBA PNG (centre square, soft round alpha)'),
    ('12mp-webp', '12mp.webp', '4619x2598 WebP Q90 (12.0 MP)'),
)
VARIANTS = ('desktop', 'tablet', 'phone')
CASES = ('reference', 'pillow-tuned', 'vips-thumb3', 'vips-once', 'resizer')
CASE_TITLE = {
    'reference': 'Pillow reference (the Lambda)',
    'pillow-tuned': 'Pillow tuned (draft + chained resize)',
    'vips-thumb3': 'bare libvips, 3x vips_thumbnail_buffer',
    'vips-once': 'bare libvips, decode once + derive',
    'resizer': 'resizer pipeline (image_make_variants)',
}
# Variables the drivers would read; the benchmark runs the service's defaults.
SCRUB_ENV = ('VARIANTS', 'OUTPUT_FORMAT', 'OUTPUT_FORMATS', 'JPEG_QUALITY', 'WEBP_QUALITY',
             'AVIF_QUALITY', 'AVIF_EFFORT', 'BLURHASH_COMPONENTS', 'MAX_PIXELS', 'WATERMARK_TEXT',
             'WATERMARK_IMAGE')
# Issue 16: every default variant in each web format, at the service's default qualities.
WEB_FORMATS = ('jpeg', 'webp', 'avif')
DEFAULT_VARIANTS = (('desktop', 1920), ('tablet', 1024), ('phone', 640))


def log(msg):
    sys.stderr.write('bench: %s\n' % msg)
    sys.stderr.flush()


def sh(argv, **kw):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          **kw).stdout.decode(errors='replace')


def median(xs):
    return statistics.median(xs) if xs else float('nan')


def pct(xs, p):
    """The p-th percentile (nearest rank) of xs."""
    xs = sorted(xs)
    if not xs:
        return float('nan')
    return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]


# -- machine and versions ---------------------------------------------------------------------

def machine_facts():
    cpu = 'unknown'
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    mem = 0
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemTotal:'):
                mem = int(line.split()[1]) * 1024
    return {'nproc': os.cpu_count(), 'cpu': cpu, 'memory_gib': round(mem / 2**30, 1),
            'kernel': platform.release(), 'loadavg_start': os.getloadavg()}


def first_line(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return p.stdout.decode(errors='replace').strip().splitlines()[0]
    except (OSError, IndexError):
        return 'unavailable'


def dpkg_version(pkg):
    return first_line(['dpkg-query', '-W', '-f=${Version}', pkg])


def versions(build):
    git = first_line(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'])
    dirty = subprocess.run(['git', '-C', REPO, 'diff', '--quiet', 'HEAD'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return {
        'git': git,
        'resizer': '%s (git %s%s)' % (first_line([os.path.join(build, 'resizer'), '--version']),
                                      git, ', with uncommitted changes' if dirty else ''),
        'libvips': first_line(['pkg-config', '--modversion', 'vips']) + ' (Debian %s)'
        % dpkg_version('libvips42'),
        'Pillow': '%s (Debian python3-pil %s)' % (PIL.__version__, dpkg_version('python3-pil')),
        'Python': platform.python_version(),
        'nginx': first_line(['nginx', '-v']).replace('nginx version: ', ''),
        'wrk': first_line(['wrk', '-v']).split(' [')[0],
        'compiler': first_line(['cc', '--version']),
    }


# -- corpus -----------------------------------------------------------------------------------

def make_corpus(cdir):
    stamp = os.path.join(cdir, '.recipe')
    want = '%s %s %d' % (CORPUS_RECIPE, PHOTO, os.path.getsize(PHOTO))
    if os.path.exists(stamp) and open(stamp).read() == want:
        return
    log('making the corpus in %s from %s' % (cdir, PHOTO))
    os.makedirs(cdir, exist_ok=True)
    p = lambda name: os.path.join(cdir, name)
    # Width-bound thumbnails keep the 6028x3391 aspect; --size both allows the 48 MP upscale.
    sh(['vips', 'thumbnail', PHOTO, p('12mp.jpg') + '[Q=90]', '4619', '--height', '10000000'])
    sh(['vips', 'thumbnail', PHOTO, p('48mp.jpg') + '[Q=90]', '9238', '--height', '10000000',
        '--size', 'both'])
    sh(['vips', 'copy', p('12mp.jpg'), p('12mp.webp') + '[Q=90]'])
    with Image.open(PHOTO) as im:
        side = min(im.size)
        left = (im.size[0] - side) // 2
        square = im.crop((left, 0, left + side, side)).resize((3000, 3000), Image.LANCZOS)
    # A cut-out: opaque disc, soft edge, transparent corners.
    grad = Image.radial_gradient('L').resize((3000, 3000), Image.BICUBIC)
    alpha = grad.point(lambda v: 255 if v < 150 else max(0, 255 - (v - 150) * 5))
    square.putalpha(alpha)
    square.save(p('3000-alpha.png'))
    with open(stamp, 'w') as f:
        f.write(want)


# -- per-image cases ----------------------------------------------------------------------------

def case_argv(case, build, repeat=1):
    """The driver's command line up to (not including) FILE [OUTDIR]."""
    prog, mode = {
        'reference': (['/usr/bin/python3', os.path.join(HERE, 'pillow_resize.py')], 'reference'),
        'pillow-tuned': (['/usr/bin/python3', os.path.join(HERE, 'pillow_resize.py')], 'tuned'),
        'vips-thumb3': ([os.path.join(build, 'vips_floor')], 'thumb3'),
        'vips-once': ([os.path.join(build, 'vips_floor')], 'once'),
        'resizer': ([os.path.join(build, 'pipeline_bench')], None),
    }[case]
    return prog + ['-n', str(repeat)] + ([mode] if mode else [])


def baseline_argv(case, build):
    prog = case_argv(case, build)
    if case in ('reference', 'pillow-tuned'):
        return prog[:2] + ['baseline']
    return prog[:1] + ['--baseline']


def child_env(case):
    env = {k: v for k, v in os.environ.items()
           if k not in SCRUB_ENV and not k.startswith('VIPS_')}
    if case.startswith('vips-'):
        env['VIPS_CONCURRENCY'] = '1'  # what image_init() sets for the service
    return env


def run_child(argv, env):
    """Runs argv to completion under /usr/bin/time, whose own small process is what the child
    forks from: a child forked from this (large) Python would inherit its peak RSS in
    ru_maxrss. Returns (the child's JSON line, {'proc_cpu', 'proc_wall', 'rss_kb'})."""
    with tempfile.NamedTemporaryFile() as tm, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:
        proc = subprocess.run(['/usr/bin/time', '-f', '%U %S %e %M', '-o', tm.name, '--'] + argv,
                              stdout=out, stderr=err, env=env)
        out.seek(0)
        err.seek(0)
        text, errtext = out.read().decode(), err.read().decode(errors='replace')
        user, system, wall, rss = open(tm.name).read().split()[-4:]
    if proc.returncode != 0:
        raise RuntimeError('%s exited %d: %s' % (' '.join(argv), proc.returncode, errtext[-2000:]))
    return json.loads(text.strip().splitlines()[-1]), {
        'proc_cpu': float(user) + float(system), 'proc_wall': float(wall), 'rss_kb': int(rss)}


def measure_images(build, cdir, outroot, runs, repeat):
    samples = {}  # 'image|case' -> list of dicts
    baselines = {}
    for case in CASES:
        b = [run_child(baseline_argv(case, build), child_env(case))[1] for _ in range(3)]
        baselines[case] = {'rss_kb': median([x['rss_kb'] for x in b]),
                           'cpu': median([x['proc_cpu'] for x in b])}
    for run in range(runs):
        log('images: run %d of %d' % (run + 1, runs))
        for image, fname, _ in IMAGES:
            # Rotate the case order each run so no case always follows the same one.
            order = CASES[run % len(CASES):] + CASES[:run % len(CASES)]
            for case in order:
                argv = case_argv(case, build, repeat) + [os.path.join(cdir, fname)]
                if run == runs - 1:
                    outdir = os.path.join(outroot, case, image)
                    os.makedirs(outdir, exist_ok=True)
                    argv.append(outdir)
                res, ru = run_child(argv, child_env(case))
                res.update(ru)
                samples.setdefault('%s|%s' % (image, case), []).append(res)
    summary = {}
    for key, xs in samples.items():
        warm = [x.get('cpu_warm', x['cpu']) for x in xs]
        summary[key] = {
            'cpu_warm': median(warm),
            'cpu_cold': median([x['cpu'] for x in xs]),
            'wall_warm': median([x.get('wall_warm', x['wall']) for x in xs]),
            'rss_kb': median([x['rss_kb'] for x in xs]),
            'cpu_warm_all': [round(x, 4) for x in warm],
            'variants': xs[-1]['variants'],
            'bytes': sum(v['bytes'] for v in xs[-1]['variants']),
        }
    return {'summary': summary, 'baseline': baselines, 'runs': runs, 'repeat': repeat}


# -- formats (issue 16) ---------------------------------------------------------------------------

def pipeline_cpu(build, path, runs, repeat, env, ssim=False):
    """Median warm CPU of image_make_variants over runs processes, and the last run's
    variants (bytes, and SSIM with ssim)."""
    argv = [os.path.join(build, 'pipeline_bench'), '-n', str(repeat)] + (['-s'] if ssim else [])
    cpus, last = [], None
    for _ in range(runs):
        last, _ru = run_child(argv + [path], dict(child_env('resizer'), **env))
        cpus.append(last.get('cpu_warm', last['cpu']))
    return median(cpus), last['variants']


def measure_formats(build, cdir, runs, repeat):
    """For the 12 MP JPEG: the JPEG-only path and all three formats of the three default
    variants (CPU of the call), each format alone, and each variant in each format alone (decode
    included); bytes and SSIM of every file against the unencoded resize."""
    path = os.path.join(cdir, '12mp.jpg')
    out = {'single': {}, 'each': {}}
    log('formats: JPEG only, all three, and each alone')
    out['jpeg_only'], _ = pipeline_cpu(build, path, runs, repeat, {'OUTPUT_FORMATS': 'jpeg'})
    out['all'], out['files'] = pipeline_cpu(build, path, runs, repeat,
                                            {'OUTPUT_FORMATS': ','.join(WEB_FORMATS)}, ssim=True)
    for fmt in WEB_FORMATS:
        out['single'][fmt], _ = pipeline_cpu(build, path, runs, repeat, {'OUTPUT_FORMATS': fmt})
        for name, width in DEFAULT_VARIANTS:
            out['each']['%s|%s' % (name, fmt)], _ = pipeline_cpu(
                build, path, runs, repeat,
                {'OUTPUT_FORMATS': fmt, 'VARIANTS': '%s:%d' % (name, width)})
    return out


def formats_targets(f):
    """(what, figure, ok) of issue 16's targets."""
    files = {(v['name'], v['format']): v for v in f['files']}
    total = {fmt: sum(v['bytes'] for (n, x), v in files.items() if x == fmt)
             for fmt in WEB_FORMATS}
    ratio = f['all'] / f['jpeg_only']
    rows = [('all three formats of the three variants within 2.5x the CPU of the JPEG-only path',
             '%.3f s vs %.3f s: %.2fx' % (f['all'], f['jpeg_only'], ratio), ratio <= 2.5)]
    for fmt, limit in (('avif', 0.5), ('webp', 0.75)):
        r = total[fmt] / total['jpeg']
        worst = max(files[(n, 'jpeg')]['ssim'] - files[(n, fmt)]['ssim']
                    for n, _ in DEFAULT_VARIANTS)
        rows.append(('%s at most %d%% of JPEG\'s bytes' % (fmt.upper(), limit * 100),
                     '%d / %d bytes: %.0f%%' % (total[fmt], total['jpeg'], r * 100), r <= limit))
        rows.append(('%s within 0.01 SSIM of JPEG\'s, every variant' % fmt.upper(),
                     'largest gap %.4f' % worst, worst <= 0.01))
    return rows


def formats_section(res):
    f = res['formats']
    files = {(v['name'], v['format']): v for v in f['files']}
    out = ['', '## Formats (issue 16)', '',
           'The 12 MP JPEG (%s), the three default variants, each format at the service\'s '
           'default (JPEG_QUALITY 85; WEBP_QUALITY 85, effort 1; AVIF_QUALITY 64, '
           'AVIF_EFFORT 0). CPU: image_make_variants in-process (pipeline_bench), warm, median '
           'of %d processes; "alone" is one variant in one format, its decode included. SSIM: '
           'luma, 11x11 Gaussian window, against the source decoded whole and resized to the '
           'variant\'s size in one Lanczos3 step, unencoded (pipeline_bench -s).'
           % (IMAGES[0][2], res['formats_runs']), '',
           '| variant | format | bytes | vs JPEG | SSIM | CPU alone |', '|---|---|---|---|---|---|']
    for name, _ in DEFAULT_VARIANTS:
        for fmt in WEB_FORMATS:
            v = files[(name, fmt)]
            out.append('| %s %dx%d | %s | %d | %.0f%% | %.4f | %.3f s |'
                       % (name, v['width'], v['height'], fmt, v['bytes'],
                          100.0 * v['bytes'] / files[(name, 'jpeg')]['bytes'], v['ssim'],
                          f['each']['%s|%s' % (name, fmt)]))
    out += ['', '| path (three variants) | CPU |', '|---|---|',
            '| JPEG only (OUTPUT_FORMATS=jpeg) | %.3f s |' % f['jpeg_only']]
    out += ['| %s only | %.3f s |' % (fmt, f['single'][fmt]) for fmt in WEB_FORMATS[1:]]
    out += ['| jpeg,webp,avif (one decode) | %.3f s |' % f['all'], '',
            '| target | figure | met |', '|---|---|---|']
    out += ['| %s | %s | %s |' % (t, fig, mark(ok)) for t, fig, ok in formats_targets(f)]
    return out


def splice_section(path, lines, title):
    """Replaces the section starting at the line `title` in path (to the next "## ") with
    lines, or appends them."""
    text = open(path).read().split('\n') if os.path.exists(path) else []
    try:
        start = text.index(title)
        end = next((i for i in range(start + 1, len(text)) if text[i].startswith('## ')),
                   len(text))
        text = text[:start - 1] + lines + [''] + text[end:]
    except ValueError:
        text = text + lines
    with open(path, 'w') as f:
        f.write('\n'.join(text).rstrip('\n') + '\n')


# -- quality --------------------------------------------------------------------------------

def flat_rgb(path):
    """The pixels a viewer sees: RGB, alpha composited over white."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ('RGBA', 'LA', 'PA') or (im.mode == 'P' and 'transparency' in im.info):
            im = im.convert('RGBA')
            bg = Image.new('RGBA', im.size, (255, 255, 255, 255))
            bg.alpha_composite(im)
            return bg.convert('RGB')
        return im.convert('RGB')


def psnr(ref_path, path):
    a, b = flat_rgb(ref_path), flat_rgb(path)
    resized = a.size != b.size
    if resized:
        b = b.resize(a.size, Image.LANCZOS)
    hist = ImageChops.difference(a, b).histogram()
    sq = sum(n * (i % 256) ** 2 for i, n in enumerate(hist))
    mse = sq / (a.size[0] * a.size[1] * 3)
    return (float('inf') if mse == 0 else 10 * math.log10(255 ** 2 / mse)), resized


def find_variant(d, name):
    for f in os.listdir(d):
        if f.split('.')[0] == name:
            return os.path.join(d, f)
    raise RuntimeError('no %s variant in %s' % (name, d))


def measure_quality(outroot):
    q = {}
    for image, _, _ in IMAGES:
        ref_dir = os.path.join(outroot, 'reference', image)
        for case in CASES[1:]:
            for name in VARIANTS:
                value, resized = psnr(find_variant(ref_dir, name),
                                      find_variant(os.path.join(outroot, case, image), name))
                q['%s|%s|%s' % (image, case, name)] = {'psnr': value, 'resized': resized}
    return q


# -- profile when a CPU target is missed ----------------------------------------------------------

PROFILED = ('resizer', 'vips-once', 'pillow-tuned')


def profile(build, cdir, case, reps=10):
    """Where the CPU goes: perf record (cpu-clock; hardware counters are often unavailable in
    containers) over one process making the 12 MP JPEG's variants reps times, so start-up is
    a small part; by shared object, then the kernel's top symbols (page faults, ...)."""
    fd, data = tempfile.mkstemp(suffix='.perf')
    os.close(fd)
    argv = case_argv(case, build, reps) + [os.path.join(cdir, '12mp.jpg')]
    try:
        subprocess.run(['perf', 'record', '-q', '-e', 'cpu-clock', '-F', '2000', '-o', data,
                        '--'] + argv, env=child_env(case), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        by_dso = sh(['perf', 'report', '-i', data, '--no-children', '--sort', 'dso', '--stdio'])
        kernel = sh(['perf', 'report', '-i', data, '--no-children', '--sort', 'sym', '--dsos',
                     '[kernel.kallsyms]', '--stdio'])
    except (OSError, subprocess.CalledProcessError) as e:
        return 'perf unavailable: %s' % e
    finally:
        os.unlink(data)
    keep = lambda text, n: [l.rstrip() for l in text.splitlines()
                            if '%' in l and not l.startswith('#')][:n]
    return '\n'.join(keep(by_dso, 8) + ['  kernel, top symbols:'] + keep(kernel, 5))


# -- end to end -------------------------------------------------------------------------------

def parse_time(s):
    return datetime.datetime.strptime(s, '%Y-%m-%dT%H:%M:%S.%fZ').replace(
        tzinfo=datetime.timezone.utc).timestamp()


def proc_status(pid):
    out = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(('VmHWM:', 'VmRSS:')):
                out[line.split(':')[0]] = int(line.split()[1])
    return out


def proc_cpu(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def eventbridge_event(bucket, key, size, etag):
    """The S3 "Object Created" event as EventBridge's API destination delivers it."""
    return {
        'version': '0', 'id': str(uuid.uuid4()), 'detail-type': 'Object Created',
        'source': 'aws.s3', 'account': '111122223333',
        'time': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'region': 'us-east-1', 'resources': ['arn:aws:s3:::' + bucket],
        'detail': {'version': '0', 'bucket': {'name': bucket},
                   'object': {'key': key, 'size': size, 'etag': etag,
                              'sequencer': '%016x' % int(time.time() * 1e6)},
                   'request-id': 'BENCH', 'requester': '123456789012',
                   'source-ip-address': '127.0.0.1', 'reason': 'PutObject'}}


def run_e2e(build, cdir, n, samples):
    import fixtures
    import harness
    os.environ['RESIZER_BIN'] = os.path.join(build, 'resizer')
    log('e2e: starting the local S3 server')
    s3 = harness.S3Server(private=True)
    svc = harness.Resizer(s3, env={'WORKERS': os.cpu_count(), 'LOG_LEVEL': 'info'})
    client = s3.client()
    auth = {'Authorization': 'Bearer ' + harness.API_TOKEN}
    evkey = {'x-api-key': harness.EVENTS_API_KEY}
    with open(os.path.join(cdir, '12mp.jpg'), 'rb') as f:
        data = f.read()

    def put(key):
        r = client.put_object(Bucket=svc.src_bucket, Key=key, Body=data, ContentType='image/jpeg')
        return r['ETag'].strip('"')

    def post_event(key, etag):
        code, _, body = harness.json_http('POST', svc.url('/v1/events'),
                                          eventbridge_event(svc.src_bucket, key, len(data), etag),
                                          headers=evkey)
        if code != 202 or body.get('accepted') != 1:
            raise RuntimeError('event for %s: %d %r' % (key, code, body))

    log('e2e: uploading %d images' % n)
    keys = ['images/bench/%03d.jpg' % i for i in range(n)]
    etags = [put(k) for k in keys]
    idle = proc_status(svc.proc.pid)
    cpu0 = proc_cpu(svc.proc.pid)
    log('e2e: posting %d events' % n)
    t0 = time.time()
    for k, e in zip(keys, etags):
        post_event(k, e)
    t_posted = time.time()

    def all_finished():
        _, _, body = harness.json_http('GET', svc.url('/v1/images?limit=200'), headers=auth)
        mine = [i for i in body['items'] if i['source']['key'] in keys]
        fin = [i for i in mine if i['state'] in ('done', 'failed')]
        return mine if len(fin) == n else None

    items = fixtures.wait_for(all_finished, timeout=60 + n * 10, interval=0.1,
                              what='%d images done' % n)
    cpu1 = proc_cpu(svc.proc.pid)
    peak = proc_status(svc.proc.pid)
    failed = [i for i in items if i['state'] != 'done']
    if failed:
        raise RuntimeError('e2e: %d images failed, e.g. %r' % (len(failed), failed[0]['error']))
    finished = [parse_time(i['finished_at']) for i in items]
    lat = [parse_time(i['finished_at']) - parse_time(i['created_at']) for i in items]
    burst = {
        'n': n, 'seconds': max(finished) - t0, 'throughput': n / (max(finished) - t0),
        'post_seconds': t_posted - t0, 'p50': pct(lat, 50), 'p95': pct(lat, 95),
        'max': max(lat), 'service_cpu_per_image': (cpu1 - cpu0) / n,
        'rss_idle_kb': idle['VmRSS'], 'vmhwm_kb': peak['VmHWM'],
    }
    log('e2e: %d images one at a time' % samples)
    single = []
    for i in range(samples):
        key = 'images/bench/single-%03d.jpg' % i
        etag = put(key)
        t_up = time.time()
        post_event(key, etag)

        def done(key=key):
            _, _, body = harness.json_http('GET', svc.url('/v1/images?key=' + key), headers=auth)
            it = (body.get('items') or [None])[0] if 'items' in body else body
            return it if it and it.get('state') in ('done', 'failed') else None

        it = fixtures.wait_for(done, timeout=60, interval=0.01, what=key)
        if it['state'] != 'done':
            raise RuntimeError('e2e: %s failed: %r' % (key, it.get('error')))
        single.append(parse_time(it['finished_at']) - t_up)
    burst['single'] = {'n': samples, 'p50': pct(single, 50), 'max': max(single),
                       'all': [round(x, 3) for x in single]}
    burst['vmhwm_end_kb'] = proc_status(svc.proc.pid)['VmHWM']
    svc.close()
    s3.close()
    return burst


# -- HTTP -------------------------------------------------------------------------------------

UNITS = {'us': 1e-3, 'ms': 1.0, 's': 1e3, 'm': 60e3}


def parse_wrk(text):
    def ms(v):
        m = re.match(r'([\d.]+)(us|ms|s|m)$', v)
        return float(m.group(1)) * UNITS[m.group(2)]
    out = {'raw': text}
    m = re.search(r'Requests/sec:\s+([\d.]+)', text)
    out['rps'] = float(m.group(1))
    m = re.search(r'(\d+) requests in ([\d.]+)(us|ms|s|m)', text)
    out['requests'] = int(m.group(1))
    out['duration_s'] = ms(m.group(2) + m.group(3)) / 1e3
    for p in ('50', '90', '99'):
        m = re.search(r'^\s+%s%%\s+(\S+)' % p, text, re.M)
        out['p' + p] = ms(m.group(1))
    m = re.search(r'Non-2xx or 3xx responses: (\d+)', text)
    out['non2xx'] = int(m.group(1)) if m else 0
    m = re.search(r'Socket errors: (.*)', text)
    out['socket_errors'] = m.group(1).strip() if m else ''
    return out


def wrk(url, seconds, conns, script=None, env=None):
    argv = ['wrk', '-t2', '-c%d' % conns, '-d%ds' % seconds, '--latency']
    if script:
        argv += ['-s', os.path.join(HERE, script)]
    argv.append(url)
    text = sh(argv, env=dict(os.environ, **(env or {})))
    r = parse_wrk(text)
    r['command'] = ' '.join([os.path.relpath(a, REPO) if a.startswith(HERE) else a
                             for a in argv[:-1]] + [re.sub(r':\d+/', ':PORT/', url)])
    return r


def start_nginx(root, port):
    d = os.path.join(root, 'bench-nginx')
    os.makedirs(os.path.join(d, 'tmp'), exist_ok=True)
    conf = os.path.join(d, 'nginx.conf')
    with open(conf, 'w') as f:
        f.write('''# Written by tests/bench/bench.py: a static 200, the yardstick for the service's routes.
daemon off;
worker_processes auto;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log %(d)s/access.log;
    client_body_temp_path %(d)s/tmp/body;
    proxy_temp_path %(d)s/tmp/proxy;
    fastcgi_temp_path %(d)s/tmp/fastcgi;
    uwsgi_temp_path %(d)s/tmp/uwsgi;
    scgi_temp_path %(d)s/tmp/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:%(port)d;
        default_type text/plain;
        location / { return 200 'ok'; }
    }
}
''' % {'d': d, 'port': port})
    for old in ('access.log', 'error.log'):
        if os.path.exists(os.path.join(d, old)):
            os.unlink(os.path.join(d, old))
    proc = subprocess.Popen(['nginx', '-p', d, '-e', os.path.join(d, 'error.log'), '-c', conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    import fixtures
    import harness
    try:
        fixtures.wait_for(lambda: harness.http('GET', 'http://127.0.0.1:%d/' % port)[0] == 200,
                          timeout=10, what='nginx on port %d (log: %s/error.log)' % (port, d))
    except AssertionError:
        stop_nginx(proc)
        raise
    return proc, conf


def stop_nginx(proc):
    # The master and its workers are one session of their own (start_new_session).
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def profile_service(svc, conns, lua_env, seconds=5):
    """perf record (cpu-clock) of the running service while wrk posts /v1/uploads: its top
    symbols, so a missed HTTP target says where the time goes."""
    fd, data = tempfile.mkstemp(suffix='.perf')
    os.close(fd)
    try:
        perf = subprocess.Popen(['perf', 'record', '-q', '-e', 'cpu-clock', '-F', '1999', '-p',
                                 str(svc.proc.pid), '-o', data, '--', 'sleep', str(seconds)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wrk(svc.url('/v1/uploads'), seconds, conns, 'wrk_uploads.lua', lua_env)
        perf.wait(timeout=60)
        by_dso = sh(['perf', 'report', '-i', data, '--no-children', '--sort', 'dso',
                     '--stdio'])
        by_sym = sh(['perf', 'report', '-i', data, '--no-children', '--sort', 'dso,sym',
                     '--stdio'])
    except (OSError, subprocess.SubprocessError) as e:
        return 'perf unavailable: %s' % e
    finally:
        os.unlink(data)
    keep = lambda text, n: [l.rstrip() for l in text.splitlines()
                            if '%' in l and not l.startswith('#')][:n]
    return '\n'.join(keep(by_dso, 8) + ['  top symbols:'] + keep(by_sym, 20))


def metric(svc, name, labels):
    import harness
    _, _, body = harness.http('GET', svc.url('/metrics'))
    m = re.search(r'^%s\{%s\} ([\d.e+]+)$' % (re.escape(name), re.escape(labels)),
                  body.decode(), re.M)
    return float(m.group(1)) if m else 0.0


def run_http(build, root, seconds, conns, baseline=None):
    import harness
    os.environ['RESIZER_BIN'] = os.path.join(build, 'resizer')
    results = {}
    port = harness.free_port()
    nginx, conf = start_nginx(root, port)
    try:
        log('http: nginx static 200')
        results['nginx'] = wrk('http://127.0.0.1:%d/' % port, seconds, conns)
    finally:
        stop_nginx(nginx)
    results['nginx']['config'] = os.path.relpath(conf, REPO)
    # S3 is never reached in these runs: presigning is local, and events are for intake only.
    # The endpoint is a closed loopback port, so a job's download is refused and retried with
    # backoff: the one worker sleeps, and the events figure is intake (auth, parse, filter,
    # dedup, index, queue), not processing. Big queue and index: the caps are not measured.
    fake = harness.S3Server.__new__(harness.S3Server)
    fake.owned, fake.dir = True, None  # private: nothing to register, nothing to stop
    fake._env = {'S3_ENDPOINT': 'http://127.0.0.1:%d' % harness.free_port(),
                 'S3_FORCE_PATH_STYLE': 'true', 'AWS_REGION': 'us-east-1',
                 'AWS_ACCESS_KEY_ID': 'bench', 'AWS_SECRET_ACCESS_KEY': 'bench-secret'}
    svc_env = {'WORKERS': 1, 'QUEUE_SIZE': 1000000, 'INDEX_MAX_ENTRIES': 5000000,
               'LOG_LEVEL': 'info'}
    svc = harness.Resizer(fake, env=svc_env, src_bucket='bench-src', dest_bucket='bench-dest')
    try:
        lua_env = {'BENCH_TOKEN': harness.API_TOKEN, 'BENCH_EVENTS_KEY': harness.EVENTS_API_KEY,
                   'BENCH_SRC_BUCKET': 'bench-src', 'BENCH_RUN': uuid.uuid4().hex[:8]}
        log('http: resizer GET /healthz')
        results['healthz'] = wrk(svc.url('/healthz'), seconds, conns)
        log('http: resizer POST /v1/uploads')
        results['uploads'] = wrk(svc.url('/v1/uploads'), seconds, conns, 'wrk_uploads.lua',
                                 lua_env)
        up = results['uploads']
        if up['rps'] < 0.5 * results['nginx']['rps'] or up['p99'] >= 5 or baseline:
            log('http: profiling the service under wrk (a target missed, or before/after)')
            results['uploads_profile'] = profile_service(svc, conns, lua_env)
        log('http: resizer POST /v1/events')
        before = metric(svc, 'resizer_events_total', 'outcome="accepted"')
        results['events'] = wrk(svc.url('/v1/events'), seconds, conns, 'wrk_events.lua', lua_env)
        accepted = metric(svc, 'resizer_events_total', 'outcome="accepted"') - before
        results['events']['accepted'] = accepted
        results['events']['accepted_per_s'] = accepted / results['events']['duration_s']
        results['service_env'] = svc_env
        results['service_vmhwm_kb'] = proc_status(svc.proc.pid)['VmHWM']
    finally:
        svc.close()
    if baseline:
        results['uploads_baseline'] = uploads_on(baseline, fake, svc_env, seconds, conns)
        results['uploads_again'] = uploads_on(build, fake, svc_env, seconds, conns)
    return results


def uploads_on(build, fake, svc_env, seconds, conns):
    """POST /v1/uploads on a fresh service from build (a baseline next to this build)."""
    import harness
    os.environ['RESIZER_BIN'] = os.path.join(build, 'resizer')
    svc = harness.Resizer(fake, env=svc_env, src_bucket='bench-src', dest_bucket='bench-dest')
    try:
        lua_env = {'BENCH_TOKEN': harness.API_TOKEN, 'BENCH_SRC_BUCKET': 'bench-src'}
        log('http: POST /v1/uploads on %s' % build)
        r = wrk(svc.url('/v1/uploads'), seconds, conns, 'wrk_uploads.lua', lua_env)
        r['profile'] = profile_service(svc, conns, lua_env)
        return r
    finally:
        svc.close()


# -- soak: memory over time ---------------------------------------------------------------------

SOAK_KINDS = (  # name, file, what
    ('jpeg', 'soak.jpg', '1600x900 JPEG Q90'),
    ('png-alpha', 'soak-alpha.png', '800x800 RGBA PNG (the alpha cut-out, smaller)'),
    ('webp', 'soak.webp', '1600x900 WebP Q90'),
    ('cmyk', 'soak-cmyk.jpg', '1200x675 CMYK JPEG Q90 (no profile: the built-in one applies)'),
    ('tiff16', 'soak-16.tif', '1200x675 16-bit RGB TIFF, deflate'),
)
SOAK_RECIPE = 'v1'


def baseline_label(args):
    return args.baseline_label


def make_soak_corpus(cdir):
    p = lambda name: os.path.join(cdir, name)
    stamp = p('.soak-recipe')
    if os.path.exists(stamp) and open(stamp).read() == SOAK_RECIPE:
        return
    log('soak: making the mixed corpus in %s' % cdir)
    sh(['vips', 'thumbnail', p('12mp.jpg'), p('soak.jpg') + '[Q=90]', '1600'])
    sh(['vips', 'thumbnail', p('3000-alpha.png'), p('soak-alpha.png'), '800'])
    sh(['vips', 'copy', p('soak.jpg'), p('soak.webp') + '[Q=90]'])
    with tempfile.TemporaryDirectory() as t:
        small = os.path.join(t, 'small.v')
        wide = os.path.join(t, 'wide.v')
        u16 = os.path.join(t, 'u16.v')
        sh(['vips', 'thumbnail', p('soak.jpg'), small, '1200'])
        sh(['vips', 'icc_export', small, p('soak-cmyk.jpg') + '[Q=90]', '--output-profile', 'cmyk'])
        sh(['vips', 'linear', small, wide, '257', '0'])
        sh(['vips', 'cast', wide, u16, 'ushort'])
        sh(['vips', 'copy', u16, p('soak-16.tif') + '[compression=deflate]',
            '--interpretation', 'rgb16'])
    with open(stamp, 'w') as f:
        f.write(SOAK_RECIPE)


def run_soak(build, cdir, n, env_extra=None, label='as built'):
    """n mixed images (the five SOAK_KINDS in turn) through the local S3 and the service with
    WORKERS=2; the service's RSS sampled every 0.25 s while they run and for 10 s after."""
    import fixtures
    import harness
    import threading
    make_soak_corpus(cdir)
    os.environ['RESIZER_BIN'] = os.path.join(build, 'resizer')
    s3 = harness.S3Server(private=True)
    env = {'WORKERS': 2, 'LOG_LEVEL': 'warn', 'QUEUE_SIZE': n + 10,
           'INDEX_MAX_ENTRIES': n * 2 + 100}
    env.update(env_extra or {})
    svc = harness.Resizer(s3, env=env)
    client = s3.client()
    evkey = {'x-api-key': harness.EVENTS_API_KEY}
    kinds = []
    for kind, fname, _ in SOAK_KINDS:
        with open(os.path.join(cdir, fname), 'rb') as f:
            data = f.read()
        kinds.append((kind, data))
    # One object per kind, copied server-side: the S3 server's time is not what is measured.
    srcs = []
    for kind, data in kinds:
        key = 'images/soak/src-%s' % kind
        etag = client.put_object(Bucket=svc.src_bucket, Key=key, Body=data)['ETag'].strip('"')
        srcs.append((kind, key, len(data), etag))
    pid = svc.proc.pid
    time.sleep(1)
    idle = proc_status(pid)['VmRSS']
    samples = []  # (seconds since start, images done, RSS kB)
    stop = threading.Event()

    def done_count():
        try:
            return int(metric(svc, 'resizer_jobs_total', 'outcome="done"'))
        except Exception:  # a scrape that fails is retried at the next sample
            return None

    def sampler():
        last = 0
        while not stop.is_set():
            d = done_count()
            last = d if d is not None else last
            samples.append((time.monotonic() - t0, last, proc_status(pid)['VmRSS']))
            stop.wait(0.25)

    t0 = time.monotonic()
    cpu0 = proc_cpu(pid)
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    log('soak (%s): %d images, WORKERS=2' % (label, n))
    posted = 0
    try:
        while posted < n:
            # Keep at most 16 waiting: a steady load, not one burst into the queue.
            if posted - (samples[-1][1] if samples else 0) >= 16:
                time.sleep(0.05)
                continue
            kind, src, size, etag = srcs[posted % len(srcs)]
            key = 'images/soak/%05d-%s' % (posted, kind)
            r = client.copy_object(Bucket=svc.src_bucket, Key=key,
                                   CopySource={'Bucket': svc.src_bucket, 'Key': src})
            etag = r['CopyObjectResult']['ETag'].strip('"')
            code, _, body = harness.json_http('POST', svc.url('/v1/events'),
                                              eventbridge_event(svc.src_bucket, key, size, etag),
                                              headers=evkey)
            if code != 202:
                raise RuntimeError('soak: event for %s: %d %r' % (key, code, body))
            posted += 1
        fixtures.wait_for(lambda: (done_count() or 0) + failed_count(svc) >= n,
                          timeout=60 + n, interval=0.25, what='%d soak images' % n)
        t_done = time.monotonic() - t0
        cpu = proc_cpu(pid) - cpu0
        time.sleep(10)
    finally:
        stop.set()
        th.join()
        vmhwm = proc_status(pid)['VmHWM']
        failed = failed_count(svc)
        svc.close()
        try:
            s3.close()
        except subprocess.TimeoutExpired:  # a loaded machine: the figures are in already
            log('soak: the local S3 server was slow to stop')
    during = [s for s in samples if s[0] <= t_done]
    tail = during[len(during) * 2 // 3:]
    return {
        'label': label, 'env': {k: str(v) for k, v in (env_extra or {}).items()}, 'n': n,
        'failed': failed, 'seconds': t_done, 'images_per_s': n / t_done,
        'cpu_per_image': cpu / n, 'rss_idle_kb': idle, 'vmhwm_kb': vmhwm,
        'rss_plateau_kb': median([s[2] for s in tail]) if tail else 0,
        'rss_after_kb': samples[-1][2] if samples else 0,
        'samples': [(round(a, 2), b, c) for a, b, c in samples],
    }


def failed_count(svc):
    import harness
    _, _, body = harness.http('GET', svc.url('/metrics'))
    return int(sum(float(m) for m in re.findall(
        r'^resizer_jobs_total\{outcome="(?!done)[^"]*"\} ([\d.e+]+)$', body.decode(), re.M)))


# -- report -------------------------------------------------------------------------------------

def fmt_ratio(x):
    return '%.2f×' % x if x == x else 'n/a'


def mark(ok):
    return 'met' if ok else '**missed**'


def floor_case(s, image):
    """The faster of bare libvips' two ways for this image: the floor."""
    a, b = s['%s|vips-thumb3' % image], s['%s|vips-once' % image]
    return 'vips-thumb3' if a['cpu_warm'] <= b['cpu_warm'] else 'vips-once'


def rss_over(res, image, case):
    """Peak RSS of the job: the process's peak less its program's baseline, in KB."""
    im = res['images']
    return im['summary']['%s|%s' % (image, case)]['rss_kb'] - im['baseline'][case]['rss_kb']


def image_section(res):
    s = res['images']['summary']
    out = []
    for image, fname, what in IMAGES:
        fl = floor_case(s, image)
        ref, floor = s['%s|reference' % image], s['%s|%s' % (image, fl)]
        ref_over = rss_over(res, image, 'reference')
        out.append('\n### %s — `%s`, %s\n' % (image, fname, what))
        floor_over = rss_over(res, image, fl)
        out.append('| case | CPU s warm | CPU s cold | wall s warm | peak RSS MB | job RSS MB | '
                   'output KB | CPU: reference ÷ case | CPU: case ÷ bare libvips | '
                   'job RSS: case ÷ reference | job RSS: case ÷ bare libvips |')
        out.append('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
        div = lambda a, b: '%.2f' % (a / b) if b > 0 else 'n/a'
        for case in CASES:
            c = s['%s|%s' % (image, case)]
            over = rss_over(res, image, case)
            out.append('| %s%s | %.3f | %.3f | %.3f | %.1f | %.1f | %.0f | %s | %s | %s | %s |' % (
                CASE_TITLE[case], ' **(floor)**' if case == fl else '', c['cpu_warm'],
                c['cpu_cold'], c['wall_warm'], c['rss_kb'] / 1024, over / 1024,
                c['bytes'] / 1024, fmt_ratio(ref['cpu_warm'] / c['cpu_warm']),
                fmt_ratio(c['cpu_warm'] / floor['cpu_warm']), div(over, ref_over),
                div(over, floor_over)))
        out.append('\nWarm CPU of every process: ' + '; '.join(
            '%s %s' % (case, s['%s|%s' % (image, case)]['cpu_warm_all']) for case in CASES))
    return out


def quality_section(res):
    q = res['quality']
    out = ['\n## Quality: PSNR against the reference\'s variants\n',
           'dB over RGB, alpha composited over white; higher is closer to what the Lambda made.\n',
           '| image | case | desktop | tablet | phone |', '|---|---|---:|---:|---:|']
    for image, _, _ in IMAGES:
        for case in CASES[1:]:
            cells = []
            for name in VARIANTS:
                v = q['%s|%s|%s' % (image, case, name)]
                cells.append(('%.1f' % v['psnr']) + ('\\*' if v['resized'] else ''))
            out.append('| %s | %s | %s |' % (image, CASE_TITLE[case], ' | '.join(cells)))
    out.append('\n\\* one side differed by a rounding pixel; the variant was resized to the '
               'reference\'s size (Lanczos) before comparing. Every case resamples differently '
               'from Pillow\'s bicubic thumbnail, so none matches it exactly; at these levels '
               'the differences are not visible. Pillow\'s draft() decodes with libjpeg\'s fast '
               'integer IDCT and without fancy upsampling (JDCT_FASTEST, do_fancy_upsampling '
               'off, in Pillow\'s JpegDecode.c), which is part of why it is fast and why its '
               'JPEG variants sit furthest from the reference.')
    return out


def targets(res):
    rows = []
    if 'images' in res:
        s = res['images']['summary']
        r12, r48 = s['12mp-jpeg|resizer'], s['48mp-jpeg|resizer']
        ref12, ref48 = s['12mp-jpeg|reference'], s['48mp-jpeg|reference']
        floor12 = s['12mp-jpeg|%s' % floor_case(s, '12mp-jpeg')]
        tuned12 = s['12mp-jpeg|pillow-tuned']
        rows.append(('12 MP JPEG → 3 variants: ≥3× faster than the reference (CPU)',
                     fmt_ratio(ref12['cpu_warm'] / r12['cpu_warm']),
                     ref12['cpu_warm'] >= 3 * r12['cpu_warm']))
        rows.append(('12 MP JPEG: at least as fast as Pillow draft (CPU)',
                     '%.3f s vs %.3f s' % (r12['cpu_warm'], tuned12['cpu_warm']),
                     r12['cpu_warm'] <= tuned12['cpu_warm']))
        rows.append(('12 MP JPEG: within 1.1× of bare libvips (CPU)',
                     fmt_ratio(r12['cpu_warm'] / floor12['cpu_warm']),
                     r12['cpu_warm'] <= 1.1 * floor12['cpu_warm']))
        rows.append(('48 MP JPEG: ≥3.5× faster than the reference (CPU)',
                     fmt_ratio(ref48['cpu_warm'] / r48['cpu_warm']),
                     ref48['cpu_warm'] >= 3.5 * r48['cpu_warm']))
        for image, _, _ in IMAGES:
            mine, ref = rss_over(res, image, 'resizer'), rss_over(res, image, 'reference')
            rows.append(('%s: peak RSS per job ≤ ½ the reference\'s' % image,
                         '%.1f MB vs %.1f MB' % (mine / 1024, ref / 1024), mine <= ref / 2))
    h = res.get('http')
    if h:
        up, ng = h['uploads'], h['nginx']
        rows.append(('POST /v1/uploads ≥ 50% of nginx static-200 req/s',
                     '%.0f vs %.0f (%.0f%%)' % (up['rps'], ng['rps'], 100 * up['rps'] / ng['rps']),
                     up['rps'] >= 0.5 * ng['rps']))
        rows.append(('POST /v1/uploads p99 < 5 ms', '%.2f ms' % up['p99'], up['p99'] < 5))
        rows.append(('POST /v1/events ≥ 10,000 accepted/s',
                     '%.0f/s' % h['events']['accepted_per_s'],
                     h['events']['accepted_per_s'] >= 10000))
    if res.get('soak'):
        r = res['soak'][-1]
        rows.append(('mixed soak (WORKERS=2): RSS plateau ≤ 100 MB per worker',
                     '%.1f MB for 2 workers (%s)' % (r['rss_plateau_kb'] / 1024, r['label']),
                     r['rss_plateau_kb'] <= 2 * 100 * 1024))
    return rows


def header_section(res, args):
    m, v = res['machine'], res['versions']
    busy = m['loadavg_start'][0] > 0.5 * m['nproc']
    out = ['# Benchmarks: resizer against the Lambda+Pillow reference, bare libvips and nginx',
           '', 'Written by `tests/bench/run` on %s in %.0f s; run it again to refresh every '
           'figure.' % (res['when'], res['seconds']), '',
           'Command: `%s` — builds `%s` (Release, no sanitizers); %d processes per image and '
           'case, each making the variants %d times; e2e burst of %d images; wrk %d s, 2 threads, '
           '%d connections.' % (args.cmdline, os.path.relpath(args.build, REPO), args.runs,
                                args.repeat, args.e2e_images, args.http_seconds, args.connections),
           '', '## Machine', '',
           '- CPUs (nproc): %d — %s' % (m['nproc'], m['cpu']),
           '- memory: %.1f GiB; kernel %s' % (m['memory_gib'], m['kernel']),
           '- load average at start: %s%s' % (', '.join('%.2f' % x for x in m['loadavg_start']),
                                              ' — **the machine was busy: figures are noisy**'
                                              if busy else ''),
           '', '## Versions', '']
    out += ['- %s: %s' % (k, val) for k, val in v.items() if k != 'git']
    out += ['', '## Targets', '', '| target | figure | |', '|---|---|---|']
    out += ['| %s | %s | %s |' % (t, fig, mark(ok)) for t, fig, ok in targets(res)]
    return out


def images_intro(res, args):
    b = res['images']['baseline']
    mb = lambda case: '%.1f MB' % (b[case]['rss_kb'] / 1024)
    cpu = lambda case: '%.3f s' % b[case]['cpu']
    return [
        '', '## Per image: CPU, wall and peak RSS', '',
        'Corpus, made into `build/bench-corpus/` (not committed): `%s` from Debian package `%s`, '
        'a real photograph (a nuthatch on bark, 6028x3391, CC-BY-SA-3.0). Every case makes '
        'desktop/tablet/phone (1920/1024/640 wide, never upscaled) in the input\'s format: JPEG '
        'Q85, PNG, WebP Q85, metadata stripped.' % (PHOTO, PHOTO_PACKAGE), '',
        'Each image and case runs in %d fresh processes, each making the variants %d times from '
        'the file\'s bytes in memory into memory; only that call is timed, inside the process '
        '(getrusage, all threads). **Cold** is a process\'s first call (libvips class set-up and '
        'ORC code generation, Pillow\'s first allocations); **warm** is the median of the '
        'others: what a long-running worker, or a warm Lambda, pays per image. Figures are '
        'medians over the processes; ratios use warm CPU. Peak RSS is the process\'s '
        'ru_maxrss (from /usr/bin/time); **job RSS** is that less the program\'s own baseline '
        '(started and exited without an image): %s for Python+Pillow, %s for vips_floor, %s for '
        'pipeline_bench; their start-up CPU is %s, %s and %s. libvips runs one thread per image '
        '(VIPS_CONCURRENCY=1), as image_init() sets it for the workers; Pillow is '
        'single-threaded.' % (args.runs, args.repeat, mb('reference'), mb('vips-once'),
                              mb('resizer'), cpu('reference'), cpu('vips-once'), cpu('resizer'))]


def profile_section(res):
    out = ['', '## Where the time goes (12 MP JPEG, warm)', '',
           'A CPU target was missed, so `perf record -e cpu-clock` sampled one process making '
           'the 12 MP JPEG\'s variants 10 times (start-up is a small part), for resizer, the '
           'floor and Pillow tuned; by shared object (libvips and libjpeg ship without symbols), '
           'then the kernel\'s top symbols:', '']
    for case, text in res['profile'].items():
        out += ['%s:' % CASE_TITLE[case], '', '```', text, '```', '']
    return out


def e2e_section(res):
    e, m = res['e2e'], res['machine']
    return [
        '', '## End to end: local S3 + resizer (Release, WORKERS=%d)' % m['nproc'], '',
        'The local S3 is OpenStack Swift (deploy/local/s3-start) on the same %d CPUs, so it '
        'competes with the service for CPU; in AWS, S3 is elsewhere.' % m['nproc'], '',
        '| figure | value |', '|---|---:|',
        '| burst: %d 12 MP JPEGs put into the source bucket, then their %d EventBridge events '
        'posted back to back (in %.3f s) | |' % (e['n'], e['n'], e['post_seconds']),
        '| throughput (first event posted → last image done) | **%.2f images/s** |'
        % e['throughput'],
        '| upload-to-done latency p50 (status created_at → finished_at) | %.2f s |' % e['p50'],
        '| upload-to-done latency p95 | %.2f s |' % e['p95'],
        '| upload-to-done latency max | %.2f s |' % e['max'],
        '| service CPU per image (all its threads: HTTP, S3 client, hashing, images) | %.3f s |'
        % e['service_cpu_per_image'],
        '| service RSS, idle before the burst | %.1f MB |' % (e['rss_idle_kb'] / 1024),
        '| service peak RSS (VmHWM) after the burst | **%.1f MB** |' % (e['vmhwm_kb'] / 1024),
        '| one at a time: PUT returned → variants done, p50 of %d | %.2f s |'
        % (e['single']['n'], e['single']['p50']),
        '| one at a time: max | %.2f s |' % e['single']['max'], '',
        'In the burst, latency is mostly queueing: %d images wait for %d workers. There, the '
        'upload is taken as done when its event arrives (the status record\'s created_at; '
        'EventBridge\'s delivery delay is not part of the service). One at a time, it is the '
        'client\'s clock when the PUT returned, the event posted right after.' % (e['n'], m['nproc'])]



def soak_section(res):
    runs = res['soak']
    first = runs[0]
    kinds = ', '.join('%s (%s)' % (k, what) for k, _, what in SOAK_KINDS)
    out = ['', '## Memory over time: %d mixed images, WORKERS=2' % first['n'], '',
           '%d images through the local S3 and the service (WORKERS=2, LOG_LEVEL=warn), the five '
           'kinds in turn: %s. Each image is a server-side copy of one source object under a new '
           'key, then its event; at most 16 wait for a worker at any time (a steady load, not one '
           'burst). The service\'s VmRSS is sampled every 0.25 s while they run and for 10 s '
           'after. **Plateau** is the median over the last third of the run; peak is VmHWM; '
           'images/s and CPU per image (all the service\'s threads) say whether throughput was '
           'kept. Runs in the same invocation share the machine\'s noise.' % (first['n'], kinds),
           '', '| build and allocator | images/s | CPU per image | RSS idle | RSS plateau | '
           'peak (VmHWM) | 10 s after the last | failed |', '|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in runs:
        out.append('| %s | %.2f | %.3f s | %.1f MB | **%.1f MB** | %.1f MB | %.1f MB | %d |' % (
            r['label'], r['images_per_s'], r['cpu_per_image'], r['rss_idle_kb'] / 1024,
            r['rss_plateau_kb'] / 1024, r['vmhwm_kb'] / 1024, r['rss_after_kb'] / 1024,
            r['failed']))
    out += ['', 'RSS over time (MB), at each tenth of the images done, then 10 s after the last:',
            '', '| images done | ' + ' | '.join(r['label'] for r in runs) + ' |',
            '|---:|' + '---:|' * len(runs)]
    for tenth in range(1, 11):
        want = first['n'] * tenth // 10
        cells = []
        for r in runs:
            at = next((x for x in r['samples'] if x[1] >= want), r['samples'][-1])
            cells.append('%.1f' % (at[2] / 1024))
        out.append('| %d | %s |' % (want, ' | '.join(cells)))
    out.append('| +10 s | %s |' % ' | '.join('%.1f' % (r['rss_after_kb'] / 1024) for r in runs))
    out += ['', 'Every sample (seconds, images done, RSS kB) is in build/bench-results.json.']
    return out


def http_section(res):
    h, v = res['http'], res['versions']
    ng, ev = h['nginx'], h['events']
    out = ['', '## HTTP: wrk on loopback next to nginx', '',
           '| endpoint | req/s | p50 ms | p90 ms | p99 ms | non-2xx | req/s ÷ nginx\'s |',
           '|---|---:|---:|---:|---:|---:|---:|']
    for key, title in (('nginx', 'nginx `return 200 \'ok\'`'), ('healthz', 'resizer GET /healthz'),
                       ('uploads', 'resizer POST /v1/uploads'),
                       ('events', 'resizer POST /v1/events')):
        r = h[key]
        out.append('| %s | %.0f | %.3f | %.3f | %.3f | %d | %.0f%% |' % (
            title, r['rps'], r['p50'], r['p90'], r['p99'], r['non2xx'],
            100 * r['rps'] / ng['rps']))
    for key, title in (('uploads_baseline', 'POST /v1/uploads, %s' % h.get('baseline_label')),
                       ('uploads_again', 'POST /v1/uploads, this build again')):
        if key in h:
            r = h[key]
            out.append('| %s | %.0f | %.3f | %.3f | %.3f | %d | %.0f%% |' % (
                title, r['rps'], r['p50'], r['p90'], r['p99'], r['non2xx'],
                100 * r['rps'] / ng['rps']))
    out += ['', 'POST /v1/events: %d events accepted in %.2f s = **%.0f accepted/s** '
            '(resizer_events_total{outcome="accepted"} before and after the run).'
            % (ev['accepted'], ev['duration_s'], ev['accepted_per_s']), '',
            'nginx %s runs a config of its own (`%s`: worker_processes auto, an access log like '
            'the service\'s request log, keepalive_requests 1000000) as root with its pid, logs '
            'and temp paths under build/. resizer runs with HTTP_THREADS at its default and %s. '
            'Each event names a new key (wrk_events.lua counts per thread), so every one is '
            'accepted and queued. To measure intake (auth, parse, filter, dedup, index, queue) '
            'rather than processing, S3_ENDPOINT is a closed loopback port: the one worker\'s '
            'downloads are refused and retried with backoff, so it sleeps; QUEUE_SIZE and '
            'INDEX_MAX_ENTRIES are raised so that the caps (429/503 by design) are not what is '
            'measured. POST /v1/uploads signs locally (no S3 call). Peak RSS of this service after '
            'the runs: %.0f MB.' % (v['nginx'], ng['config'], ', '.join(
                '%s=%s' % kv for kv in h['service_env'].items()), h['service_vmhwm_kb'] / 1024),
            '', 'Commands (scripts in tests/bench/): ' + '; '.join(
                '`%s`' % h[k]['command'] for k in ('nginx', 'healthz', 'uploads', 'events')) + '.']
    if h.get('uploads_profile'):
        out += ['', '### Where the time goes: the service under POST /v1/uploads', '',
                '`perf record -e cpu-clock -p PID` sampled the '
                'service during another 5 s wrk run of POST /v1/uploads (wrk itself, on the '
                'same CPUs, is not in it); by shared object, then top symbols:', '', '```', h['uploads_profile'], '```']
    if h.get('uploads_baseline'):
        out += ['', 'The same, %s:' % h['baseline_label'], '', '```',
                h['uploads_baseline']['profile'], '```']
    return out


def kept_sections(path, new):
    """The old report's sections that this run did not write (a part not run, or another
    script's, such as state_store.py's): kept as they were."""
    if not os.path.exists(path):
        return []
    titles = {l for l in new if l.startswith('## ')} | {'## What each case is'}
    old = open(path).read().rstrip('\n').split('\n')
    out, keep = [], False
    for line in old:
        if line.startswith('## '):
            keep = line not in titles
            if keep:
                out.append('')
        if keep:
            out.append(line)
    return out


def write_report(path, res, args):
    out = header_section(res, args)
    if 'images' in res:
        out += images_intro(res, args) + image_section(res) + quality_section(res)
        if res.get('profile'):
            out += profile_section(res)
    if res.get('e2e'):
        out += e2e_section(res)
    if res.get('http'):
        out += http_section(res)
    if res.get('formats'):
        out += formats_section(res)
    if res.get('soak'):
        out += soak_section(res)
    out += kept_sections(path, out)
    out += ['', '## What each case is', '',
            '- **Pillow reference**: tests/bench/pillow_resize.py `reference` — open, '
            'ImageOps.exif_transpose, then per width copy() + thumbnail((w, huge)) (bicubic, '
            'reducing_gap 2.0) and save (JPEG quality 85).',
            '- **Pillow tuned**: `tuned` — draft(\'RGB\', largest variant\'s size) before the '
            'load (JPEG), then each variant resized from the previous, larger one (Lanczos, '
            'reducing_gap 3.0).',
            '- **bare libvips**: tests/bench/vips_floor.c — the file\'s bytes once, then either '
            'one vips_thumbnail_buffer per width, or one to 1920 kept in memory and the smaller '
            'two thumbnailed from it; the service\'s encoder settings (Q85, PNG zlib 4 with '
            'adaptive filtering, strip). The faster is the floor.',
            '- **resizer pipeline**: tests/bench/pipeline_bench.c — image_init + '
            'image_make_variants with the image_opts a worker builds from the default '
            'configuration (config_load).',
            '- Commands, per image FILE (the last run adds OUTDIR, build/bench-out/CASE/IMAGE): '
            + '; '.join('`%s FILE`' % ' '.join(os.path.relpath(a, REPO) if a.startswith(REPO)
                                                 else a for a in case_argv(c, args.build,
                                                                           args.repeat))
                        for c in CASES) + '; vips_floor runs with VIPS_CONCURRENCY=1.',
            '- Raw data: build/bench-results.json; the last run\'s variants: build/bench-out/.']
    with open(path, 'w') as f:
        f.write('\n'.join(out) + '\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', required=True)
    ap.add_argument('--runs', type=int, default=3, help='processes per image and case')
    ap.add_argument('--repeat', type=int, default=3, help='calls per process (first is cold)')
    ap.add_argument('--e2e-images', type=int, default=40)
    ap.add_argument('--latency-samples', type=int, default=5)
    ap.add_argument('--http-seconds', type=int, default=10)
    ap.add_argument('--connections', type=int, default=16)
    ap.add_argument('--soak-images', type=int, default=1400)
    ap.add_argument('--baseline-build', default=None,
                    help='another build folder (e.g. of main): its resizer also runs the soak and '
                    'POST /v1/uploads in the same invocation, for before/after figures')
    ap.add_argument('--baseline-label', default='baseline build',
                    help='what the baseline build is, for the report (e.g. "main at abc1234")')
    ap.add_argument('--only', default='images,e2e,http,formats,soak',
                    help='a subset: RESULTS.md is then written only with an explicit --out; '
                    '--only formats alone refreshes its section of RESULTS.md')
    ap.add_argument('--out', default=None)
    ap.add_argument('--cmdline', default='tests/bench/run')
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    parts = set(args.only.split(','))
    root = os.path.dirname(args.build)
    cdir = os.path.join(root, 'bench-corpus')
    outroot = os.path.join(root, 'bench-out')
    started = time.monotonic()
    res = {'when': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
           'machine': machine_facts(), 'versions': versions(args.build)}
    make_corpus(cdir)
    if 'images' in parts:
        shutil.rmtree(outroot, ignore_errors=True)
        res['images'] = measure_images(args.build, cdir, outroot, args.runs, args.repeat)
        res['quality'] = measure_quality(outroot)
        if any(not ok for t, _, ok in targets(res) if 'CPU' in t):
            log('images: a CPU target was missed; profiling')
            res['profile'] = {c: profile(args.build, cdir, c) for c in PROFILED}
    if 'e2e' in parts:
        res['e2e'] = run_e2e(args.build, cdir, args.e2e_images, args.latency_samples)
    if 'http' in parts:
        res['http'] = run_http(args.build, root, args.http_seconds, args.connections,
                               args.baseline_build and os.path.abspath(args.baseline_build))
        res['http']['baseline_label'] = args.baseline_label
    if 'soak' in parts:
        res['soak'] = []
        if args.baseline_build:
            res['soak'].append(run_soak(os.path.abspath(args.baseline_build), cdir,
                                        args.soak_images, label=baseline_label(args)))
        res['soak'].append(run_soak(args.build, cdir, args.soak_images,
                                    label='this build (%s)' % res['versions']['git']))
    if 'formats' in parts:
        res['formats_runs'] = args.runs
        res['formats'] = measure_formats(args.build, cdir, args.runs, args.repeat)
    res['seconds'] = time.monotonic() - started
    res['machine']['loadavg_end'] = os.getloadavg()
    with open(os.path.join(root, 'bench-results.json'), 'w') as f:
        json.dump(res, f, indent=1, default=str)
    out = args.out or (os.path.join(HERE, 'RESULTS.md')
                       if parts >= {'images', 'e2e', 'http'} else None)
    if out:
        write_report(out, res, args)
        log('wrote %s in %.0f s' % (out, res['seconds']))
    elif parts == {'soak'}:
        splice_section(os.path.join(HERE, 'RESULTS.md'), soak_section(res),
                       soak_section(res)[1])
        log('updated the soak section of tests/bench/RESULTS.md')
    elif parts == {'formats'}:
        splice_section(os.path.join(HERE, 'RESULTS.md'), formats_section(res),
                       '## Formats (issue 16)')
        for t, fig, ok in formats_targets(res['formats']):
            log('formats: %s: %s: %s' % (t, fig, 'met' if ok else 'MISSED'))
        log('updated the Formats section of tests/bench/RESULTS.md')
    else:
        log('partial run (--only): no report; raw data in %s/bench-results.json' % root)
    return 0


if __name__ == '__main__':
    sys.exit(main())
