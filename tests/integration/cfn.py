"""cfn.py - deploy/cloudformation.yaml as CloudFormation would see it, for the tests.

load_template() reads the template with CloudFormation's short tags (!Ref, !Sub, !GetAtt, ...)
as their long forms; Resolved(doc, params) evaluates conditions and intrinsics for given
parameter values (defaults for the rest). Used by test_deploy.py (the template's shape) and
iam.py (the task role evaluated against recorded requests). Debian's python3-yaml only."""

import os
import re

import yaml

SOURCE_DIR = os.environ.get('RESIZER_SOURCE_DIR') or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
TEMPLATE = os.path.join(SOURCE_DIR, 'deploy', 'cloudformation.yaml')


# -- reading the template -----------------------------------------------------------------

class CfnLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads CloudFormation's short forms (!Ref, !Sub, ...) as the
    long forms ({'Ref': ...}, {'Fn::Sub': ...}); safe_load alone rejects the tags."""


def _cfn_tag(loader, suffix, node):
    name = suffix  # the tag without its '!'
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if name == 'Ref':
        return {'Ref': value}
    if name == 'Condition':
        return {'Condition': value}
    if name == 'GetAtt' and isinstance(value, str):
        value = value.split('.', 1)
    return {'Fn::' + name: value}


CfnLoader.add_multi_constructor('!', _cfn_tag)


def load_template(path=TEMPLATE):
    with open(path, encoding='utf-8') as f:
        return yaml.load(f, Loader=CfnLoader)


NOVALUE = object()
PSEUDO = {'AWS::Region': 'us-east-1', 'AWS::AccountId': '123456789012', 'AWS::Partition': 'aws',
          'AWS::StackName': 'resizer', 'AWS::URLSuffix': 'amazonaws.com', 'AWS::NoValue': NOVALUE}


class Resolved:
    """The template as CloudFormation would see it for given parameter values (defaults for
    the rest): conditions evaluated, Ref/GetAtt/Sub/If/Join/Split replaced by strings. A bucket's
    Ref is its name (generated-<logical id> when CloudFormation would generate one) and its Arn
    attribute arn:aws:s3:::name, a table's Ref a generated name (stack-Logical-suffix, as
    CloudFormation makes one; physical= gives another) and its Arn the table's ARN; other
    resources resolve to
    placeholders like ref:Logical or getatt:Logical.Attr. An intrinsic this class does not
    know raises, so the test fails rather than checks something half-resolved."""

    def __init__(self, doc, params=None, physical=None):
        self.doc = doc
        # {logical id: physical name} for resources whose Ref a test must know (a table).
        self.physical = dict(physical or {})
        self.params = {}
        for name, spec in doc.get('Parameters', {}).items():
            value = (params or {}).get(name, spec.get('Default'))
            if value is None:
                value = 'param-' + name  # required parameters without a default
            if spec.get('Type') == 'CommaDelimitedList' and isinstance(value, str):
                value = value.split(',')
            self.params[name] = value

    def condition(self, name):
        return self._truth(self.doc['Conditions'][name])

    def _truth(self, expr):
        (fn, arg), = expr.items()
        if fn == 'Fn::Equals':
            a, b = (self.value(x) for x in arg)
            return str(a) == str(b)
        if fn == 'Fn::Not':
            return not self._truth(arg[0])
        if fn == 'Fn::And':
            return all(self._truth(x) for x in arg)
        if fn == 'Fn::Or':
            return any(self._truth(x) for x in arg)
        if fn == 'Condition':
            return self.condition(arg)
        raise AssertionError('unknown condition function %s' % fn)

    def _ref(self, name):
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        res = self.doc['Resources'][name]
        if name in self.physical:
            return self.physical[name]
        if res['Type'] == 'AWS::S3::Bucket':
            bucket = self.value(res['Properties'].get('BucketName', NOVALUE))
            return 'generated-' + name.lower() if bucket is NOVALUE else bucket
        if res['Type'] == 'AWS::DynamoDB::Table':
            # A table without TableName gets a generated name; the binary validates it.
            return '%s-%s-1A2B3C4D5E6F' % (PSEUDO['AWS::StackName'], name)
        return 'ref:' + name

    def _getatt(self, logical, attr):
        res = self.doc['Resources'][logical]
        if res['Type'] == 'AWS::S3::Bucket' and attr == 'Arn':
            return 'arn:aws:s3:::' + self._ref(logical)
        if res['Type'] == 'AWS::DynamoDB::Table' and attr == 'Arn':
            return 'arn:aws:dynamodb:%s:%s:table/%s' % (PSEUDO['AWS::Region'],
                                                        PSEUDO['AWS::AccountId'],
                                                        self._ref(logical))
        return 'getatt:%s.%s' % (logical, attr)

    def _sub(self, arg):
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        extra = {k: self.value(v) for k, v in extra.items()}

        def one(m):
            name = m.group(1)
            if name in extra:
                return str(extra[name])
            if '.' in name and not name.startswith('AWS::'):
                return str(self._getatt(*name.split('.', 1)))
            return str(self._ref(name))
        return re.sub(r'\$\{([^}!]+)\}', one, text)

    def value(self, v):
        """v with every intrinsic resolved; NOVALUE items vanish from lists and mappings."""
        if isinstance(v, list):
            return [x for x in (self.value(i) for i in v) if x is not NOVALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (fn, arg), = v.items()
            if fn == 'Ref':
                return self._ref(arg)
            if fn == 'Fn::GetAtt':
                return self._getatt(*arg)
            if fn == 'Fn::Sub':
                return self._sub(arg)
            if fn == 'Fn::If':
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == 'Fn::Join':
                return arg[0].join(str(x) for x in self.value(arg[1]))
            if fn == 'Fn::Split':
                return str(self.value(arg[1])).split(arg[0])
            if fn.startswith('Fn::') or fn == 'Condition':
                raise AssertionError('the test cannot resolve %s; extend Resolved' % fn)
        out = {}
        for k, x in v.items():
            x = self.value(x)
            if x is not NOVALUE:
                out[k] = x
        return out

    def resource(self, name):
        return self.value(self.doc['Resources'][name])

    def of_type(self, rtype):
        return {n: self.resource(n) for n, r in self.doc['Resources'].items()
                if r['Type'] == rtype and ('Condition' not in r or self.condition(r['Condition']))}


def container(resolved, name='resizer'):
    (td,) = resolved.of_type('AWS::ECS::TaskDefinition').values()
    (c,) = [c for c in td['Properties']['ContainerDefinitions'] if c['Name'] == name]
    return c


def task_env(resolved):
    c = container(resolved)
    env = {e['Name']: str(e['Value']) for e in c.get('Environment', [])}
    return env, {s['Name'] for s in c.get('Secrets', [])}


def all_env_names(doc):
    """Every variable name the task definition can set, under any condition (both branches of
    each Fn::If), with repeats kept so duplicates show."""
    names = []

    def walk(item):
        if isinstance(item, dict) and list(item) == ['Fn::If']:
            for branch in item['Fn::If'][1:]:
                walk(branch)
        elif isinstance(item, dict) and 'Name' in item:
            names.append(item['Name'])
    for res in doc['Resources'].values():
        if res['Type'] != 'AWS::ECS::TaskDefinition':
            continue
        for c in res['Properties']['ContainerDefinitions']:
            for item in c.get('Environment', []) + c.get('Secrets', []):
                walk(item)
    return names


def as_list(v):
    return v if isinstance(v, list) else [v]


def normalize_statement(st):
    cond = st.get('Condition')
    if cond is not None:
        cond = {op: {k: sorted(as_list(x)) for k, x in kv.items()} for op, kv in cond.items()}
    return (st['Effect'], sorted(as_list(st['Action'])), sorted(as_list(st['Resource'])), cond)


def policy_statements(resolved):
    """(where, statement) for every policy statement in the template: IAM role policies,
    standalone IAM policies, bucket and queue policies."""
    out = []
    for name, res in resolved.doc['Resources'].items():
        if 'Condition' in res and not resolved.condition(res['Condition']):
            continue
        props = resolved.resource(name).get('Properties', {})
        docs = [p['PolicyDocument'] for p in props.get('Policies', [])]
        if 'PolicyDocument' in props:
            docs.append(props['PolicyDocument'])
        for d in docs:
            out += [(name, st) for st in as_list(d['Statement'])]
    return out
