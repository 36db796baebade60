#!/usr/bin/python3
"""The upload page (GET /) and CORS, in a real browser: Debian's Chromium, headless, driven by
Selenium (python3-selenium, chromium-driver), against the real binary and S3 (Swift).

A person's flow on the page: paste the token, choose the corpus photograph, watch the progress
bar move and end (the presigned PUT goes straight to S3, with upload throttled so the bar has
something to show), the event arrives as EventBridge sends it (posted by this test once the
object is in S3), the state reaches done and the three variants load as pictures of the right
sizes. A text file named .jpg ends failed with its error code and a retry button that queues
it again. The recent images list shows both, newest first, and pages through more. The page works under the strict
Content-Security-Policy it is served with (no violation in the console), every control has a
label, and at phone width nothing overflows. The screenshot of the finished page is kept in
RESIZER_ARTIFACTS (default: artifacts/ next to RESIZER_BIN) as page.png.

Then CORS as a browser enforces it: a copy of the page served by this test from another
origin (listed in CORS_ALLOWED_ORIGINS) uploads through the API and S3 and shows its variants;
the same copy from an origin not listed is refused by the browser (no grant on the preflight),
and the service creates nothing for it."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import API_TOKEN, Resizer, S3Server, free_port, http, json_http, scaled  # noqa: E402
from fixtures import AUTH, announce, wait_for  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CORPUS = os.path.join(harness.SOURCE_DIR, 'tests', 'corpus', 'make_corpus.sh')
VARIANTS = {'desktop': (1920, 1440), 'tablet': (1024, 768), 'phone': (640, 480)}  # photo.jpg


def artifacts_dir():
    d = os.environ.get('RESIZER_ARTIFACTS') or os.path.join(
        os.path.dirname(os.path.abspath(os.environ['RESIZER_BIN'])), 'artifacts')
    os.makedirs(d, exist_ok=True)
    return d


class Site:
    """A static site on 127.0.0.1:<port>: another origin than the service's."""

    def __init__(self, files, port=None):
        self.files = files  # path -> (content type, bytes)
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                ctype, body = site.files.get(self.path, ('text/plain', b'not here'))
                self.send_response(200 if self.path in site.files else 404)
                self.send_header('Content-Type', ctype)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', port or free_port()), Handler)
        self.origin = 'http://127.0.0.1:%d' % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def chromium(profile):
    opts = Options()
    opts.binary_location = '/usr/bin/chromium'
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
                '--disable-background-networking', '--disable-component-update',
                '--disable-sync', '--disable-dev-shm-usage', '--user-data-dir=' + profile,
                '--window-size=1100,1400'):
        opts.add_argument(arg)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=opts)


class BrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix='resizer-browser-')
        cls.corpus = os.path.join(cls.work, 'corpus')
        # Made while the service and the browser start.
        corpus = subprocess.Popen([CORPUS, cls.corpus], stdout=subprocess.DEVNULL)
        cls.s3 = S3Server()
        cls.client = cls.s3.client()
        # The allowed site's port is fixed before the service starts, so its origin can be
        # listed; the foreign one is never listed.
        cls.allowed_port = free_port()
        cls.svc = Resizer(cls.s3, env={
            'CORS_ALLOWED_ORIGINS': 'http://127.0.0.1:%d' % cls.allowed_port, 'WORKERS': '2'})
        cls.driver = chromium(os.path.join(cls.work, 'profile'))
        cls.driver.set_page_load_timeout(scaled(30))
        if corpus.wait(timeout=scaled(120)) != 0:
            raise RuntimeError('tests/corpus/make_corpus.sh failed')

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        cls.svc.close()
        cls.s3.close()
        if not harness.KEEP_TMP:
            shutil.rmtree(cls.work, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, fn, timeout=20, *, what):
        return wait_for(fn, timeout, what=what, interval=0.05)

    def open_page(self, url):
        self.driver.get(url)
        self.wait(lambda: self.js('return document.readyState') == 'complete', what='page load')
        self.driver.get_log('browser')  # start each page with an empty console

    def paste_token(self):
        box = self.driver.find_element(By.ID, 'token')
        box.clear()
        box.send_keys(API_TOKEN)

    def choose(self, name):
        self.driver.find_element(By.ID, 'files').send_keys(os.path.join(self.corpus, name))

    def item(self, name):
        """The newest upload item of the file name (the page puts new ones first)."""
        def find():
            for li in self.driver.find_elements(By.CSS_SELECTOR, '#uploads li'):
                if li.find_element(By.CSS_SELECTOR, '.name').text == name:
                    return li
            return None
        return self.wait(find, what='an upload item for ' + name)

    def state_of(self, li):
        return li.get_attribute('data-state')

    def wait_state(self, li, states, timeout=30):
        return self.wait(lambda: self.state_of(li) if self.state_of(li) in states else None,
                         timeout, what='the upload item in state %s' % (states,))

    def deliver_event(self, li):
        """Once the page has put the file into S3: the event, as EventBridge posts it."""
        self.wait_state(li, ('pending', 'queued', 'processing', 'done', 'failed'))
        key = li.get_attribute('data-key')
        head = self.client.head_object(Bucket=self.svc.src_bucket, Key=key)
        status, _, body = announce(self.svc, key)
        self.assertEqual((status, body['accepted']), (202, 1), body)
        return key, head

    def loaded_variants(self, li, count=3):
        def loaded():
            imgs = self.js('return Array.from(arguments[0].querySelectorAll("img[data-variant]"))'
                           '.map(i => [i.dataset.variant, i.complete, i.naturalWidth, '
                           'i.naturalHeight])', li)
            if len(imgs) == count and all(done and w > 0 for _, done, w, _ in imgs):
                return {name: (w, h) for name, _, w, h in imgs}
            return None
        return self.wait(loaded, what='%d variant pictures loaded' % count)

    def csp_violations(self):
        return [e['message'] for e in self.driver.get_log('browser')
                if 'Content Security Policy' in e['message']]

    def copy_of_page(self, port=None):
        """The service's page, script and style, served by this test from another origin,
        with the API's address on <html data-api>."""
        files = {}
        for path, ctype in (('/', 'text/html; charset=utf-8'),
                            ('/app.js', 'text/javascript; charset=utf-8'),
                            ('/app.css', 'text/css; charset=utf-8')):
            status, _, body = http('GET', self.svc.url(path))
            self.assertEqual(status, 200)
            files[path] = (ctype, body)
        html = files['/'][1].replace(b'<html lang="en">', b'<html lang="en" data-api="%s">'
                                     % self.svc.url('').rstrip('/').encode())
        self.assertNotEqual(html, files['/'][1])
        files['/'] = (files['/'][0], html)
        site = Site(files, port)
        self.addCleanup(site.close)
        return site

    # -- the page, same origin ------------------------------------------------------------

    def test_1_upload_progress_variants_failure_and_listing(self):
        d = self.driver
        self.open_page(self.svc.url('/'))
        self.paste_token()
        self.assertEqual(self.js('return sessionStorage.getItem("resizer.token")'), API_TOKEN)
        d.refresh()  # the token stays for the tab's life
        self.wait(lambda: d.find_element(By.ID, 'token').get_attribute('value') == API_TOKEN,
                  what='token restored from sessionStorage')
        self.unlabelled_controls_are_none()

        # Every value the progress bar takes, as the page sets it.
        self.js('window.seen = []; new MutationObserver(ms => ms.forEach(m => {'
                '  if (m.target.tagName === "PROGRESS") seen.push([m.target.value, '
                '  m.target.max]); })).observe(document.getElementById("uploads"), '
                '{subtree: true, attributes: true, attributeFilter: ["value", "max"]});')
        size = os.path.getsize(os.path.join(self.corpus, 'photo.jpg'))
        # About 2 s of upload at this rate: progress events have time to arrive.
        d.set_network_conditions(offline=False, latency=5, download_throughput=50 * 1024 * 1024,
                                 upload_throughput=max(size // 2, 64 * 1024))
        self.choose('photo.jpg')
        photo = self.item('photo.jpg')
        self.wait_state(photo, ('pending',), timeout=30)
        d.delete_network_conditions()
        seen = self.js('return seen')
        bar = photo.find_element(By.TAG_NAME, 'progress')
        self.assertEqual(float(bar.get_attribute('value')), size, 'the bar ends full')
        self.assertEqual(float(bar.get_attribute('max')), size)
        partial = [v for v, m in seen if 0 < v < m]
        self.assertGreaterEqual(len(partial), 2, 'the bar moved through values: %r' % seen)
        self.assertEqual(partial, sorted(partial), seen)

        key, head = self.deliver_event(photo)
        self.assertEqual(head['ContentLength'], size)
        self.wait_state(photo, ('done',))
        self.assertEqual(self.loaded_variants(photo), VARIANTS)
        status, _, rec = json_http('GET', self.svc.url('/v1/images?key=' + key), headers=AUTH)
        rec = rec['items'][0]
        captions = [f.text for f in photo.find_elements(By.CSS_SELECTOR, '.variants figcaption')]
        for v in rec['variants']:
            cap = [c for c in captions if c.startswith(v['name'] + ' ')]
            self.assertEqual(len(cap), 1, captions)
            self.assertIn('%d×%d' % (v['width'], v['height']), cap[0])
            self.assertIn('KB', cap[0])
        titles = {f.find_element(By.TAG_NAME, 'img').get_attribute('data-variant'):
                  f.find_element(By.TAG_NAME, 'figcaption').get_attribute('title')
                  for f in photo.find_elements(By.CSS_SELECTOR, '.variants figure')}
        self.assertEqual(titles, {v['name']: '%d bytes' % v['bytes'] for v in rec['variants']})

        # A text file named .jpg: failed, its code shown, and a retry that runs it again.
        self.choose('text.jpg')
        text = self.item('text.jpg')
        self.deliver_event(text)
        self.wait_state(text, ('failed',))
        code = text.find_element(By.CSS_SELECTOR, '.error-code')
        self.assertEqual(code.text, 'unsupported_format')
        self.assertTrue(code.is_displayed())
        text.find_element(By.CSS_SELECTOR, 'button.retry').click()
        self.wait(lambda: self.js('return arguments[0].dataset.id', text) and json_http(
            'GET', self.svc.url('/v1/images/' + text.get_attribute('data-id')),
            headers=AUTH)[2]['attempts'] == 2, what='the retry ran (attempts 2)')
        self.wait_state(text, ('failed',))
        self.assertEqual(code.text, 'unsupported_format')

        # Recent images, newest first: the text file, then the photo.
        def recent():
            ids = [li.get_attribute('data-id')
                   for li in d.find_elements(By.CSS_SELECTOR, '#recent li')]
            want = [text.get_attribute('data-id'), photo.get_attribute('data-id')]
            return ids if ids[:2] == want else None
        self.wait(recent, what='recent images listed newest first')
        self.wait(lambda: self.js('const i = document.querySelector('
                                  '"#recent li[data-state=done] img");'
                                  'return i && i.complete && i.naturalWidth > 0'),
                  what='the thumbnail of the photo in the listing loaded')
        failed = d.find_element(By.CSS_SELECTOR, '#recent li[data-state=failed] .meta')
        self.assertIn('unsupported_format', failed.text)

        self.assertEqual(self.csp_violations(), [])
        height = self.js('return document.documentElement.scrollHeight')
        d.set_window_size(1100, min(max(height + 120, 900), 4000))
        path = os.path.join(artifacts_dir(), 'page.png')
        self.assertTrue(d.save_screenshot(path))
        sys.stderr.write('browser: screenshot of the finished page: %s\n' % path)

        # Phone width: one column, nothing wider than the screen.
        d.set_window_size(390, 900)
        self.wait(lambda: self.js('return window.innerWidth') <= 400, what='narrow window')
        self.assertLessEqual(self.js('return document.documentElement.scrollWidth'),
                             self.js('return window.innerWidth'))
        overflowing = self.js(
            'return Array.from(arguments[0].querySelectorAll("img")).filter('
            'i => i.getBoundingClientRect().right > window.innerWidth).length', photo)
        self.assertEqual(overflowing, 0, 'variant pictures wider than a phone screen')
        d.save_screenshot(os.path.join(artifacts_dir(), 'page-phone.png'))
        d.set_window_size(1100, 1400)

    def unlabelled_controls_are_none(self):
        unlabelled = self.js(
            'return Array.from(document.querySelectorAll("input, select, button, progress"))'
            '.filter(c => !c.closest("template"))'
            '.filter(c => !((c.labels && c.labels.length) || c.getAttribute("aria-label") || '
            '(c.tagName === "BUTTON" && c.textContent.trim()))).map(c => c.outerHTML)')
        self.assertEqual(unlabelled, [])

    # -- CORS: another origin -------------------------------------------------------------

    def test_2_page_from_an_allowed_origin_uploads_through_cors(self):
        site = self.copy_of_page(self.allowed_port)
        self.open_page(site.origin + '/')
        self.paste_token()
        self.choose('small.jpg')
        li = self.item('small.jpg')
        self.deliver_event(li)
        self.wait_state(li, ('done',))
        # small.jpg is narrower than every variant: never upscaled.
        self.assertEqual(self.loaded_variants(li), {n: (500, 375) for n in VARIANTS})
        self.wait(lambda: self.driver.find_elements(By.CSS_SELECTOR, '#recent li[data-id="%s"]'
                                                    % li.get_attribute('data-id')),
                  what='the listing, read across origins')

    def test_3_page_from_a_foreign_origin_is_refused_by_the_browser(self):
        before = json_http('GET', self.svc.url('/v1/images?limit=200'), headers=AUTH)[2]
        site = self.copy_of_page()
        self.open_page(site.origin + '/')
        self.paste_token()
        self.choose('small.jpg')
        li = self.item('small.jpg')
        self.wait_state(li, ('error',))
        self.assertEqual(li.find_element(By.CSS_SELECTOR, '.error-code').text, 'network_error')
        self.wait(lambda: 'network_error' in self.driver.find_element(By.ID,
                                                                      'recent-notice').text,
                  what='the listing refused too')
        # The browser stopped at the preflight: the upload was never asked for.
        result = self.driver.execute_async_script(
            'const done = arguments[arguments.length - 1];'
            'fetch(arguments[0], {headers: {Authorization: "Bearer " + arguments[1]}})'
            '.then(r => done("answered " + r.status), e => done("refused: " + e.name));',
            self.svc.url('/v1/images'), API_TOKEN)
        self.assertEqual(result, 'refused: TypeError')
        after = json_http('GET', self.svc.url('/v1/images?limit=200'), headers=AUTH)[2]
        self.assertEqual([i['id'] for i in after['items']], [i['id'] for i in before['items']])

    def test_5_polling_outlasts_an_outage_of_the_api(self):
        # Once S3 has the file the image is on its way: the page rides out status calls that
        # get no answer (the browser blocks them here) and shows the result when they do.
        d = self.driver
        self.open_page(self.svc.url('/'))
        self.paste_token()
        self.choose('small.jpg')
        li = self.item('small.jpg')
        self.wait_state(li, ('pending',))
        d.execute_cdp_cmd('Network.enable', {})
        d.execute_cdp_cmd('Network.setBlockedURLs', {'urls': [self.svc.url('/v1/images/*')]})
        try:
            key = li.get_attribute('data-key')
            self.assertEqual(announce(self.svc, key)[0], 202)
            self.wait(lambda: li.find_element(By.CSS_SELECTOR, '.error-code').text ==
                      'network_error', what='the page to see the outage')
            self.assertEqual(self.state_of(li), 'pending')
        finally:
            d.execute_cdp_cmd('Network.setBlockedURLs', {'urls': []})
        self.wait_state(li, ('done',))
        self.assertFalse(li.find_element(By.CSS_SELECTOR, '.error').is_displayed())
        self.assertEqual(len(self.loaded_variants(li)), 3)

    # -- the listing, paged ---------------------------------------------------------------

    def test_4_recent_images_are_paged(self):
        for i in range(6):
            status, _, _ = json_http('POST', self.svc.url('/v1/uploads'),
                                     {'filename': 'page-%d.jpg' % i,
                                      'content_type': 'image/jpeg'}, headers=AUTH)
            self.assertEqual(status, 201)
        self.open_page(self.svc.url('/'))  # the token is still in this origin's tab

        def names():
            return [li.find_element(By.CSS_SELECTOR, '.name').text
                    for li in self.driver.find_elements(By.CSS_SELECTOR, '#recent li')]
        self.wait(lambda: names()[:1] == ['page-5.jpg'], what='the newest image first')
        self.driver.find_element(By.CSS_SELECTOR, '#recent-limit option[value="5"]').click()
        want = ['page-%d.jpg' % i for i in (5, 4, 3, 2, 1)]

        def page_of_five():
            # The list as seen goes into wait_for's failure message as the last error. (Read
            # once before the wait, as it was, it could meet items the page was replacing.)
            got = names()
            if got != want:
                raise AssertionError('listed %r' % got)
            return True
        self.wait(page_of_five, what='a page of 5, newest first')
        self.driver.find_element(By.ID, 'recent-next').click()
        self.wait(lambda: names()[:1] == ['page-0.jpg'], what='the next page')
        self.assertTrue(self.driver.find_element(By.ID, 'recent-first').is_enabled())
        self.driver.find_element(By.ID, 'recent-first').click()
        self.wait(lambda: names()[:1] == ['page-5.jpg'], what='back to the newest')


if __name__ == '__main__':
    unittest.main(verbosity=2)
