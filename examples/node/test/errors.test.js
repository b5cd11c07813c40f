'use strict';
// Unit tests of the error vocabulary (node --test): a failed call and a PartitionError
// with the same ErrorInfo print the same way, and a response carried in a failed call's
// status details is read back like a call's answer. Also the record API's plain records.

const assert = require('node:assert/strict');
const path = require('node:path');
const test = require('node:test');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');
const batches = require('../batch');
const errors = require('../errors');
const { fromConsumed, toPlain } = require('../main');

const protosDir = batches.defaultProtosDir();
const types = errors.loadStatusTypes(protosDir);

const info = { reason: 'NOT_LEADER', domain: 'brook.v1', metadata: { leader_id: '2', retriable: 'true', refresh_metadata: 'true' } };
const partitionError = { code: 9, reason: 'ERROR_REASON_NOT_LEADER', message: 'not the leader', metadata: { leader_id: '2' }, retriable: true, refresh_metadata: true, error_info: info };

function failedCall(details) {
  const Any = (name, message) => ({ type_url: `type.googleapis.com/${name}`, value: types.lookupType(name).encode(types.lookupType(name).fromObject(message)).finish() });
  const status = types.lookupType('google.rpc.Status').encode({ code: 9, message: 'not the leader', details: details.map(([name, message]) => Any(name, message)) }).finish();
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(status));
  return Object.assign(new Error('9 FAILED_PRECONDITION: not the leader'), { code: 9, details: 'not the leader', metadata });
}

test('a failed call and a PartitionError print the same way', () => {
  const call = errors.fromCall(types, 'Produce t/0', failedCall([['google.rpc.ErrorInfo', info]]));
  const partition = errors.fromPartition('Produce t/0', partitionError);
  const want = 'Produce t/0: reason=NOT_LEADER code=FAILED_PRECONDITION message="not the leader" domain=brook.v1 metadata={leader_id=2,refresh_metadata=true,retriable=true}';
  assert.equal(errors.describe(call), want);
  assert.equal(errors.describe(partition), want);
  assert.ok(call.retriable && partition.retriable);
  // Without error_info, the typed fields say the same.
  assert.equal(errors.describe(errors.fromPartition('Produce t/0', { ...partitionError, error_info: null })), want);
  assert.equal(errors.fromPartition('x', null), null);
});

test('the response of a call whose every partition failed is carried', () => {
  const response = { partitions: [{ topic: 't', partition: 0, error: partitionError, batches: [] }] };
  const call = errors.fromCall(types, 'Fetch t/0', failedCall([['google.rpc.ErrorInfo', info], ['brook.v1.FetchResponse', response]]));
  const carried = call.carried('brook.v1.FetchResponse');
  assert.equal(carried.partitions[0].partition, 0);
  assert.equal(carried.partitions[0].error.reason, 'ERROR_REASON_NOT_LEADER');
  assert.equal(carried.partitions[0].error.error_info.reason, 'NOT_LEADER');
  assert.equal(call.carried('brook.v1.ProduceResponse'), undefined);
});

test('a transport failure has no ErrorInfo; UNAVAILABLE is retriable', () => {
  const call = errors.fromCall(types, 'Fetch', Object.assign(new Error('14 UNAVAILABLE'), { code: 14, details: 'connection refused', metadata: new grpc.Metadata() }));
  assert.match(errors.describe(call), /code=UNAVAILABLE .*transport failure/);
  assert.ok(call.retriable);
});

test('plain records keep no key vs empty key, empty values, headers', () => {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => (path.isAbsolute(target) ? target : path.join(protosDir, target));
  root.loadSync('brook/v1/record_service.proto', { keepCase: true });
  const Plain = root.lookupType('brook.v1.PlainRecord');
  const Consumed = root.lookupType('brook.v1.ConsumedRecord');
  const lines = ['1000\t6b30\t7630\t68=0001,68=', '1002\t\t\t-', '1001\t-\tff00\t-'];
  lines.forEach((line, i) => {
    const plain = Plain.toObject(Plain.decode(Plain.encode(Plain.fromObject(toPlain(batches.parseInputLine(line)))).finish()), { longs: String, oneofs: true });
    const consumed = Consumed.fromObject({ ...plain, partition: 3, offset: String(40 + i) });
    const back = Consumed.toObject(Consumed.decode(Consumed.encode(consumed).finish()), { longs: String, enums: String, defaults: true, oneofs: true });
    assert.equal(batches.formatRecordLine(fromConsumed(3, back)), `record\t3\t${40 + i}\t${line}`);
  });
});
