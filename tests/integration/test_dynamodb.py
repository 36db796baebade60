#!/usr/bin/python3
"""test_dynamodb.py - the DynamoDB client against a real DynamoDB-compatible server (dynalite).

Through `tests/tools/ddb_cli call` (env DDB_CLI), which runs ddb_call on JSON lines:
  - CreateTable with a key and two GSIs, until ACTIVE;
  - a conditional PutItem (attribute_not_exists) succeeds once, the second is refused with
    ECONFLICT and the error body; the first item is what GetItem (consistent) reads back;
  - a conditional UpdateItem with a wrong expected state is ECONFLICT, a right one returns
    ALL_NEW;
  - Query on the by_state GSI finds the items in seq order;
  - a missing table is ENOTFOUND, a malformed request EINVAL (with DynamoDB's type);
  - metrics count requests by operation and outcome;
  - a private server stopped: EUPSTREAM after the bounded retries, within a bounded time;
    started again: the same call succeeds and the data is still there.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402
import harness  # noqa: E402

CLI = os.environ.get('DDB_CLI')


class Client:
    """One ddb_cli call process: one struct ddb, as a replica has."""

    def __init__(self, endpoint, attempts=3, backoff_ms=50, timeout_ms=2000):
        if not CLI or not os.access(CLI, os.X_OK):
            sys.exit('DDB_CLI must name the ddb_cli binary (ctest sets it)')
        env = dict(os.environ, AWS_ACCESS_KEY_ID='local', AWS_SECRET_ACCESS_KEY='local')
        self.proc = subprocess.Popen(
            [CLI, 'call', endpoint, 'us-east-1', str(attempts), str(backoff_ms), str(timeout_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.n = 0

    def call(self, op, request=None):
        self.n += 1
        self.proc.stdin.write(json.dumps({'id': self.n, 'op': op, 'request': request}) + '\n')
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, 'ddb_cli exited'
        out = json.loads(line)
        assert out['id'] == self.n
        return out

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


def expect(out, err, what):
    assert out['err'] == err, '%s: expected %s, got %s (%s)' % (what, err, out['err'],
                                                                out.get('msg'))
    return out


def schema(table):
    return {
        'TableName': table, 'BillingMode': 'PAY_PER_REQUEST',
        'AttributeDefinitions': [
            {'AttributeName': n, 'AttributeType': t}
            for n, t in (('pk', 'S'), ('lease_shard', 'S'), ('lease_until', 'N'),
                         ('state', 'S'), ('seq', 'N'))],
        'KeySchema': [{'AttributeName': 'pk', 'KeyType': 'HASH'}],
        'GlobalSecondaryIndexes': [
            {'IndexName': 'inflight', 'Projection': {'ProjectionType': 'ALL'},
             'KeySchema': [{'AttributeName': 'lease_shard', 'KeyType': 'HASH'},
                           {'AttributeName': 'lease_until', 'KeyType': 'RANGE'}]},
            {'IndexName': 'by_state', 'Projection': {'ProjectionType': 'ALL'},
             'KeySchema': [{'AttributeName': 'state', 'KeyType': 'HASH'},
                           {'AttributeName': 'seq', 'KeyType': 'RANGE'}]}],
    }


def create_active(c, table):
    expect(c.call('CreateTable', schema(table)), 'OK', 'CreateTable')
    fixtures.wait_for(lambda: c.call('DescribeTable', {'TableName': table})['response']
                      ['Table']['TableStatus'] == 'ACTIVE', 10, what='table ACTIVE')


def item(pk, state, seq):
    return {'pk': {'S': pk}, 'state': {'S': state}, 'seq': {'N': str(seq)}}


def test_protocol(ddb):
    c = Client(ddb.endpoint)
    table = harness.unique_table('ddb')
    create_active(c, table)

    put = {'TableName': table, 'Item': item('img/a', 'queued', 3),
           'ConditionExpression': 'attribute_not_exists(pk)'}
    expect(c.call('PutItem', put), 'OK', 'first claim')
    again = dict(put, Item=item('img/a', 'processing', 9))
    out = expect(c.call('PutItem', again), 'ECONFLICT', 'second claim')
    assert 'ConditionalCheckFailedException' in out['msg'], out['msg']
    assert 'ConditionalCheckFailedException' in out['response']['__type'], out['response']
    got = expect(c.call('GetItem', {'TableName': table, 'Key': {'pk': {'S': 'img/a'}},
                                    'ConsistentRead': True}), 'OK', 'GetItem')
    assert got['response']['Item'] == item('img/a', 'queued', 3), got['response']

    upd = {'TableName': table, 'Key': {'pk': {'S': 'img/a'}},
           'UpdateExpression': 'SET #s = :new', 'ConditionExpression': '#s = :old',
           'ExpressionAttributeNames': {'#s': 'state'}, 'ReturnValues': 'ALL_NEW',
           'ExpressionAttributeValues': {':new': {'S': 'processing'}, ':old': {'S': 'done'}}}
    expect(c.call('UpdateItem', upd), 'ECONFLICT', 'update from the wrong state')
    upd['ExpressionAttributeValues'][':old'] = {'S': 'queued'}
    out = expect(c.call('UpdateItem', upd), 'OK', 'update from the right state')
    assert out['response']['Attributes']['state'] == {'S': 'processing'}, out['response']

    for pk, seq in (('img/b', 7), ('img/c', 5)):
        expect(c.call('PutItem', {'TableName': table, 'Item': item(pk, 'failed', seq)}), 'OK',
               'PutItem ' + pk)
    q = expect(c.call('Query', {'TableName': table, 'IndexName': 'by_state',
                                'KeyConditionExpression': '#s = :s AND seq > :from',
                                'ExpressionAttributeNames': {'#s': 'state'},
                                'ExpressionAttributeValues': {':s': {'S': 'failed'},
                                                              ':from': {'N': '0'}}}),
               'OK', 'Query by_state')
    assert [i['pk']['S'] for i in q['response']['Items']] == ['img/c', 'img/b'], q['response']

    missing = harness.unique_table('none')
    out = expect(c.call('GetItem', {'TableName': missing, 'Key': {'pk': {'S': 'x'}}}),
                 'ENOTFOUND', 'missing table')
    assert 'ResourceNotFoundException' in out['msg'] and out['response'] is None, out
    expect(c.call('PutItem', {'TableName': missing, 'Item': item('x', 'queued', 1)}),
           'ENOTFOUND', 'PutItem into a missing table')
    out = expect(c.call('GetItem', {'TableName': table}), 'EINVAL', 'GetItem without a key')
    assert 'ValidationException' in out['msg'], out['msg']
    expect(c.call('NoSuchOperation', {}), 'EINVAL', 'an unknown operation')

    metrics = c.call('metrics')['metrics']
    for series in ('resizer_dynamodb_requests_total{op="PutItem",outcome="ECONFLICT"} 1',
                   'resizer_dynamodb_requests_total{op="PutItem",outcome="ENOTFOUND"} 1',
                   'resizer_dynamodb_requests_total{op="GetItem",outcome="ok"} 1',
                   'resizer_dynamodb_request_duration_seconds_count{op="Query"} 1'):
        assert series in metrics, 'no %r in:\n%s' % (series, metrics)
    c.close()
    print('protocol: claim/conflict, get, conditional update, GSI query, errors: ok')


def test_outage(ddb):
    c = Client(ddb.endpoint, attempts=3, backoff_ms=50, timeout_ms=2000)
    table = harness.unique_table('out')
    create_active(c, table)
    expect(c.call('PutItem', {'TableName': table, 'Item': item('kept', 'done', 1)}), 'OK', 'put')
    ddb.stop()
    start = time.monotonic()
    out = expect(c.call('GetItem', {'TableName': table, 'Key': {'pk': {'S': 'kept'}}}),
                 'EUPSTREAM', 'GetItem with the server down')
    took = time.monotonic() - start
    assert 'unreachable' in out['msg'], out['msg']
    assert took < 3.0, 'the bounded retries took %.1fs' % took
    metrics = c.call('metrics')['metrics']
    assert 'resizer_dynamodb_requests_total{op="GetItem",outcome="EUPSTREAM"} 3' in metrics, \
        metrics
    ddb.start()
    out = expect(c.call('GetItem', {'TableName': table, 'Key': {'pk': {'S': 'kept'}},
                                    'ConsistentRead': True}), 'OK', 'GetItem after restart')
    assert out['response']['Item'] == item('kept', 'done', 1), out['response']
    c.close()
    print('outage: EUPSTREAM after 3 attempts in %.2fs; data kept across a restart' % took)


def main():
    test_protocol(harness.DynamoServer())
    with harness.DynamoServer(private=True) as ddb:
        test_outage(ddb)
    return 0


if __name__ == '__main__':
    sys.exit(main())
