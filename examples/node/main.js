#!/usr/bin/env node
'use strict';
// A Brook client written only against protos/ (loaded at run time with
// @grpc/proto-loader and protobufjs), with no Brook library.
//
//   node main.js produce --bootstrap HOST:PORT --topic T [--partition 0] [--compression none|gzip|lz4] [--batch-size 100] < records
//   node main.js consume --bootstrap HOST:PORT --topic T [--partition 0] [--from 0] --count N
//   node main.js group   --bootstrap HOST:PORT --topic T --group G [--count N]
//   common: --timeout-ms 30000, --api batch|records
//
// Same commands, flags and line formats as the Go and Java examples (../README.md).
// --api selects the data API. "batch" (the default): StorageService Produce/Fetch with
// RecordBatch on the partition's leader; this program encodes, compresses and checksums
// batches itself (batch.js), to --partition (default 0). "records": RecordService
// ProduceRecords/ReadRecords on any node with plain records; the node builds the batches
// (with --compression, zstd included); without --partition it picks each keyed record's
// partition by murmur2(key). Failures print the gRPC status or the PartitionError in one
// format, from its google.rpc.ErrorInfo (errors.js), on stderr and exit 1; bad usage
// exits 2.

const path = require('node:path');
const readline = require('node:readline');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const batches = require('./batch');
const errors = require('./errors');

const { describe, fromCall, fromPartition } = errors;

const RPC_TIMEOUT_MS = 10000; // bound on each unary call
const FETCH_MAX_WAIT_MS = 500; // long poll (Fetch and ReadRecords)
// Bound on one Fetch response's batches. Channels keep grpc-js's stock 4 MiB receive
// limit and FetchRequest.receive_limit_bytes is left unset (4 MiB): the server never
// sends more, splitting a stored batch too large for it into smaller batches.
const FETCH_MAX_BYTES = 4 << 20;
const PRODUCE_TIMEOUT_MS = 10000; // how long the leader may wait for the ISR (acks=all)
const RETRY_PAUSE_MS = 100;
const READ_RECORDS_MAX = 10000; // ReadRecordsRequest.max_records upper bound

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The record a ProduceRecords request takes: key and value as bytes (an empty key is a
// key: the oneof field is present), headers in order, the record's own timestamp.
function toPlain(r) {
  const plain = {
    value: r.value,
    headers: r.headers.map(([key, value]) => ({ key, value })),
    timestamp_ms: r.timestampMs,
  };
  if (r.key !== null) plain.key = r.key;
  return plain;
}

// A ReadRecords record (proto-loader, oneofs: true) in this client's form.
function fromConsumed(partition, r) {
  const bytes = (kind, field) => (r[kind] === `${field}_text` ? Buffer.from(r[`${field}_text`], 'utf8') : Buffer.from(r[field] ?? []));
  return {
    partition: r.partition ?? partition,
    offset: BigInt(r.offset ?? 0),
    timestampMs: String(r.timestamp_ms ?? 0),
    key: r.key_kind ? bytes('key_kind', 'key') : null,
    value: bytes('value_kind', 'value'),
    headers: (r.headers ?? []).map((h) => [h.key ?? '', h.value_kind === 'value_text' ? Buffer.from(h.value_text, 'utf8') : Buffer.from(h.value ?? [])]),
    leaderEpoch: r.leader_epoch, // undefined: unknown
  };
}

class Client {
  constructor(options) {
    this.bootstrap = options.bootstrap;
    this.topic = options.topic;
    this.deadline = Date.now() + options.timeoutMs;
    this.clientId = 'brook-example-node';
    const protosDir = options.protos;
    const files = ['metadata.proto', 'storage.proto', 'groups.proto', 'record_service.proto'].map((f) => path.join('brook', 'v1', f));
    const definition = protoLoader.loadSync(files, {
      includeDirs: [protosDir], // protos/: brook/v1 and google/rpc
      keepCase: true, // field names as in the .proto (snake_case)
      longs: String, // int64 as decimal strings: offsets may pass 2^53
      enums: String,
      defaults: true,
      oneofs: true, // ConsumedRecord.key_kind names the key field set (none: no key)
    });
    this.api = grpc.loadPackageDefinition(definition).brook.v1;
    this.types = batches.loadRecordTypes(protosDir);
    this.statusTypes = errors.loadStatusTypes(protosDir);
    this.stubs = new Map();
    this.leaders = null; // partition -> {address, epoch (undefined: unknown)}; null: ask metadata
    this.nodes = []; // live storage nodes by node id (RecordService: any one)
    this.groupManager = '';
  }

  stub(service, address) {
    const key = `${service}@${address}`;
    // Stock channel options: grpc-js's 4 MiB receive limit.
    if (!this.stubs.has(key)) this.stubs.set(key, new this.api[service](address, grpc.credentials.createInsecure()));
    return this.stubs.get(key);
  }

  close() {
    for (const stub of this.stubs.values()) stub.close();
  }

  // One unary call; a failure comes back as a BrookError (see errors.js).
  call(service, address, method, request, what = `${method}`) {
    const deadline = Math.min(Date.now() + RPC_TIMEOUT_MS, this.deadline);
    return new Promise((resolve, reject) => {
      this.stub(service, address)[method](request, { deadline }, (error, response) =>
        error ? reject(fromCall(this.statusTypes, `${what} on ${address}`, error)) : resolve(response),
      );
    });
  }

  // Waits RETRY_PAUSE_MS; false when the run's deadline passed.
  async pause() {
    if (Date.now() + RETRY_PAUSE_MS >= this.deadline) return false;
    await sleep(RETRY_PAUSE_MS);
    return true;
  }

  async refresh() {
    const response = await this.call('MetadataService', this.bootstrap, 'GetMetadata', { topics: [this.topic] });
    const addresses = new Map(response.nodes.map((n) => [n.node_id, n.address]));
    this.nodes = [...response.nodes].sort((a, b) => a.node_id - b.node_id).map((n) => n.address);
    this.groupManager = response.group_manager?.address ?? '';
    const topic = response.topics.find((t) => t.name === this.topic);
    if (!topic) throw new Error(`metadata does not list topic ${this.topic}`);
    if (topic.error) throw fromPartition(`GetMetadata ${this.topic}`, topic.error);
    this.leaders = new Map();
    for (const state of topic.partitions) {
      // partition, leader_id and leader_epoch are proto3 `optional`: unset reads as undefined.
      const address = addresses.get(state.leader_id);
      if (address && state.leader_id >= 0) this.leaders.set(state.partition ?? 0, { address, epoch: state.leader_epoch });
    }
  }

  async leaderOf(partition) {
    let last;
    for (;;) {
      try {
        if (this.leaders === null) await this.refresh();
        const found = this.leaders.get(partition);
        if (found) return found;
        last = new Error(`partition ${partition} of ${this.topic} has no live leader in metadata`);
        this.leaders = null;
      } catch (error) {
        last = error;
        this.leaders = null;
      }
      if (!(await this.pause())) throw new Error(`no leader for ${this.topic}/${partition} before the deadline: ${describe(last)}`);
    }
  }

  // A live storage node (any one serves RecordService); `turn` picks another one after a
  // transport failure.
  async anyNode(turn) {
    let last;
    for (;;) {
      try {
        if (!this.nodes.length) await this.refresh();
        last = new Error('metadata lists no live storage node');
      } catch (error) {
        last = error; // a topic error still lists the nodes: the node will name it too
      }
      if (this.nodes.length) return this.nodes[turn % this.nodes.length];
      if (!(await this.pause())) throw new Error(`no storage node before the deadline: ${describe(last)}`);
    }
  }

  // The partition to send: current_leader_epoch only when metadata gave one (unset skips
  // the check; 0 is a real epoch, never a stand-in for "unknown").
  static withEpoch(fields, epoch) {
    return epoch === undefined || epoch === null ? fields : { ...fields, current_leader_epoch: epoch };
  }

  // One batch to the partition's leader with acks=all; errors that guarantee nothing was
  // appended are retried after a metadata refresh (FENCED_LEADER_EPOCH included: the
  // refresh brings the new epoch). A failed call whose status details carry the
  // ProduceResponse (every partition failed) is read like that response.
  async produce(partition, batch) {
    const what = `Produce ${this.topic}/${partition}`;
    for (;;) {
      const lead = await this.leaderOf(partition);
      let response;
      try {
        response = await this.call('StorageService', lead.address, 'Produce', {
          acks: 'ACKS_ALL',
          timeout_ms: PRODUCE_TIMEOUT_MS,
          client_id: this.clientId,
          partitions: [Client.withEpoch({ topic: this.topic, partition, batches: [batch] }, lead.epoch)],
        }, what);
      } catch (error) {
        response = error.carried?.('brook.v1.ProduceResponse');
        if (!response) {
          if (error.retriable && (await this.pause())) {
            this.leaders = null;
            continue;
          }
          throw error;
        }
      }
      const answer = response.partitions[0];
      const failure = fromPartition(what, answer.error);
      if (!failure) return answer;
      if (failure.retriable && (await this.pause())) {
        this.leaders = null;
        process.stderr.write(`produce: retrying after ${failure.reason}\n`);
        continue;
      }
      throw failure;
    }
  }

  // Up to count records from offset `from` with Fetch on the leader; with toEnd, also
  // stops at the high watermark.
  async fetch(partition, from, count, toEnd) {
    const out = [];
    let next = BigInt(from);
    while (out.length < count) {
      if (Date.now() >= this.deadline) throw new Error(`Fetch: ${out.length} of ${count} records before the deadline`);
      const what = `Fetch ${this.topic}/${partition} at offset ${next}`;
      const lead = await this.leaderOf(partition);
      let response;
      try {
        response = await this.call('StorageService', lead.address, 'Fetch', {
          max_wait_ms: FETCH_MAX_WAIT_MS,
          min_bytes: 1,
          max_bytes: FETCH_MAX_BYTES,
          // receive_limit_bytes unset: 4 MiB, this channel's stock receive limit.
          partitions: [Client.withEpoch({ topic: this.topic, partition, fetch_offset: next.toString() }, lead.epoch)],
        }, what);
      } catch (error) {
        response = error.carried?.('brook.v1.FetchResponse');
        if (!response) {
          if (error.retriable && (await this.pause())) {
            this.leaders = null;
            continue;
          }
          throw error;
        }
      }
      const answer = response.partitions[0];
      const failure = fromPartition(what, answer.error);
      if (failure) {
        if (failure.retriable && (await this.pause())) {
          this.leaders = null;
          continue;
        }
        throw failure;
      }
      for (const batch of answer.batches) {
        for (const r of batches.decodeBatch(this.types, partition, batch)) {
          if (r.offset < next) continue; // earlier records of the batch holding the fetch offset
          if (r.offset !== next) throw new Error(`Fetch: offset ${r.offset} follows ${next - 1n}`);
          if (out.length < count) out.push(r);
          next += 1n;
        }
      }
      if (toEnd && next >= BigInt(answer.high_watermark ?? 0)) break;
    }
    return out;
  }

  // Records with ProduceRecords (acks=all) on any node; partition undefined lets the node
  // pick by key. Returns each partition's [partition, first, last] in the order the
  // partitions first appear; a record's error is thrown after the partitions that
  // succeeded are printed by `report`. A failed call is retried on another node when
  // nothing can have been appended (the node retries leader moves itself); one whose
  // details carry the response (every record failed) is read as that response.
  async produceRecords(partition, records, compression, report) {
    const request = {
      topic: this.topic,
      records: records.map(toPlain),
      acks: 'ACKS_ALL',
      timeout_ms: PRODUCE_TIMEOUT_MS,
      compression: batches.CODECS[compression],
      client_id: this.clientId,
    };
    if (partition !== undefined) request.partition = partition;
    let response;
    for (let turn = 0; ; turn++) {
      const address = await this.anyNode(turn);
      try {
        response = await this.call('RecordService', address, 'ProduceRecords', request, `ProduceRecords ${this.topic}`);
        break;
      } catch (error) {
        response = error.carried?.('brook.v1.ProduceRecordsResponse');
        if (response) break; // every record failed: each result says why
        if (error.retriable && (await this.pause())) {
          this.nodes = [];
          continue;
        }
        throw error;
      }
    }
    if (response.results.length !== records.length) throw new Error(`ProduceRecords: ${response.results.length} results for ${records.length} records`);
    const spans = new Map(); // partition -> [first, last]
    let failure = null;
    for (const [i, result] of response.results.entries()) {
      if (result.error) {
        failure ??= fromPartition(`ProduceRecords ${this.topic}/${result.partition ?? '?'} (record ${i})`, result.error);
        continue;
      }
      const p = result.partition ?? 0;
      const offset = BigInt(result.offset ?? -1);
      const span = spans.get(p);
      if (!span) spans.set(p, [offset, offset]);
      else if (offset !== span[1] + 1n) throw new Error(`ProduceRecords: record ${i} at ${this.topic}/${p} offset ${offset} after ${span[1]}`);
      else span[1] = offset;
    }
    for (const [p, [first, last]] of spans) report(p, first, last);
    if (failure) throw failure;
  }

  // Up to count records from offset `from` with ReadRecords on any node; with toEnd,
  // also stops at the high watermark.
  async readRecords(partition, from, count, toEnd) {
    const out = [];
    let next = BigInt(from);
    let turn = 0;
    while (out.length < count) {
      if (Date.now() >= this.deadline) throw new Error(`ReadRecords: ${out.length} of ${count} records before the deadline`);
      const what = `ReadRecords ${this.topic}/${partition} at offset ${next}`;
      const address = await this.anyNode(turn);
      let response;
      try {
        response = await this.call('RecordService', address, 'ReadRecords', {
          topic: this.topic,
          partition,
          offset: next.toString(),
          max_records: Math.min(count - out.length, READ_RECORDS_MAX),
          max_wait_ms: FETCH_MAX_WAIT_MS,
        }, what);
      } catch (error) {
        if (error.retriable && (await this.pause())) {
          turn += 1;
          this.nodes = [];
          continue;
        }
        throw error;
      }
      for (const consumed of response.records) {
        const r = fromConsumed(partition, consumed);
        if (r.offset !== next) throw new Error(`ReadRecords: offset ${r.offset} where ${next} was next`);
        out.push(r);
        next += 1n;
      }
      if (response.next_offset !== undefined && BigInt(response.next_offset) !== next) {
        throw new Error(`ReadRecords: next_offset ${response.next_offset} after offset ${next - 1n}`);
      }
      if (toEnd && next >= BigInt(response.high_watermark ?? 0)) break;
    }
    return out;
  }

  // The read of consume and group for the chosen API.
  read(api, partition, from, count, toEnd) {
    return api === 'records' ? this.readRecords(partition, from, count, toEnd) : this.fetch(partition, from, count, toEnd);
  }
}

// Reads record lines from stdin and sends them batchSize at a time: one RecordBatch to
// the partition's leader (--api batch), or one ProduceRecords request to any node (--api
// records; without --partition the node picks by key).
async function runProduce(client, options) {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  let pending = [];
  const report = (partition, first, last) => console.log(['produced', partition, first, last].join('\t'));
  const send = async () => {
    if (!pending.length) return;
    if (options.api === 'records') {
      await client.produceRecords(options.partition, pending, options.compression, report);
      pending = [];
      return;
    }
    const partition = options.partition ?? 0;
    const answer = await client.produce(partition, batches.newBatch(client.types, pending, options.compression));
    if (BigInt(answer.last_offset) !== BigInt(answer.base_offset) + BigInt(pending.length - 1)) {
      throw new Error(`Produce: base offset ${answer.base_offset} and last offset ${answer.last_offset} for ${pending.length} records`);
    }
    report(partition, answer.base_offset, answer.last_offset);
    pending = [];
  };
  let number = 0;
  for await (const line of lines) {
    number += 1;
    if (!line) continue;
    try {
      pending.push(batches.parseInputLine(line));
    } catch (error) {
      throw new Error(`stdin line ${number}: ${error.message}`);
    }
    if (pending.length === options.batchSize) await send();
  }
  await send();
}

// Joins (Heartbeat with member_id "" and epoch 0), heartbeats until partitions are
// assigned, reads up to count records per partition from the committed offset (the log
// start when none) to the high watermark with the chosen API, commits with member id +
// epoch (and the leader epoch of the last record read), leaves (-1).
async function runGroup(client, options) {
  const member = { id: '', epoch: 0, intervalMs: 0, owned: [] };
  const manager = async () => {
    while (!client.groupManager) {
      await client.refresh();
      if (!client.groupManager && !(await client.pause())) throw new Error('metadata names no group manager before the deadline');
    }
    return client.groupManager;
  };
  const owned = () => (member.owned.length ? [{ topic: client.topic, partitions: member.owned }] : []);
  const heartbeat = async (join) => {
    const request = { group_id: options.group, member_id: member.id, member_epoch: member.epoch, owned_partitions: owned() };
    if (join) Object.assign(request, { subscribed_topic_names: [client.topic], client_id: client.clientId });
    const response = await client.call('GroupService', await manager(), 'Heartbeat', request, 'Heartbeat');
    member.id = response.member_id;
    member.epoch = response.member_epoch ?? 0;
    member.intervalMs = response.heartbeat_interval_ms;
    member.owned = response.assignment
      .filter((a) => a.topic === client.topic)
      .flatMap((a) => a.partitions)
      .sort((a, b) => a - b);
  };
  await heartbeat(true);
  console.log(['member', member.id, member.epoch].join('\t'));
  while (!member.owned.length) {
    if (Date.now() >= client.deadline) throw new Error(`no partition assigned before the deadline (member ${member.id} epoch ${member.epoch})`);
    await sleep(Math.min(Math.max(member.intervalMs, 50), 1000));
    try {
      await heartbeat(false);
    } catch (error) {
      if (!error.retriable) throw error;
      client.groupManager = '';
    }
  }
  for (const p of member.owned) console.log(['assigned', client.topic, p].join('\t'));

  const fetched = await client.call('GroupService', await manager(), 'FetchOffsets', { group_id: options.group, partitions: owned() }, 'FetchOffsets');
  const committed = new Map(fetched.offsets.filter((o) => o.topic === client.topic).map((o) => [o.partition ?? 0, BigInt(o.offset ?? -1)]));
  const offsets = [];
  for (const partition of member.owned) {
    let from = committed.get(partition) ?? -1n;
    if (from < 0n) from = 0n; // auto offset reset: earliest
    const records = await client.read(options.api, partition, from, options.count, true);
    for (const r of records) console.log(batches.formatRecordLine(r));
    if (records.length) {
      const last = records[records.length - 1];
      const commit = { topic: client.topic, partition, offset: (last.offset + 1n).toString() };
      if (last.leaderEpoch !== undefined && last.leaderEpoch !== null) commit.leader_epoch = last.leaderEpoch; // else unset: unknown
      offsets.push(commit);
    }
  }
  if (offsets.length) {
    // member_epoch is `optional`: a member always sends it (0 is a real epoch).
    const response = await client.call('GroupService', await manager(), 'CommitOffsets', {
      group_id: options.group, member_id: member.id, member_epoch: member.epoch, offsets,
    }, 'CommitOffsets');
    for (const [i, result] of response.results.entries()) {
      const failure = fromPartition(`CommitOffsets ${result.topic}/${result.partition ?? 0}`, result.error);
      if (failure) throw failure;
      console.log(['committed', result.topic, result.partition ?? 0, offsets[i].offset].join('\t'));
    }
  }
  try {
    await client.call('GroupService', await manager(), 'Heartbeat', { group_id: options.group, member_id: member.id, member_epoch: -1, current_member_epoch: member.epoch }, 'Heartbeat (leave)');
    console.log('left');
  } catch (error) {
    process.stderr.write(`group: leave: ${describe(error)}\n`);
  }
}

const USAGE = `usage: node main.js produce|consume|group --bootstrap HOST:PORT --topic T [flags]
  --api batch          data API: batch (StorageService Produce/Fetch with RecordBatch, on the
                       leader) or records (RecordService ProduceRecords/ReadRecords, on any node)
  --timeout-ms 30000   bound on the whole run
  --protos DIR         the protos folder (default ../../protos from main.js)
  --partition 0        partition to produce to or consume from (produce, consume); with
                       --api records, produce without it lets the node pick by key
  --compression none   codec of produced batches: ${batches.PRODUCE_CODECS.join(', ')}; with --api records
                       (the node compresses) also zstd (produce)
  --batch-size 100     records per batch or ProduceRecords request (produce)
  --from 0             first offset to read (consume)
  --count 1            records to read (consume); most records per partition (group)
  --group G            consumer group id (group)`;

function parseOptions(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      bootstrap: { type: 'string' },
      topic: { type: 'string' },
      api: { type: 'string', default: 'batch' },
      'timeout-ms': { type: 'string', default: '30000' },
      protos: { type: 'string', default: batches.defaultProtosDir() },
      partition: { type: 'string' }, // no default: "not given" matters with --api records
      compression: { type: 'string', default: 'none' },
      'batch-size': { type: 'string', default: '100' },
      from: { type: 'string', default: '0' },
      count: { type: 'string', default: '1' },
      group: { type: 'string', default: '' },
    },
  });
  const integer = (name, min) => {
    const text = values[name];
    if (!/^[0-9]+$/.test(text) || Number(text) < min) throw new Error(`--${name} ${text}: want an integer >= ${min}`);
    return Number(text);
  };
  const [command, ...rest] = positionals;
  if (!['produce', 'consume', 'group'].includes(command) || rest.length) throw new Error('want one command: produce, consume or group');
  if (!values.bootstrap || !values.topic) throw new Error('--bootstrap and --topic are required');
  if (!['batch', 'records'].includes(values.api)) throw new Error(`--api ${values.api}: want batch or records`);
  // The node compresses for the record API, so every codec works there.
  const codecs = values.api === 'records' ? Object.keys(batches.CODECS) : batches.PRODUCE_CODECS;
  if (command === 'produce' && !codecs.includes(values.compression)) {
    throw new Error(`--compression ${values.compression}: want one of ${codecs.join(', ')}`);
  }
  if (command === 'group' && !values.group) throw new Error('--group is required');
  if (!/^[0-9]+$/.test(values.from)) throw new Error(`--from ${values.from}: want an offset`);
  let partition = values.partition === undefined ? undefined : integer('partition', 0);
  if (partition === undefined && !(command === 'produce' && values.api === 'records')) partition = 0;
  return {
    command,
    api: values.api,
    bootstrap: values.bootstrap,
    topic: values.topic,
    protos: values.protos,
    timeoutMs: integer('timeout-ms', 1),
    partition, // undefined only for produce --api records: the node picks by key
    compression: values.compression,
    batchSize: integer('batch-size', 1),
    from: values.from,
    count: integer('count', 1),
    group: values.group,
  };
}

async function main() {
  let options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${error.message}\n${USAGE}\n`);
    return 2;
  }
  const client = new Client(options);
  try {
    if (options.command === 'produce') await runProduce(client, options);
    if (options.command === 'consume') {
      const records = await client.read(options.api, options.partition, options.from, options.count, false);
      for (const r of records) console.log(batches.formatRecordLine(r));
    }
    if (options.command === 'group') await runGroup(client, options);
    return 0;
  } catch (error) {
    process.stderr.write(`brook-example-node: ${describe(error)}\n`);
    return 1;
  } finally {
    client.close();
  }
}

if (require.main === module) {
  main().then((code) => {
    process.exitCode = code;
  });
}

module.exports = { fromConsumed, toPlain };
