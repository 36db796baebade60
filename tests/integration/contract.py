"""contract.py - every response of the service checked against openapi/openapi.yaml.

Debian's /usr/bin/python3 with python3-yaml and python3-jsonschema (4.10: draft 2020-12, the
dialect of OpenAPI 3.1 schemas).

    c = Contract()                       # loads and resolves the document once
    c.check('GET', '/v1/images/<id>', 200, headers, body)

check() finds the operation by method and path template and the response by status, then
checks: the required headers are there (Retry-After, Location, Allow, WWW-Authenticate,
X-Request-Id...) and every documented header's value fits its schema; the Content-Type is
one the response documents; a JSON body validates against the schema; a response documented
without content has an empty body; an error's request_id is the X-Request-Id header. A path
that matches no template must be the document's unrouted 404, a method the path does not take
its 405 with an Allow that lists exactly the path's methods; a status the HTTP server gives
before routing (414, 431) fits the document's x-unrouted-responses. Anything else raises
AssertionError naming the method, path, status and body.

Schemas are checked closed: an object schema that lists properties and says nothing about
others is validated as if it had additionalProperties: false, so a field the service sends
but the document does not describe is a failure. (The document itself stays open, so clients
still tolerate fields added later.)

harness.http() calls check() for responses of Resizer instances it started, when the
environment does not say RESIZER_CONTRACT=0.
"""

import json
import os
import re
import sys
import threading
import uuid
from urllib.parse import urlsplit

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get('RESIZER_SOURCE_DIR') or os.path.dirname(os.path.dirname(HERE))
SPEC_PATH = os.path.join(SOURCE_DIR, 'openapi', 'openapi.yaml')

METHODS = ('get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace')
# Keywords under which one schema combines others: a schema inside one of them describes
# only part of the object, so it is not closed.
_COMBINERS = ('allOf', 'anyOf', 'oneOf', 'not', 'if', 'then', 'else')
_DATE_TIME = re.compile(r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$')


def _short(body, limit=600):
    if isinstance(body, bytes):
        body = body.decode('utf-8', errors='replace')
    return body if len(body) <= limit else body[:limit] + '...'


def _pointer(doc, ref):
    if not ref.startswith('#/'):
        raise ValueError('only local $refs are supported: %s' % ref)
    node = doc
    for part in ref[2:].split('/'):
        node = node[part.replace('~1', '/').replace('~0', '~')]
    return node


def _resolve(doc, node, stack=()):
    """A copy of node with every $ref replaced by what it points to."""
    if isinstance(node, list):
        return [_resolve(doc, n, stack) for n in node]
    if not isinstance(node, dict):
        return node
    if '$ref' in node:
        ref = node['$ref']
        if ref in stack:
            raise ValueError('$ref cycle: %s' % ' -> '.join(stack + (ref,)))
        target = _resolve(doc, _pointer(doc, ref), stack + (ref,))
        siblings = {k: v for k, v in node.items() if k != '$ref'}
        if siblings and isinstance(target, dict):
            target = dict(target, **_resolve(doc, siblings, stack))
        return target
    return {k: _resolve(doc, v, stack) for k, v in node.items()}


def _closed(schema):
    """schema with additionalProperties: false on each object that lists its properties."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k in ('properties', 'patternProperties', '$defs'):
            out[k] = {name: _closed(sub) for name, sub in v.items()}
        elif k in ('items', 'additionalProperties', 'prefixItems') or k in _COMBINERS:
            out[k] = _closed(v)
        else:
            out[k] = v
    if ('properties' in out and 'additionalProperties' not in out
            and 'unevaluatedProperties' not in out
            and not any(k in out for k in _COMBINERS)):
        out['additionalProperties'] = False
    return out


def _format_checker():
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks('date-time', raises=ValueError)
    def _date_time(value):
        if isinstance(value, str) and not _DATE_TIME.match(value):
            raise ValueError('not an RFC 3339 date-time')
        return True

    @checker.checks('uuid', raises=ValueError)
    def _uuid(value):
        if isinstance(value, str):
            uuid.UUID(value)
        return True

    @checker.checks('uri', raises=ValueError)
    def _uri(value):
        if isinstance(value, str):
            parts = urlsplit(value)
            if not parts.scheme or not parts.netloc:
                raise ValueError('not an absolute URI')
        return True

    return checker


def _template_regex(template):
    # The server's matcher: a {param} is one non-empty path segment.
    out = ''
    for piece in re.split(r'(\{[^}]+\})', template):
        out += '[^/]+' if piece.startswith('{') else re.escape(piece)
    return re.compile('^' + out + '$')


class Contract:
    """The document, loaded and resolved once; check() is thread-safe."""

    def __init__(self, path=SPEC_PATH):
        self.path = path
        with open(path, 'rb') as f:
            self.raw = f.read()
        doc = yaml.safe_load(self.raw)
        if not str(doc.get('openapi', '')).startswith('3.1'):
            raise ValueError('%s is not OpenAPI 3.1' % path)
        self.doc = _resolve(doc, doc)
        self.routes = [(template, _template_regex(template), item)
                       for template, item in self.doc['paths'].items()]
        self.unrouted = self.doc.get('x-unrouted-responses', {})
        self._checker = _format_checker()
        self._validators = {}
        self._lock = threading.Lock()
        self.checked = 0
        self.seen = set()  # (METHOD, template, status) that passed
        self.violations = []  # every failure, also those a caller caught (fixtures.wait_for)

    # -- lookup ---------------------------------------------------------------------------

    def route(self, path):
        """(template, path item) of path, or (None, None)."""
        for template, regex, item in self.routes:
            if regex.match(path):
                return template, item
        return None, None

    @staticmethod
    def methods(item):
        """The methods a path takes, as the server's Allow lists them (HEAD wherever GET)."""
        out = {m.upper() for m in METHODS if m in item}
        if 'GET' in out:
            out.add('HEAD')
        return out

    def operation(self, method, item):
        op = item.get(method.lower())
        if op is None and method.upper() == 'HEAD':
            op = item.get('get')  # HEAD is answered wherever GET is
        return op

    def documented_statuses(self, method, template):
        """The status codes the document gives for method on template (strings)."""
        op = self.operation(method, self.doc['paths'][template])
        return set(op['responses']) if op else set()

    # -- checking -------------------------------------------------------------------------

    def _validator(self, schema):
        # Keyed by identity: the resolved document, and so each schema in it, lives as
        # long as this object.
        with self._lock:
            v = self._validators.get(id(schema))
            if v is None:
                v = jsonschema.Draft202012Validator(_closed(schema),
                                                    format_checker=self._checker)
                self._validators[id(schema)] = v
        return v

    def check(self, method, target, status, headers, body):
        """Raises AssertionError unless the response fits the document. target is the
        request path (a query string is ignored); headers a dict with lowercase names."""
        method = method.upper()
        path = urlsplit(target).path or '/'
        where = '%s %s -> %d' % (method, _short(target, 200), status)
        template, item = self.route(path)
        if status not in (404, 405) and str(status) in self.unrouted:
            # Answered by the HTTP server before routing (414, 431: too large to read).
            response = self.unrouted[str(status)]
            template = 'unrouted'
        elif template is None:
            response = self.unrouted.get('404')
            if status != 404 or response is None:
                self._fail(where, 'the path matches no route of the document, so the '
                           'answer must be 404', body)
        elif self.operation(method, item) is None:
            response = self.unrouted.get('405')
            if status != 405 or response is None:
                self._fail(where, '%s takes %s only, so the answer must be 405'
                           % (template, ', '.join(sorted(self.methods(item)))), body)
            allow = {m.strip() for m in headers.get('allow', '').split(',') if m.strip()}
            if allow != self.methods(item):
                self._fail(where, 'Allow %r, the document says %s'
                           % (headers.get('allow'), sorted(self.methods(item))), body)
        else:
            op = self.operation(method, item)
            response = op['responses'].get(str(status))
            if response is None:
                self._fail(where, 'status %d is not documented for %s %s (documented: %s)'
                           % (status, method, template, ', '.join(sorted(op['responses']))),
                           body)
        self._check_headers(where, response, headers, body)
        self._check_body(where, method, status, response, headers, body)
        with self._lock:
            self.checked += 1
            self.seen.add((method, template or 'unrouted', status))

    def _fail(self, where, why, body):
        msg = 'contract: %s: %s; body: %s' % (where, why, _short(body))
        with self._lock:
            self.violations.append(msg)
        raise AssertionError(msg)

    def _check_headers(self, where, response, headers, body):
        for name, spec in (response.get('headers') or {}).items():
            value = headers.get(name.lower())
            if value is None:
                if spec.get('required'):
                    self._fail(where, 'required header %s is missing' % name, body)
                continue
            schema = spec.get('schema', {})
            instance = value
            if schema.get('type') == 'integer':
                try:
                    instance = int(value)
                except ValueError:
                    self._fail(where, 'header %s: %r is not an integer' % (name, value), body)
            errors = list(self._validator(schema).iter_errors(instance))
            if errors:
                self._fail(where, 'header %s: %r: %s' % (name, value, errors[0].message), body)

    def _check_body(self, where, method, status, response, headers, body):
        content = response.get('content') or {}
        if method == 'HEAD' or not content:
            if body:
                self._fail(where, 'the document gives this response no body', body)
            return
        ctype = headers.get('content-type', '').split(';')[0].strip().lower()
        media = content.get(ctype) or content.get(ctype.split('/')[0] + '/*') or content.get('*/*')
        if media is None:
            self._fail(where, 'Content-Type %r, the document says %s'
                       % (headers.get('content-type'), ', '.join(content)), body)
        schema = media.get('schema', {})
        if ctype == 'application/json' or ctype.endswith('+json'):
            try:
                instance = json.loads(body)
            except ValueError as e:
                self._fail(where, 'body is not JSON (%s)' % e, body)
        else:
            try:
                instance = body.decode('utf-8')
            except UnicodeDecodeError:
                self._fail(where, 'a %s body is not UTF-8' % ctype, body)
        e = jsonschema.exceptions.best_match(self._validator(schema).iter_errors(instance))
        if e is not None:
            why = e.message
            if e.context:  # oneOf/anyOf: say why the closest branch (fewest errors) failed
                branches = {}
                for sub in e.context:
                    branches.setdefault(sub.relative_schema_path[0], []).append(sub)
                sub = jsonschema.exceptions.best_match(min(branches.values(), key=len))
                why = 'fits none of its schemas; closest: at /%s: %s' % (
                    '/'.join(str(p) for p in sub.absolute_path), sub.message)
            self._fail(where, 'body does not fit the schema at /%s: %s'
                       % ('/'.join(str(p) for p in e.absolute_path), why), body)
        if status >= 400 and isinstance(instance, dict) and isinstance(instance.get('error'),
                                                                        dict):
            rid = instance['error'].get('request_id')
            if rid != headers.get('x-request-id'):
                self._fail(where, 'error.request_id %r is not the X-Request-Id %r'
                           % (rid, headers.get('x-request-id')), body)


_shared = None
_shared_lock = threading.Lock()


def shared():
    """The Contract of this process (loaded on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Contract()
        return _shared


def report(stream=sys.stderr):
    """Writes how many responses were checked, and every violation, to stream. Returns
    the number of violations (some may have been caught by the test, e.g. in fixtures.wait_for)."""
    if _shared is None:
        return 0
    stream.write('contract: %d responses checked against %s (%d method/route/status '
                 'combinations), %d violations\n'
                 % (_shared.checked, _shared.path, len(_shared.seen), len(_shared.violations)))
    unique = list(dict.fromkeys(_shared.violations))
    for msg in unique[:20]:
        stream.write('  %s\n' % msg)
    if len(unique) > 20:
        stream.write('  ... and %d more\n' % (len(unique) - 20))
    stream.flush()
    return len(_shared.violations)
