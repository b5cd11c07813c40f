package dev.brook.example;

import dev.brook.v1.Acks;
import dev.brook.v1.FetchPartition;
import dev.brook.v1.FetchRequest;
import dev.brook.v1.FetchResponse;
import dev.brook.v1.FetchedPartition;
import dev.brook.v1.GetMetadataRequest;
import dev.brook.v1.GetMetadataResponse;
import dev.brook.v1.MetadataServiceGrpc;
import dev.brook.v1.Node;
import dev.brook.v1.PartitionState;
import dev.brook.v1.ProducePartition;
import dev.brook.v1.ProducePartitionResponse;
import dev.brook.v1.ProduceRequest;
import dev.brook.v1.ProduceResponse;
import dev.brook.v1.RecordBatch;
import dev.brook.v1.StorageServiceGrpc;
import dev.brook.v1.TopicMetadata;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

/**
 * The batch API client: metadata (leaders, epochs, nodes, group manager), Produce and Fetch
 * on the partition's leader, retries. Channels keep grpc-java's stock limits (4 MiB
 * received).
 */
final class BrookClient implements AutoCloseable {
  static final long RPC_TIMEOUT_MS = 10_000; // bound on each unary call
  static final int FETCH_MAX_WAIT_MS = 500; // long poll (Fetch and ReadRecords)
  /**
   * Bound on one Fetch response's batches. FetchRequest.receive_limit_bytes is left unset
   * (4 MiB, the channel's stock receive limit): the server never sends more, splitting a
   * stored batch too large for it into smaller batches.
   */
  static final int FETCH_MAX_BYTES = 4 << 20;
  static final int PRODUCE_TIMEOUT_MS = 10_000; // how long the leader may wait for the ISR
  static final long RETRY_PAUSE_MS = 100;

  /** Where a partition is led; epoch is null when metadata did not say (sent unset). */
  record Leader(String address, Integer epoch) {}

  final String bootstrap;
  final String topic;
  final long deadlineNanos;
  final String clientId = "brook-example-java";
  private final Map<String, ManagedChannel> channels = new HashMap<>();
  private Map<Integer, Leader> leaders; // null: ask metadata
  /** Live storage nodes by node id: any one serves RecordService. */
  List<String> nodes = new ArrayList<>();
  String groupManager = "";

  BrookClient(String bootstrap, String topic, long timeoutMs) {
    this.bootstrap = bootstrap;
    this.topic = topic;
    this.deadlineNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
  }

  ManagedChannel channel(String address) {
    return channels.computeIfAbsent(address, a -> ManagedChannelBuilder.forTarget(a).usePlaintext().build());
  }

  /** Per-call deadline: RPC_TIMEOUT_MS, never past the run's deadline. */
  long callTimeoutMs() {
    long left = TimeUnit.NANOSECONDS.toMillis(deadlineNanos - System.nanoTime());
    return Math.max(1, Math.min(RPC_TIMEOUT_MS, left));
  }

  /** Waits RETRY_PAUSE_MS; false when the run's deadline passed. */
  boolean pause() throws InterruptedException {
    if (System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(RETRY_PAUSE_MS) >= deadlineNanos) {
      return false;
    }
    Thread.sleep(RETRY_PAUSE_MS);
    return true;
  }

  void forget() {
    leaders = null;
  }

  void refresh() throws BrookException {
    GetMetadataResponse response;
    try {
      response = MetadataServiceGrpc.newBlockingStub(channel(bootstrap))
          .withDeadlineAfter(callTimeoutMs(), TimeUnit.MILLISECONDS)
          .getMetadata(GetMetadataRequest.newBuilder().addTopics(topic).build());
    } catch (StatusRuntimeException e) {
      throw BrookException.fromCall("GetMetadata on " + bootstrap, e);
    }
    Map<Integer, String> addresses = new TreeMap<>();
    for (Node node : response.getNodesList()) {
      addresses.put(node.getNodeId(), node.getAddress());
    }
    nodes = new ArrayList<>(addresses.values());
    groupManager = response.getGroupManager().getAddress();
    for (TopicMetadata t : response.getTopicsList()) {
      if (!t.getName().equals(topic)) {
        continue;
      }
      if (t.hasError()) {
        throw BrookException.fromPartition("GetMetadata " + topic, t.getError());
      }
      Map<Integer, Leader> found = new HashMap<>();
      for (PartitionState state : t.getPartitionsList()) {
        String address = addresses.get(state.getLeaderId());
        if (address != null && state.hasLeaderId() && state.getLeaderId() >= 0) {
          found.put(state.getPartition(), new Leader(address, state.hasLeaderEpoch() ? state.getLeaderEpoch() : null));
        }
      }
      leaders = found;
      return;
    }
    throw new IllegalStateException("metadata does not list topic " + topic);
  }

  Leader leaderOf(int partition) throws InterruptedException {
    Exception last = null;
    while (true) {
      try {
        if (leaders == null) {
          refresh();
        }
        Leader found = leaders.get(partition);
        if (found != null) {
          return found;
        }
        last = new IllegalStateException("partition " + partition + " of " + topic + " has no live leader");
        forget();
      } catch (BrookException | RuntimeException e) {
        last = e;
        forget();
      }
      if (!pause()) {
        throw new IllegalStateException("no leader for " + topic + "/" + partition + " before the deadline: "
            + BrookException.describe(last), last);
      }
    }
  }

  /** A live storage node (any one serves RecordService); turn picks another after a failure. */
  String anyNode(int turn) throws InterruptedException {
    Exception last = null;
    while (true) {
      try {
        if (nodes.isEmpty()) {
          refresh();
        }
        last = new IllegalStateException("metadata lists no live storage node");
      } catch (BrookException | RuntimeException e) {
        last = e; // a topic error still lists the nodes: the node will name it too
      }
      if (!nodes.isEmpty()) {
        return nodes.get(turn % nodes.size());
      }
      if (!pause()) {
        throw new IllegalStateException("no storage node before the deadline: " + BrookException.describe(last), last);
      }
    }
  }

  /**
   * One batch to the partition's leader with acks=all. Errors that guarantee nothing was
   * appended are retried after a metadata refresh (FENCED_LEADER_EPOCH included: the refresh
   * brings the new epoch). A failed call whose status details carry the ProduceResponse (every
   * partition failed) is read like that response.
   */
  ProducePartitionResponse produce(int partition, RecordBatch batch) throws Exception {
    String what = "Produce " + topic + "/" + partition;
    while (true) {
      Leader lead = leaderOf(partition);
      ProducePartition.Builder target = ProducePartition.newBuilder()
          .setTopic(topic)
          .setPartition(partition)
          .addBatches(batch);
      if (lead.epoch() != null) { // unset skips the check; 0 is a real epoch
        target.setCurrentLeaderEpoch(lead.epoch());
      }
      ProduceResponse response;
      try {
        response = StorageServiceGrpc.newBlockingStub(channel(lead.address()))
            .withDeadlineAfter(callTimeoutMs(), TimeUnit.MILLISECONDS)
            .produce(ProduceRequest.newBuilder()
                .setAcks(Acks.ACKS_ALL)
                .setTimeoutMs(PRODUCE_TIMEOUT_MS)
                .setClientId(clientId)
                .addPartitions(target)
                .build());
      } catch (StatusRuntimeException e) {
        BrookException failure = BrookException.fromCall(what + " on " + lead.address(), e);
        response = failure.carried(ProduceResponse.class);
        if (response == null) {
          if (failure.retriable() && pause()) {
            forget();
            continue;
          }
          throw failure;
        }
      }
      ProducePartitionResponse answer = response.getPartitions(0);
      if (!answer.hasError()) {
        return answer;
      }
      BrookException failure = BrookException.fromPartition(what, answer.getError());
      if (failure.retriable() && pause()) {
        forget();
        System.err.println("produce: retrying after " + failure.reason());
        continue;
      }
      throw failure;
    }
  }

  /** Up to count records from offset `from`; with toEnd, also stops at the high watermark. */
  List<Lines.Rec> fetch(int partition, long from, int count, boolean toEnd) throws Exception {
    List<Lines.Rec> out = new ArrayList<>();
    long next = from;
    while (out.size() < count) {
      if (System.nanoTime() >= deadlineNanos) {
        throw new IOException("Fetch: " + out.size() + " of " + count + " records before the deadline");
      }
      String what = "Fetch " + topic + "/" + partition + " at offset " + next;
      Leader lead = leaderOf(partition);
      FetchPartition.Builder target = FetchPartition.newBuilder()
          .setTopic(topic)
          .setPartition(partition)
          .setFetchOffset(next);
      if (lead.epoch() != null) {
        target.setCurrentLeaderEpoch(lead.epoch());
      }
      FetchResponse response;
      try {
        response = StorageServiceGrpc.newBlockingStub(channel(lead.address()))
            .withDeadlineAfter(callTimeoutMs(), TimeUnit.MILLISECONDS)
            .fetch(FetchRequest.newBuilder()
                .setMaxWaitMs(FETCH_MAX_WAIT_MS)
                .setMinBytes(1)
                .setMaxBytes(FETCH_MAX_BYTES)
                // receive_limit_bytes unset: 4 MiB, this channel's stock receive limit.
                .addPartitions(target)
                .build());
      } catch (StatusRuntimeException e) {
        BrookException failure = BrookException.fromCall(what + " on " + lead.address(), e);
        response = failure.carried(FetchResponse.class);
        if (response == null) {
          if (failure.retriable() && pause()) {
            forget();
            continue;
          }
          throw failure;
        }
      }
      FetchedPartition answer = response.getPartitions(0);
      if (answer.hasError()) {
        BrookException failure = BrookException.fromPartition(what, answer.getError());
        if (failure.retriable() && pause()) {
          forget();
          continue;
        }
        throw failure;
      }
      for (RecordBatch batch : answer.getBatchesList()) {
        for (Lines.Rec r : Batches.decodeBatch(partition, batch)) {
          if (r.offset() < next) {
            continue; // earlier records of the batch that holds the fetch offset
          }
          if (r.offset() != next) {
            throw new IOException("Fetch: offset " + r.offset() + " follows " + (next - 1));
          }
          if (out.size() < count) {
            out.add(r);
          }
          next++;
        }
      }
      if (toEnd && next >= answer.getHighWatermark()) {
        break;
      }
    }
    return out;
  }

  @Override
  public void close() {
    for (ManagedChannel channel : channels.values()) {
      channel.shutdownNow();
    }
    for (ManagedChannel channel : channels.values()) {
      try {
        channel.awaitTermination(5, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }
}
