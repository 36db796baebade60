#!/usr/bin/python3
"""iam_coverage.py - every S3 (and DynamoDB) request the integration suite made on behalf of
the service, judged against the task role of deploy/cloudformation.yaml.

Usage: iam_coverage.py S3_DIR [--since BYTES]

S3_DIR is the local S3 server the whole suite shared (scripts/test: build/test-s3). Its access
log (S3_DIR/log/proxy-server.log, read from byte BYTES on: this run only) holds one line per
request; the service's own requests (User-Agent resizer/...) and those of the presigned URLs it
handed out (a presigned request acts with its signer's rights) are judged, the tests' own
set-up traffic (botocore) is not. S3_DIR/iam-record/ holds the settings of every service
instance the harness started (services.jsonl: buckets, prefix, SSE, table), which gives each
request the bucket names, prefix and table to resolve the template with, and the records of
other services (*.requests.jsonl, e.g. DynamoDB's from iam.RecordingProxy).

Fails (exit 1) when a request is denied by every matching instance's task role, when a
request cannot be mapped to an IAM action, when a service request names buckets no instance
was started with, or when a task role statement was used by no request. Statements that this
machine cannot exercise are reported as not exercised instead of failing:
  - the SSE-KMS statement, unless an instance ran with SSE=aws:kms (the local S3 has no KMS);
  - DynamoDB statements, when the run recorded no DynamoDB request at all (no instance ran
    with STATE_STORE=dynamodb behind a recording proxy).
Presigned POST form uploads (signature, policy and key in the form body) are counted, not
judged: the log has no key, and the local S3 refuses browser POST. The PASS line names what it
did not cover.
Run by scripts/test after the whole suite (it needs every test's requests)."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cfn  # noqa: E402
import iam  # noqa: E402


def collect(s3_dir, since, cov):
    """Feeds the run's requests to cov; returns (service requests, presigned, ignored)."""
    log = os.path.join(s3_dir, 'log', 'proxy-server.log')
    own = presigned = ignored = 0
    for method, path, query, agent, status in iam.s3_log_entries(log, since):
        by_service = agent.startswith(iam.SERVICE_AGENT)
        signed_url = iam.is_presigned(query)
        if not by_service and iam.is_form_upload(method, path, query):
            # Its key is in the form body, so it cannot be judged here; counted and named in
            # the verdict rather than passed over as set-up traffic.
            cov.form_uploads.append('%s %s -> %d' % (method, path, status))
            continue
        if not (by_service or signed_url):
            ignored += 1
            continue
        what = '%s %s -> %d%s' % (method, path, status, ', presigned' if signed_url else '')
        try:
            req = iam.s3_request(method, path, query, what)
        except ValueError as e:
            if by_service:
                cov.unmapped.append(str(e))
            else:
                ignored += 1
            continue
        if not by_service and not cov.attributable(req):
            ignored += 1  # a URL a test presigned itself (botocore), for a bucket of its own
            continue
        cov.add(req)
        own += by_service
        presigned += not by_service
    records = iam.read_records(os.path.join(s3_dir, iam.RECORD_DIR))
    for rec in records:
        try:
            cov.add(iam.record_request(rec))
        except (ValueError, KeyError) as e:
            cov.unmapped.append('record %r: %s' % (rec, e))
    return own, presigned, ignored, records


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('s3_dir')
    ap.add_argument('--since', type=int, default=0, help='byte offset of this run in the log')
    ap.add_argument('--template', default=cfn.TEMPLATE, help='another template to judge by')
    args = ap.parse_args(argv)

    doc = cfn.load_template(args.template)
    services = iam.read_services(os.path.join(args.s3_dir, iam.RECORD_DIR))
    cov = iam.Coverage(doc, services)
    own, presigned, ignored, records = collect(args.s3_dir, args.since, cov)
    print('IAM coverage: read %d requests by the service, %d with its presigned URLs, %d records '
          'of other services; %d of them judged against the task role of '
          'deploy/cloudformation.yaml for the %d service instances of the run; %d test set-up '
          'requests not judged' % (own, presigned, len(records), cov.count, len(services), ignored))

    kms_run = any(s.get('SSE') == 'aws:kms' for s in services)
    dynamodb_run = any(r.get('service') == 'dynamodb' for r in records)
    exempt = {}
    for sid, services_of in cov.sid_services.items():
        if services_of == {'kms'} and not kms_run:
            exempt[sid] = 'not exercised: no instance ran with SSE=aws:kms (the local S3 has no KMS)'
        elif services_of == {'dynamodb'} and not dynamodb_run:
            exempt[sid] = 'not exercised: no DynamoDB request was recorded in this run'
    for sid in cov.all_sids:
        if sid in cov.used:
            print('  %-24s used, e.g. %r' % (sid, cov.used[sid]))
        elif sid in exempt:
            print('  %-24s %s' % (sid, exempt[sid]))

    problems = []
    problems += ['DENIED %r: %s' % (req, why) for req, why in cov.denied]
    problems += ['UNMAPPED %s' % what for what in cov.unmapped]
    problems += ['UNATTRIBUTED %r: no service instance of this run names its bucket or table '
                 '(was it started without the harness?)' % req for req in cov.unattributed]
    problems += ['UNUSED %s: no request of the suite needed it (drop it, or test what needs it)'
                 % sid for sid in cov.unused() if sid not in exempt]
    if cov.count == 0:
        problems.append('no request was judged: the log or the registry is missing')
    shown = 40
    for p in problems[:shown]:
        print('  ' + p)
    if len(problems) > shown:
        print('  ... and %d more' % (len(problems) - shown))
    if problems:
        print('IAM coverage: FAIL (%d problems)' % len(problems))
        return 1
    print('IAM coverage: PASS (%s)' % '; '.join(not_covered(cov, exempt)))
    return 0


def not_covered(cov, exempt):
    """What this PASS does not prove, for the verdict line."""
    out = ['not covered: %s, %s' % (sid, why.replace('not exercised: ', ''))
           for sid, why in sorted(exempt.items())]
    # The local S3 (Swift) has no browser POST (412), and a form's key and signature are in
    # its body: a presigned POST form upload needs the same s3:PutObject on the upload prefix
    # as the presigned PUTs judged here, but no request proves it.
    out.append('not covered: presigned POST form uploads (%d seen; their key is in the form '
               'body, and the local S3 refuses browser POST)' % len(cov.form_uploads))
    return out


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
