'use strict';
// Unit tests of the pure parts (node --test): batch encoding/decoding and the line
// format. The round trip against a real cluster is tests/interop/test_clients.py.

const assert = require('node:assert/strict');
const test = require('node:test');
const zlib = require('node:zlib');
const batches = require('../batch');

const types = batches.loadRecordTypes(batches.defaultProtosDir());

const lines = ['1000\t6b30\t7630\t68=0001,68=', '1002\t\t\t-', '1001\t-\tff00\t-'];

test('CRC-32C is Castagnoli', () => {
  assert.equal(batches.crc32c(Buffer.from('123456789')), 0xe3069283);
});

test('a batch round-trips for every codec this client writes', () => {
  for (const codec of batches.PRODUCE_CODECS) {
    const batch = batches.newBatch(types, lines.map(batches.parseInputLine), codec);
    assert.equal(batch.crc32c, batches.crc32c(batch.records));
    assert.equal(batch.first_timestamp_ms, '1000');
    assert.equal(batch.max_timestamp_ms, '1002');
    const decoded = batches.decodeBatch(types, 3, { ...batch, base_offset: '40' });
    assert.deepEqual(
      decoded.map(batches.formatRecordLine),
      lines.map((line, i) => `record\t3\t${40 + i}\t${line}`),
      codec,
    );
    assert.throws(() => batches.decodeBatch(types, 3, { ...batch, base_offset: '40', crc32c: batch.crc32c ^ 1 }), /crc32c/);
  }
});

test('gzip of the standard library decodes with a size bound', () => {
  const batch = batches.newBatch(types, lines.map(batches.parseInputLine), 'none');
  const records = zlib.gzipSync(batch.records);
  const gz = { ...batch, base_offset: '0', records, compression: 'COMPRESSION_CODEC_GZIP', crc32c: batches.crc32c(records) };
  assert.equal(batches.decodeBatch(types, 0, gz).length, 3);
  assert.throws(() => batches.decodeBatch(types, 0, { ...gz, uncompressed_bytes: 2 }));
});

test('bad input lines are refused', () => {
  assert.throws(() => batches.parseInputLine('1\tzz\t00\t-'), /hex/);
  assert.throws(() => batches.parseInputLine('1\t00\t00'), /4 tab-separated/);
});
