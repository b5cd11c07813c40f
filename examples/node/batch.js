'use strict';
// Batch encoding and decoding: brook.v1.Records, serialized, compressed, in a
// brook.v1.RecordBatch with its CRC-32C; and the line format shared by the examples
// (see ../README.md). No gRPC here, so the unit tests need no server.

const path = require('node:path');
const zlib = require('node:zlib');
const protobuf = require('protobufjs');
const fzstd = require('fzstd');
const lz4 = require('lz4js');

// Bound on the decompressed size we accept, whatever a batch header claims.
const MAX_UNCOMPRESSED_BYTES = 64 << 20;

const CODECS = {
  none: 'COMPRESSION_CODEC_NONE',
  gzip: 'COMPRESSION_CODEC_GZIP',
  zstd: 'COMPRESSION_CODEC_ZSTD',
  lz4: 'COMPRESSION_CODEC_LZ4',
};
// Node 20 has no zstd compressor in its standard library and fzstd only decompresses:
// this client reads zstd batches but does not write them.
const PRODUCE_CODECS = ['none', 'gzip', 'lz4'];

// The protos folder: flag --protos, else ../../protos from this file.
function defaultProtosDir() {
  return path.resolve(__dirname, '..', '..', 'protos');
}

// protobufjs types for Records (records.proto has no imports). keepCase: protobufjs
// camelCases field names by default (offsetDelta), proto-loader is told not to
// (keepCase below and in main.js): one spelling, the .proto's, everywhere.
function loadRecordTypes(protosDir) {
  const root = new protobuf.Root().loadSync(path.join(protosDir, 'brook', 'v1', 'records.proto'), { keepCase: true });
  return {
    Records: root.lookupType('brook.v1.Records'),
    RecordBatch: root.lookupType('brook.v1.RecordBatch'),
  };
}

// CRC-32C (Castagnoli), reflected polynomial 0x82F63B78: Node's zlib has only CRC-32.
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32c(bytes) {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC32C_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function compress(payload, codec) {
  switch (codec) {
    case 'COMPRESSION_CODEC_NONE':
      return payload;
    case 'COMPRESSION_CODEC_GZIP':
      return zlib.gzipSync(payload);
    case 'COMPRESSION_CODEC_LZ4':
      return Buffer.from(lz4.compress(payload));
    default:
      throw new Error(`this client does not produce ${codec} (it produces ${PRODUCE_CODECS.join(', ')})`);
  }
}

// Inflates records bytes, never past `size` + 1 bytes; the caller checks the exact size.
function decompress(payload, codec, size) {
  switch (codec) {
    case 'COMPRESSION_CODEC_UNSPECIFIED':
    case 'COMPRESSION_CODEC_NONE':
      return payload;
    case 'COMPRESSION_CODEC_GZIP':
      return zlib.gunzipSync(payload, { maxOutputLength: size + 1 });
    case 'COMPRESSION_CODEC_ZSTD':
      // A buffer of the header's size: fzstd refuses to write past it.
      return Buffer.from(fzstd.decompress(payload, new Uint8Array(size)));
    case 'COMPRESSION_CODEC_LZ4':
      return Buffer.from(lz4.decompress(payload, size + 1));
    default:
      throw new Error(`unknown codec ${codec}`);
  }
}

// Builds a RecordBatch object (for the proto-loader Produce stub: enums as names,
// int64 as strings) from records {timestampMs, key (Buffer|null), value, headers}.
function newBatch(types, records, codecName) {
  const codec = CODECS[codecName];
  const message = types.Records.create({
    records: records.map((r, i) => ({
      offset_delta: i,
      timestamp_ms: r.timestampMs,
      key: r.key ?? Buffer.alloc(0),
      has_key: r.key !== null,
      value: r.value,
      headers: r.headers.map(([key, value]) => ({ key, value })),
    })),
  });
  const payload = Buffer.from(types.Records.encode(message).finish());
  const compressed = compress(payload, codec);
  const timestamps = records.map((r) => BigInt(r.timestampMs));
  const first = timestamps.reduce((a, b) => (b < a ? b : a));
  const last = timestamps.reduce((a, b) => (b > a ? b : a));
  return {
    record_count: records.length,
    first_timestamp_ms: first.toString(),
    max_timestamp_ms: last.toString(),
    compression: codec,
    crc32c: crc32c(compressed), // of the bytes as sent, after compression
    producer_id: '-1', // not an idempotent producer
    producer_epoch: -1,
    base_sequence: -1,
    records: compressed,
    uncompressed_bytes: payload.length,
  };
}

// Decodes a fetched RecordBatch (as proto-loader gives it) into records with offsets.
function decodeBatch(types, partition, batch) {
  const base = BigInt(batch.base_offset);
  const where = `partition ${partition} batch at base offset ${base}`;
  const bytes = batch.records;
  const got = crc32c(bytes);
  if (got !== batch.crc32c >>> 0) {
    throw new Error(`${where}: crc32c ${got.toString(16)}, header says ${(batch.crc32c >>> 0).toString(16)}`);
  }
  const size = batch.uncompressed_bytes;
  if (size < 0 || size > MAX_UNCOMPRESSED_BYTES) throw new Error(`${where}: uncompressed_bytes ${size} out of range`);
  let payload;
  try {
    payload = decompress(bytes, batch.compression, size);
  } catch (error) {
    throw new Error(`${where}: ${batch.compression}: ${error.message}`);
  }
  const compressed = !['COMPRESSION_CODEC_NONE', 'COMPRESSION_CODEC_UNSPECIFIED'].includes(batch.compression);
  if (compressed && payload.length !== size) {
    throw new Error(`${where}: ${payload.length} bytes after ${batch.compression}, header says ${size}`);
  }
  const message = types.Records.decode(payload);
  if (message.records.length !== batch.record_count) {
    throw new Error(`${where}: ${message.records.length} records, header says ${batch.record_count}`);
  }
  return message.records.map((r) => {
    let timestamp = BigInt((r.timestamp_ms ?? 0).toString());
    if (timestamp === 0n) timestamp = BigInt(batch.max_timestamp_ms); // 0: the batch's max
    return {
      partition,
      offset: base + BigInt(r.offset_delta ?? 0),
      timestampMs: timestamp.toString(),
      key: r.has_key ? Buffer.from(r.key ?? []) : null,
      value: Buffer.from(r.value ?? []),
      headers: (r.headers ?? []).map((h) => [h.key ?? '', Buffer.from(h.value ?? [])]),
      leaderEpoch: batch.partition_leader_epoch, // not printed; a group commits it
    };
  });
}

// "TIMESTAMP_MS KEY VALUE HEADERS" (tab-separated) into a record.
function parseInputLine(line) {
  const fields = line.split('\t');
  if (fields.length !== 4) throw new Error(`want 4 tab-separated fields (timestamp key value headers), got ${fields.length}`);
  const [timestamp, key, value, headers] = fields;
  if (!/^[0-9]+$/.test(timestamp)) throw new Error(`timestamp ${JSON.stringify(timestamp)}: want a non-negative integer`);
  return {
    timestampMs: timestamp,
    key: key === '-' ? null : fromHex(key, 'key'),
    value: fromHex(value, 'value'),
    headers:
      headers === '-'
        ? []
        : headers.split(',').map((pair) => {
            const at = pair.indexOf('=');
            if (at < 0) throw new Error(`header ${JSON.stringify(pair)}: want HEXNAME=HEXVALUE`);
            const name = new TextDecoder('utf-8', { fatal: true }).decode(fromHex(pair.slice(0, at), 'header name'));
            return [name, fromHex(pair.slice(at + 1), 'header value')];
          }),
  };
}

function fromHex(text, what) {
  if (!/^([0-9a-fA-F]{2})*$/.test(text)) throw new Error(`${what} ${JSON.stringify(text)}: want hex`);
  return Buffer.from(text, 'hex');
}

// "record PARTITION OFFSET TIMESTAMP_MS KEY VALUE HEADERS".
function formatRecordLine(r) {
  const headers = r.headers.length
    ? r.headers.map(([name, value]) => `${Buffer.from(name, 'utf8').toString('hex')}=${value.toString('hex')}`).join(',')
    : '-';
  const key = r.key === null ? '-' : r.key.toString('hex');
  return ['record', r.partition, r.offset, r.timestampMs, key, r.value.toString('hex'), headers].join('\t');
}

module.exports = {
  CODECS,
  PRODUCE_CODECS,
  crc32c,
  decodeBatch,
  defaultProtosDir,
  formatRecordLine,
  loadRecordTypes,
  newBatch,
  parseInputLine,
};
