#!/usr/bin/python3
"""The README, followed as a new user would: its walkthrough block is taken from README.md and
run for real with bash against the real binary and S3, with deploy/local/event-relay standing
in for EventBridge as it does under scripts/run (only `api` is pointed at the test's service
and TOKEN set; cat.jpg is the corpus photograph). Each command's output is checked. The other
examples are checked too: a direct upload found by key with its variants named as in the
original design, and the configuration table against `resizer --help`."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import API_TOKEN, EVENTS_API_KEY, Resizer, S3Server, scaled  # noqa: E402
from fixtures import get_record, wait_for, wait_record  # noqa: E402

README = os.path.join(harness.SOURCE_DIR, 'README.md')
RELAY = os.path.join(harness.SOURCE_DIR, 'deploy', 'local', 'event-relay')
CORPUS = os.path.join(harness.SOURCE_DIR, 'tests', 'corpus', 'make_corpus.sh')
MARK = '@@readme-command %d@@'


def readme_section(title):
    """The text of the README section '## <title>' (up to the next '## ')."""
    with open(README, encoding='utf-8') as f:
        text = f.read()
    m = re.search(r'^## %s\n(.*?)(?=^## |\Z)' % re.escape(title), text, re.M | re.S)
    if not m:
        raise AssertionError('README.md has no section "## %s"' % title)
    return m.group(1)


def shell_block(section):
    m = re.search(r'^```(?:sh|bash)\n(.*?)^```', section, re.M | re.S)
    if not m:
        raise AssertionError('no ```sh block in the section')
    return m.group(1)


def split_commands(script):
    """The block's complete commands, comments and blank lines left out; bash itself
    decides where a command ends (a line ends one when the text so far parses)."""
    commands, pending = [], ''
    for line in script.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith('#')):
            continue
        pending += line + '\n'
        if line.endswith('\\'):
            continue
        if subprocess.run(['bash', '-n', '-c', pending], capture_output=True).returncode == 0:
            commands.append(pending.rstrip('\n'))
            pending = ''
    if pending:
        raise AssertionError('the block ends inside a command: %r' % pending)
    return commands


class ReadmeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s3 = S3Server()
        cls.svc = Resizer(cls.s3)
        cls.client = cls.s3.client()
        cls.work = tempfile.mkdtemp(prefix='resizer-readme-')
        corpus = os.path.join(cls.work, 'corpus')
        subprocess.run([CORPUS, corpus], check=True, stdout=subprocess.DEVNULL,
                       timeout=scaled(120))
        shutil.copy(os.path.join(corpus, 'photo.jpg'), os.path.join(cls.work, 'cat.jpg'))
        cls.relay = cls.start_relay()

    @classmethod
    def tearDownClass(cls):
        cls.relay.terminate()
        cls.relay.wait(timeout=10)
        cls.relay_log.close()
        cls.svc.close()
        cls.s3.close()
        if not harness.KEEP_TMP:
            shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def start_relay(cls):
        env = dict(cls.s3.env(), PATH=os.environ.get('PATH', '/usr/bin:/bin'),
                   SRC_BUCKET=cls.svc.src_bucket, SRC_PREFIX='images/',
                   EVENTS_URL=cls.svc.url('/v1/events'), EVENTS_API_KEY=EVENTS_API_KEY)
        cls.relay_log = open(os.path.join(cls.work, 'relay.log'), 'wb')
        return subprocess.Popen([RELAY], env=env, stdin=subprocess.DEVNULL,
                                stdout=cls.relay_log, stderr=subprocess.STDOUT)

    def direct_upload(self, stem, data, states):
        """Puts images/<stem>-<n>.jpg straight into the source bucket until the relay has
        delivered one and it reached one of states (an object the relay saw in its first
        listing is never delivered, as in AWS no event exists for it). Returns the record."""
        for _attempt in range(5):
            key = 'images/%s-%s.jpg' % (stem, uuid.uuid4().hex[:8])
            self.client.put_object(Bucket=self.svc.src_bucket, Key=key, Body=data,
                                   ContentType='image/jpeg')
            try:  # the relay lists every second: a record appears within a few
                wait_for(lambda: get_record(self.svc, key=key), 4, what='%s seen' % key)
            except AssertionError:
                continue
            return wait_record(self.svc, key=key, states=states, timeout=30)
        raise AssertionError('the relay delivered none of 5 direct uploads; its log:\n'
                             + open(os.path.join(self.work, 'relay.log')).read()[-2000:])

    # -- the walkthrough ------------------------------------------------------------------

    def run_walkthrough(self):
        section = readme_section('Walkthrough with curl')
        self.assertTrue(section.lstrip().startswith('Open http://127.0.0.1:8080/ in a browser'),
                        'the walkthrough starts with the page')
        block = shell_block(section)
        self.assertNotIn('python', block, 'JSON is read with jq')
        self.assertIn('jq ', block)
        commands = split_commands(block)
        self.assertRegex(commands[0], r'^api=\S+$', 'the block starts by setting api')
        commands[0] = 'api=' + self.svc.url('').rstrip('/')
        script = ['set -e -o pipefail']
        for i, cmd in enumerate(commands):
            script.append("printf '\\n%s\\n'" % (MARK % i))
            script.append(cmd)
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'HOME': self.work,
               'TOKEN': API_TOKEN, 'LANG': 'C.UTF-8'}
        proc = subprocess.run(['bash', '-c', '\n'.join(script)], cwd=self.work, env=env,
                              capture_output=True, text=True, timeout=scaled(180))
        parts = re.split(r'\n@@readme-command (\d+)@@\n', '\n' + proc.stdout)
        outputs = {int(parts[k]): parts[k + 1] for k in range(1, len(parts) - 1, 2)}
        ran = max(outputs) if outputs else -1
        self.assertEqual(proc.returncode, 0, 'the walkthrough stopped at command %d:\n%s\n'
                         'stderr:\n%s' % (ran, commands[ran] if ran >= 0 else '', proc.stderr))
        self.assertEqual(len(outputs), len(commands))
        return list(zip(commands, (outputs[i] for i in range(len(commands)))))

    def read_json(self, name):
        with open(os.path.join(self.work, name)) as f:
            return json.load(f)

    def test_walkthrough_runs_as_written(self):
        # Step 5 lists failures and retries the first: make one, as a user would by uploading
        # something that is not an image.
        failed = self.direct_upload('notes', b'not a photo', ('failed',))
        self.assertEqual(failed['error']['code'], 'unsupported_format')
        checked = set()
        for cmd, out in self.run_walkthrough():
            if '/v1/uploads' in cmd:
                up = self.read_json('upload.json') if '> upload.json' in cmd else json.loads(out)
                self.assertEqual(up['upload']['method'], 'PUT')
                self.assertRegex(up['key'], r'^images/[0-9a-f-]{36}\.jpg$')
                self.assertEqual(up['upload']['headers'], {'Content-Type': 'image/jpeg'})
                checked.add('upload url')
            elif '-X PUT' in cmd:
                self.assertEqual(out.strip(), '', 'S3 answers a good PUT with no body')
                head = self.client.head_object(Bucket=self.svc.src_bucket, Key=up['key'])
                self.assertEqual(head['ContentLength'],
                                 os.path.getsize(os.path.join(self.work, 'cat.jpg')))
                self.assertEqual(head['ContentType'], 'image/jpeg')
                checked.add('presigned put')
            elif cmd.startswith('jq . status.json'):
                rec = json.loads(out)
                self.assertEqual((rec['id'], rec['state']), (up['id'], 'done'), rec)
                self.assertEqual((rec['source']['width'], rec['source']['height']), (2000, 1500))
                widths = {v['name']: v['width'] for v in rec['variants']}
                self.assertEqual(widths, {'desktop': 1920, 'tablet': 1024, 'phone': 640})
                self.assertTrue(all(v['url'].startswith('http') for v in rec['variants']))
                checked.add('status done')
            elif '/variants/phone' in cmd:
                self.assertEqual(out.strip(), '')
                hdr = subprocess.run(['vipsheader', '-f', 'width',
                                      os.path.join(self.work, 'phone.jpg')],
                                     capture_output=True, text=True)
                self.assertEqual(hdr.stdout.strip(), '640', hdr.stderr)
                checked.add('variant download')
            elif 'state=failed' in cmd:
                items = json.loads(out)
                self.assertTrue(items and all(i['code'] and i['key'].startswith('images/')
                                              for i in items), items)
                self.assertIn({'id': failed['id'], 'key': failed['source']['key'],
                               'code': 'unsupported_format'}, items)
                checked.add('failures listed')
            elif '/retry' in cmd:
                # As written, the retry is of the cat, which is done.
                self.assertEqual(json.loads(out)['error']['code'], 'not_failed')
                # "a retry by id: 202 and queued again for a failed image"
                retry = subprocess.run(
                    ['bash', '-c', 'api=%s\n%s' % (self.svc.url('').rstrip('/'), cmd)],
                    env={'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'TOKEN': API_TOKEN,
                         'id': failed['id']}, capture_output=True, text=True, timeout=60)
                self.assertEqual(json.loads(retry.stdout), {'id': failed['id'],
                                                            'state': 'queued'}, retry.stderr)
                again = wait_record(self.svc, key=failed['source']['key'], states=('failed',),
                                    timeout=30)
                self.assertEqual(again['attempts'], 2, again)
                checked.add('retry')
            else:
                self.assertEqual(out.strip(), '', 'unexpected output of %r' % cmd)
        self.assertEqual(checked, {'upload url', 'presigned put', 'status done',
                                   'variant download', 'failures listed', 'retry'})

    def test_direct_upload_found_by_key_with_original_variant_names(self):
        # "Images put into images/ without the API ... find them by key ... their variants are
        # desktop/foo.jpg and so on".
        with open(os.path.join(self.work, 'cat.jpg'), 'rb') as f:
            rec = self.direct_upload('foo', f.read(), ('done', 'failed'))
        self.assertEqual(rec['state'], 'done', rec)
        name = rec['source']['key'][len('images/'):]
        self.assertEqual(sorted(v['key'] for v in rec['variants']),
                         sorted('%s/%s' % (d, name) for d in ('desktop', 'phone', 'tablet')))
        for v in rec['variants']:
            self.client.head_object(Bucket=self.svc.dest_bucket, Key=v['key'])

    # -- configuration --------------------------------------------------------------------

    def test_configuration_table_matches_help(self):
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin')}
        env.update({k: v for k, v in os.environ.items() if k.startswith(('ASAN', 'LSAN',
                                                                         'UBSAN'))})
        out = subprocess.run([self.svc.bin, '--help'], capture_output=True, text=True,
                             env=env, timeout=scaled(30)).stdout
        helped = {}
        for line in out.splitlines():
            m = re.match(r'^  ([A-Z][A-Z0-9_]+)\s+(.*?)(?: \[default: (.*)\])?$', line)
            if m:
                helped[m.group(1)] = m.group(3)
        self.assertGreater(len(helped), 30, out)
        rows = {}
        for line in readme_section('Configuration').splitlines():
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            if len(cells) >= 3 and '`' in cells[0]:
                for name in re.findall(r'`([A-Z][A-Z0-9_]+)`', cells[0]):
                    rows[name] = cells[1]
        self.assertEqual(sorted(set(helped) - set(rows)), [], 'in --help, not in the README')
        self.assertEqual(sorted(set(rows) - set(helped)), [], 'in the README, not in --help')
        for name, default in helped.items():
            if default is not None:
                self.assertIn('`%s`' % default, rows[name],
                              '%s: --help says default %s' % (name, default))


if __name__ == '__main__':
    unittest.main(verbosity=2)
