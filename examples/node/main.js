#!/usr/bin/env node
'use strict';
// A Brook client written only against protos/brook/v1 (loaded at run time with
// @grpc/proto-loader and protobufjs), with no Brook library.
//
//   node main.js produce --bootstrap HOST:PORT --topic T [--partition 0] [--compression none|gzip|lz4] [--batch-size 100] < records
//   node main.js consume --bootstrap HOST:PORT --topic T [--partition 0] [--from 0] --count N
//   node main.js group   --bootstrap HOST:PORT --topic T --group G [--count N]
//
// Same commands, flags and line formats as the Go and Java examples (../README.md).
// --api selects the data API; "batch" (StorageService Produce/Fetch with RecordBatch) is
// the one there is. Failures print the gRPC status (code, message, ErrorInfo reason and
// metadata) or the per-partition error on stderr and exit 1; bad usage exits 2.

const path = require('node:path');
const readline = require('node:readline');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const batches = require('./batch');

const RPC_TIMEOUT_MS = 10000; // bound on each unary call
const FETCH_MAX_WAIT_MS = 500; // long poll
const FETCH_MAX_BYTES = 4 << 20;
const PRODUCE_TIMEOUT_MS = 10000; // how long the leader may wait for the ISR (acks=all)
const RETRY_PAUSE_MS = 100;

// Reasons that guarantee nothing was appended: safe to retry after a metadata refresh.
// NOT_ENOUGH_REPLICAS_AFTER_APPEND and REQUEST_TIMED_OUT are retriable too, but the batch
// may be in the log already, so retrying them may duplicate records: reported instead.
const SAFE_TO_RETRY = new Set([
  'NOT_LEADER', 'LEADER_NOT_AVAILABLE', 'NOT_LEADER_OR_FOLLOWER', 'FENCED_LEADER_EPOCH',
  'UNKNOWN_LEADER_EPOCH', 'NOT_ENOUGH_REPLICAS', 'TOO_MANY_REQUESTS', 'STORAGE_ERROR',
  'NOT_COORDINATOR', 'COORDINATOR_NOT_AVAILABLE', 'REASSIGNMENT_IN_PROGRESS',
  'ELIGIBLE_LEADERS_NOT_AVAILABLE',
]);

// google.rpc.Status and ErrorInfo, for the grpc-status-details-bin trailer (no
// googleapis dependency: two small messages).
const RPC_TYPES = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        rpc: {
          nested: {
            Status: { fields: { code: { type: 'int32', id: 1 }, message: { type: 'string', id: 2 }, details: { rule: 'repeated', type: 'Any', id: 3 } } },
            Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
            ErrorInfo: { fields: { reason: { type: 'string', id: 1 }, domain: { type: 'string', id: 2 }, metadata: { keyType: 'string', type: 'string', id: 3 } } },
          },
        },
      },
    },
  },
});

function errorInfo(error) {
  const details = error?.metadata?.get?.('grpc-status-details-bin')?.[0];
  if (!details) return null;
  const status = RPC_TYPES.lookupType('google.rpc.Status').decode(details);
  for (const any of status.details) {
    if (any.type_url.endsWith('/google.rpc.ErrorInfo')) return RPC_TYPES.lookupType('google.rpc.ErrorInfo').decode(any.value);
  }
  return null;
}

// A failed call may be retried: a transport failure (UNAVAILABLE without details) or an
// ErrorInfo whose reason is safe to retry.
function retriableCall(error) {
  if (error?.code === undefined) return false;
  const info = errorInfo(error);
  return info ? SAFE_TO_RETRY.has(info.reason) : error.code === grpc.status.UNAVAILABLE;
}

class PartitionError extends Error {
  constructor(what, pe) {
    const reason = pe.reason.replace(/^ERROR_REASON_/, '');
    super(`${what}: partition error reason=${reason} code=${pe.code} message=${JSON.stringify(pe.message)} metadata=${formatMetadata(pe.metadata)}`);
    this.reason = reason;
  }
}

function formatMetadata(metadata) {
  return `{${Object.keys(metadata ?? {}).sort().map((k) => `${k}=${metadata[k]}`).join(',')}}`;
}

function describe(error) {
  if (error instanceof PartitionError || error?.code === undefined) return error.message ?? String(error);
  const lines = [error.message, `grpc status: code=${grpc.status[error.code]} message=${JSON.stringify(error.details)}`];
  const info = errorInfo(error);
  if (info) lines.push(`error info: reason=${info.reason} domain=${info.domain} metadata=${formatMetadata(info.metadata)}`);
  return lines.join('\n');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Client {
  constructor(options) {
    this.bootstrap = options.bootstrap;
    this.topic = options.topic;
    this.deadline = Date.now() + options.timeoutMs;
    this.clientId = 'brook-example-node';
    const protosDir = options.protos;
    const files = ['metadata.proto', 'storage.proto', 'groups.proto'].map((f) => path.join('brook', 'v1', f));
    const definition = protoLoader.loadSync(files, {
      includeDirs: [protosDir],
      keepCase: true, // field names as in the .proto (snake_case)
      longs: String, // int64 as decimal strings: offsets may pass 2^53
      enums: String,
      defaults: true,
    });
    this.api = grpc.loadPackageDefinition(definition).brook.v1;
    this.types = batches.loadRecordTypes(protosDir);
    this.stubs = new Map();
    this.leaders = null; // partition -> {address, epoch}; null: ask metadata
    this.groupManager = '';
  }

  stub(service, address) {
    const key = `${service}@${address}`;
    if (!this.stubs.has(key)) this.stubs.set(key, new this.api[service](address, grpc.credentials.createInsecure()));
    return this.stubs.get(key);
  }

  close() {
    for (const stub of this.stubs.values()) stub.close();
  }

  call(service, address, method, request) {
    const deadline = Math.min(Date.now() + RPC_TIMEOUT_MS, this.deadline);
    return new Promise((resolve, reject) => {
      this.stub(service, address)[method](request, { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
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
    this.groupManager = response.group_manager?.address ?? '';
    const topic = response.topics.find((t) => t.name === this.topic);
    if (!topic) throw new Error(`metadata does not list topic ${this.topic}`);
    if (topic.error) throw new PartitionError(`GetMetadata ${this.topic}`, topic.error);
    this.leaders = new Map();
    for (const state of topic.partitions) {
      // partition, leader_id and leader_epoch are proto3 `optional`: unset reads as undefined.
      const address = addresses.get(state.leader_id);
      if (address && state.leader_id >= 0) this.leaders.set(state.partition ?? 0, { address, epoch: state.leader_epoch ?? -1 });
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

  // One batch to the partition's leader with acks=all; safe errors retried after a refresh.
  async produce(partition, batch) {
    for (;;) {
      const lead = await this.leaderOf(partition);
      let response;
      try {
        response = await this.call('StorageService', lead.address, 'Produce', {
          acks: 'ACKS_ALL',
          timeout_ms: PRODUCE_TIMEOUT_MS,
          client_id: this.clientId,
          partitions: [{ topic: this.topic, partition, current_leader_epoch: lead.epoch, batches: [batch] }],
        });
      } catch (error) {
        if (retriableCall(error) && (await this.pause())) {
          this.leaders = null;
          continue;
        }
        throw error;
      }
      const answer = response.partitions[0];
      if (!answer.error) return answer;
      const reason = answer.error.reason.replace(/^ERROR_REASON_/, '');
      if (SAFE_TO_RETRY.has(reason) && (await this.pause())) {
        this.leaders = null;
        process.stderr.write(`produce: retrying after ${reason}\n`);
        continue;
      }
      throw new PartitionError(`Produce ${this.topic}/${partition}`, answer.error);
    }
  }

  // Up to count records from offset `from`; with toEnd, also stops at the high watermark.
  async fetch(partition, from, count, toEnd) {
    const out = [];
    let next = BigInt(from);
    while (out.length < count) {
      if (Date.now() >= this.deadline) throw new Error(`Fetch: ${out.length} of ${count} records before the deadline`);
      const lead = await this.leaderOf(partition);
      let response;
      try {
        response = await this.call('StorageService', lead.address, 'Fetch', {
          max_wait_ms: FETCH_MAX_WAIT_MS,
          min_bytes: 1,
          max_bytes: FETCH_MAX_BYTES,
          partitions: [{ topic: this.topic, partition, fetch_offset: next.toString(), current_leader_epoch: lead.epoch }],
        });
      } catch (error) {
        if (retriableCall(error) && (await this.pause())) {
          this.leaders = null;
          continue;
        }
        throw error;
      }
      const answer = response.partitions[0];
      if (answer.error) {
        const reason = answer.error.reason.replace(/^ERROR_REASON_/, '');
        if (SAFE_TO_RETRY.has(reason) && (await this.pause())) {
          this.leaders = null;
          continue;
        }
        throw new PartitionError(`Fetch ${this.topic}/${partition} at offset ${next}`, answer.error);
      }
      for (const batch of answer.batches) {
        for (const r of batches.decodeBatch(this.types, partition, batch)) {
          if (r.offset < next) continue; // earlier records of the batch holding the fetch offset
          if (r.offset !== next) throw new Error(`Fetch: offset ${r.offset} follows ${next - 1n}`);
          if (out.length < count) out.push(r);
          next += 1n;
        }
      }
      if (toEnd && next >= BigInt(answer.high_watermark)) break;
    }
    return out;
  }
}

async function runProduce(client, options) {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  let pending = [];
  const send = async () => {
    if (!pending.length) return;
    const answer = await client.produce(options.partition, batches.newBatch(client.types, pending, options.compression));
    if (BigInt(answer.last_offset) !== BigInt(answer.base_offset) + BigInt(pending.length - 1)) {
      throw new Error(`Produce: base offset ${answer.base_offset} and last offset ${answer.last_offset} for ${pending.length} records`);
    }
    console.log(['produced', options.partition, answer.base_offset, answer.last_offset].join('\t'));
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
// start when none) to the high watermark, commits with member id + epoch, leaves (-1).
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
    const response = await client.call('GroupService', await manager(), 'Heartbeat', request);
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
      if (!retriableCall(error)) throw error;
      client.groupManager = '';
    }
  }
  for (const p of member.owned) console.log(['assigned', client.topic, p].join('\t'));

  const fetched = await client.call('GroupService', await manager(), 'FetchOffsets', { group_id: options.group, partitions: owned() });
  const committed = new Map(fetched.offsets.filter((o) => o.topic === client.topic).map((o) => [o.partition ?? 0, BigInt(o.offset ?? -1)]));
  const offsets = [];
  for (const partition of member.owned) {
    let from = committed.get(partition) ?? -1n;
    if (from < 0n) from = 0n; // auto offset reset: earliest
    const records = await client.fetch(partition, from, options.count, true);
    for (const r of records) console.log(batches.formatRecordLine(r));
    if (records.length) {
      offsets.push({ topic: client.topic, partition, offset: (records[records.length - 1].offset + 1n).toString(), leader_epoch: -1 });
    }
  }
  if (offsets.length) {
    const response = await client.call('GroupService', await manager(), 'CommitOffsets', {
      group_id: options.group, member_id: member.id, member_epoch: member.epoch, offsets,
    });
    for (const [i, result] of response.results.entries()) {
      if (result.error) throw new PartitionError(`CommitOffsets ${result.topic}/${result.partition}`, result.error);
      console.log(['committed', result.topic, result.partition ?? 0, offsets[i].offset].join('\t'));
    }
  }
  try {
    await client.call('GroupService', await manager(), 'Heartbeat', { group_id: options.group, member_id: member.id, member_epoch: -1 });
    console.log('left');
  } catch (error) {
    process.stderr.write(`group: leave: ${describe(error)}\n`);
  }
}

const USAGE = `usage: node main.js produce|consume|group --bootstrap HOST:PORT --topic T [flags]
  --api batch          data API (StorageService Produce/Fetch with RecordBatch)
  --timeout-ms 30000   bound on the whole run
  --protos DIR         the protos folder (default ../../protos from main.js)
  --partition 0        partition to produce to or consume from (produce, consume)
  --compression none   codec of produced batches: ${batches.PRODUCE_CODECS.join(', ')} (produce)
  --batch-size 100     records per batch (produce)
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
      partition: { type: 'string', default: '0' },
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
  if (values.api !== 'batch') throw new Error(`--api ${values.api}: only "batch" is available`);
  if (command === 'produce' && !batches.PRODUCE_CODECS.includes(values.compression)) {
    throw new Error(`--compression ${values.compression}: want one of ${batches.PRODUCE_CODECS.join(', ')}`);
  }
  if (command === 'group' && !values.group) throw new Error('--group is required');
  if (!/^[0-9]+$/.test(values.from)) throw new Error(`--from ${values.from}: want an offset`);
  return {
    command,
    bootstrap: values.bootstrap,
    topic: values.topic,
    protos: values.protos,
    timeoutMs: integer('timeout-ms', 1),
    partition: integer('partition', 0),
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
      for (const r of await client.fetch(options.partition, options.from, options.count, false)) console.log(batches.formatRecordLine(r));
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

main().then((code) => {
  process.exitCode = code;
});
