package dev.brook.example;

import com.google.protobuf.ByteString;
import dev.brook.v1.Acks;
import dev.brook.v1.CompressionCodec;
import dev.brook.v1.ConsumedRecord;
import dev.brook.v1.PlainHeader;
import dev.brook.v1.PlainRecord;
import dev.brook.v1.ProduceRecordsRequest;
import dev.brook.v1.ProduceRecordsResponse;
import dev.brook.v1.ProducedRecord;
import dev.brook.v1.ReadRecordsRequest;
import dev.brook.v1.ReadRecordsResponse;
import dev.brook.v1.RecordServiceGrpc;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The record API client (--api records): RecordService.ProduceRecords sends plain records to
 * any storage node, which encodes them into one batch per partition, routes it to the
 * partition's leader and answers each record's offset (without --partition a keyed record
 * goes to murmur2(key) modulo the partition count); RecordService.ReadRecords reads decoded
 * records from any node. No batch encoding, CRC or leader lookup here: the node does that
 * work, at the cost of a hop and per-record work on the node.
 */
final class RecordApi {
  static final int READ_RECORDS_MAX = 10_000; // ReadRecordsRequest.max_records upper bound

  /** One partition's share of a ProduceRecords answer: offsets first..last, in request order. */
  record Produced(int partition, long first, long last) {}

  private final BrookClient client;

  RecordApi(BrookClient client) {
    this.client = client;
  }

  /** A record as ProduceRecords takes it: an empty key is a key (the oneof is set). */
  static PlainRecord toPlain(Lines.Rec r) {
    PlainRecord.Builder out = PlainRecord.newBuilder()
        .setTimestampMs(r.timestampMs())
        .setValue(ByteString.copyFrom(r.value()));
    if (r.key() != null) {
      out.setKey(ByteString.copyFrom(r.key()));
    }
    for (Lines.Header h : r.headers()) {
      out.addHeaders(PlainHeader.newBuilder().setKey(h.name()).setValue(ByteString.copyFrom(h.value())));
    }
    return out.build();
  }

  /** A ReadRecords record in this client's form. */
  static Lines.Rec fromConsumed(int partition, ConsumedRecord r) {
    byte[] key = switch (r.getKeyKindCase()) {
      case KEY -> r.getKey().toByteArray();
      case KEY_TEXT -> r.getKeyText().getBytes(StandardCharsets.UTF_8);
      default -> null;
    };
    byte[] value = r.getValueKindCase() == ConsumedRecord.ValueKindCase.VALUE_TEXT
        ? r.getValueText().getBytes(StandardCharsets.UTF_8) : r.getValue().toByteArray();
    List<Lines.Header> headers = new ArrayList<>();
    for (PlainHeader h : r.getHeadersList()) {
      headers.add(new Lines.Header(h.getKey(), h.getValueKindCase() == PlainHeader.ValueKindCase.VALUE_TEXT
          ? h.getValueText().getBytes(StandardCharsets.UTF_8) : h.getValue().toByteArray()));
    }
    return new Lines.Rec(r.hasPartition() ? r.getPartition() : partition, r.getOffset(), r.getTimestampMs(), key,
        value, headers, r.hasLeaderEpoch() ? r.getLeaderEpoch() : null);
  }

  /**
   * Records with ProduceRecords (acks=all) on any node; partition null lets the node pick by
   * key. Returns each partition's offsets in the order the partitions first appear; a
   * record's error is thrown after those are reported. A failed call is retried on another
   * node when nothing can have been appended (the node retries leader moves itself); one whose
   * details carry the response (every record failed) is read as that response.
   */
  List<Produced> produce(Integer partition, List<Lines.Rec> records, CompressionCodec codec,
      java.util.function.Consumer<Produced> report) throws Exception {
    ProduceRecordsRequest.Builder request = ProduceRecordsRequest.newBuilder()
        .setTopic(client.topic)
        .setAcks(Acks.ACKS_ALL)
        .setTimeoutMs(BrookClient.PRODUCE_TIMEOUT_MS)
        .setCompression(codec)
        .setClientId(client.clientId);
    if (partition != null) {
      request.setPartition(partition);
    }
    for (Lines.Rec r : records) {
      request.addRecords(toPlain(r));
    }
    ProduceRecordsResponse response;
    for (int turn = 0; ; turn++) {
      String address = client.anyNode(turn);
      try {
        response = RecordServiceGrpc.newBlockingStub(client.channel(address))
            .withDeadlineAfter(client.callTimeoutMs(), TimeUnit.MILLISECONDS)
            .produceRecords(request.build());
        break;
      } catch (StatusRuntimeException e) {
        BrookException failure = BrookException.fromCall("ProduceRecords " + client.topic + " on " + address, e);
        response = failure.carried(ProduceRecordsResponse.class);
        if (response != null) {
          break; // every record failed: each result says why
        }
        if (failure.retriable() && client.pause()) {
          client.nodes = new ArrayList<>();
          continue;
        }
        throw failure;
      }
    }
    if (response.getResultsCount() != records.size()) {
      throw new IOException("ProduceRecords: " + response.getResultsCount() + " results for " + records.size()
          + " records");
    }
    Map<Integer, long[]> spans = new LinkedHashMap<>(); // partition -> {first, last}
    BrookException failure = null;
    for (int i = 0; i < response.getResultsCount(); i++) {
      ProducedRecord result = response.getResults(i);
      if (result.hasError()) {
        if (failure == null) {
          failure = BrookException.fromPartition("ProduceRecords " + client.topic + "/" + result.getPartition()
              + " (record " + i + ")", result.getError());
        }
        continue;
      }
      long[] span = spans.get(result.getPartition());
      if (span == null) {
        spans.put(result.getPartition(), new long[] {result.getOffset(), result.getOffset()});
      } else if (result.getOffset() != span[1] + 1) {
        throw new IOException("ProduceRecords: record " + i + " at " + client.topic + "/" + result.getPartition()
            + " offset " + result.getOffset() + " after " + span[1]);
      } else {
        span[1] = result.getOffset();
      }
    }
    List<Produced> out = new ArrayList<>();
    spans.forEach((p, span) -> out.add(new Produced(p, span[0], span[1])));
    out.forEach(report);
    if (failure != null) {
      throw failure;
    }
    return out;
  }

  /** Up to count records from offset `from` on any node; with toEnd, stops at the high watermark. */
  List<Lines.Rec> read(int partition, long from, int count, boolean toEnd) throws Exception {
    List<Lines.Rec> out = new ArrayList<>();
    long next = from;
    int turn = 0;
    while (out.size() < count) {
      if (System.nanoTime() >= client.deadlineNanos) {
        throw new IOException("ReadRecords: " + out.size() + " of " + count + " records before the deadline");
      }
      String address = client.anyNode(turn);
      ReadRecordsResponse response;
      try {
        response = RecordServiceGrpc.newBlockingStub(client.channel(address))
            .withDeadlineAfter(client.callTimeoutMs(), TimeUnit.MILLISECONDS)
            .readRecords(ReadRecordsRequest.newBuilder()
                .setTopic(client.topic)
                .setPartition(partition)
                .setOffset(next)
                .setMaxRecords(Math.min(count - out.size(), READ_RECORDS_MAX))
                .setMaxWaitMs(BrookClient.FETCH_MAX_WAIT_MS)
                .build());
      } catch (StatusRuntimeException e) {
        BrookException failure = BrookException.fromCall(
            "ReadRecords " + client.topic + "/" + partition + " at offset " + next + " on " + address, e);
        if (failure.retriable() && client.pause()) {
          turn++;
          client.nodes = new ArrayList<>();
          continue;
        }
        throw failure;
      }
      for (ConsumedRecord consumed : response.getRecordsList()) {
        Lines.Rec r = fromConsumed(partition, consumed);
        if (r.offset() != next) {
          throw new IOException("ReadRecords: offset " + r.offset() + " where " + next + " was next");
        }
        out.add(r);
        next++;
      }
      if (response.hasNextOffset() && response.getNextOffset() != next) {
        throw new IOException("ReadRecords: next_offset " + response.getNextOffset() + " after offset " + (next - 1));
      }
      if (toEnd && next >= response.getHighWatermark()) {
        break;
      }
    }
    return out;
  }
}
