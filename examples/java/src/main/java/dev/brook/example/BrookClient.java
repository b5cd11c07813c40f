package dev.brook.example;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import dev.brook.v1.Acks;
import dev.brook.v1.FetchPartition;
import dev.brook.v1.FetchRequest;
import dev.brook.v1.FetchResponse;
import dev.brook.v1.FetchedPartition;
import dev.brook.v1.GetMetadataRequest;
import dev.brook.v1.GetMetadataResponse;
import dev.brook.v1.MetadataServiceGrpc;
import dev.brook.v1.Node;
import dev.brook.v1.PartitionError;
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
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

/** The batch API client: metadata (leaders, group manager), Produce, Fetch, errors. */
final class BrookClient implements AutoCloseable {
  static final long RPC_TIMEOUT_MS = 10_000; // bound on each unary call
  static final int FETCH_MAX_WAIT_MS = 500; // long poll
  static final int FETCH_MAX_BYTES = 4 << 20;
  static final int PRODUCE_TIMEOUT_MS = 10_000; // how long the leader may wait for the ISR
  static final long RETRY_PAUSE_MS = 100;

  /**
   * Reasons that guarantee nothing was appended: safe to retry after a metadata refresh.
   * NOT_ENOUGH_REPLICAS_AFTER_APPEND and REQUEST_TIMED_OUT are retriable too, but the batch
   * may be in the log already; retrying them may duplicate records, so they are reported.
   */
  static final Set<String> SAFE_TO_RETRY = Set.of(
      "NOT_LEADER", "LEADER_NOT_AVAILABLE", "NOT_LEADER_OR_FOLLOWER", "FENCED_LEADER_EPOCH",
      "UNKNOWN_LEADER_EPOCH", "NOT_ENOUGH_REPLICAS", "TOO_MANY_REQUESTS", "STORAGE_ERROR",
      "NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE", "REASSIGNMENT_IN_PROGRESS",
      "ELIGIBLE_LEADERS_NOT_AVAILABLE");

  /** A PartitionError from a response, as an exception. */
  static final class PartitionException extends Exception {
    final String reason;

    PartitionException(String what, PartitionError pe) {
      super(what + ": partition error reason=" + reasonName(pe) + " code=" + pe.getCode()
          + " message=\"" + pe.getMessage() + "\" metadata=" + new TreeMap<>(pe.getMetadataMap()));
      this.reason = reasonName(pe);
    }
  }

  /** The ErrorReason without its enum prefix, as ErrorInfo.reason spells it. */
  static String reasonName(PartitionError pe) {
    return pe.getReason().name().replaceFirst("^ERROR_REASON_", "");
  }

  /** The google.rpc.ErrorInfo of a failed call, or null. */
  static ErrorInfo errorInfo(Throwable error) {
    com.google.rpc.Status status = StatusProto.fromThrowable(error);
    if (status == null) {
      return null;
    }
    for (Any detail : status.getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        try {
          return detail.unpack(ErrorInfo.class);
        } catch (InvalidProtocolBufferException e) {
          return null;
        }
      }
    }
    return null;
  }

  /** A transport failure (UNAVAILABLE without details) or an ErrorInfo reason safe to retry. */
  static boolean retriable(StatusRuntimeException error) {
    ErrorInfo info = errorInfo(error);
    if (info == null) {
      return error.getStatus().getCode() == Status.Code.UNAVAILABLE;
    }
    return SAFE_TO_RETRY.contains(info.getReason());
  }

  static String describe(Throwable error) {
    if (!(error instanceof StatusRuntimeException)) {
      return String.valueOf(error.getMessage());
    }
    Status status = ((StatusRuntimeException) error).getStatus();
    StringBuilder out = new StringBuilder("grpc status: code=" + status.getCode()
        + " message=\"" + status.getDescription() + "\"");
    ErrorInfo info = errorInfo(error);
    if (info != null) {
      out.append("\nerror info: reason=").append(info.getReason()).append(" domain=")
          .append(info.getDomain()).append(" metadata=").append(new TreeMap<>(info.getMetadataMap()));
    }
    return out.toString();
  }

  record Leader(String address, int epoch) {}

  final String bootstrap;
  final String topic;
  final long deadlineNanos;
  final String clientId = "brook-example-java";
  private final Map<String, ManagedChannel> channels = new HashMap<>();
  private Map<Integer, Leader> leaders; // null: ask metadata
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

  void refresh() throws PartitionException {
    GetMetadataResponse response = MetadataServiceGrpc.newBlockingStub(channel(bootstrap))
        .withDeadlineAfter(callTimeoutMs(), TimeUnit.MILLISECONDS)
        .getMetadata(GetMetadataRequest.newBuilder().addTopics(topic).build());
    Map<Integer, String> addresses = new HashMap<>();
    for (Node node : response.getNodesList()) {
      addresses.put(node.getNodeId(), node.getAddress());
    }
    groupManager = response.getGroupManager().getAddress();
    for (TopicMetadata t : response.getTopicsList()) {
      if (!t.getName().equals(topic)) {
        continue;
      }
      if (t.hasError()) {
        throw new PartitionException("GetMetadata " + topic, t.getError());
      }
      Map<Integer, Leader> found = new HashMap<>();
      for (PartitionState state : t.getPartitionsList()) {
        String address = addresses.get(state.getLeaderId());
        if (address != null && state.getLeaderId() >= 0) {
          found.put(state.getPartition(), new Leader(address, state.getLeaderEpoch()));
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
      } catch (PartitionException | RuntimeException e) {
        last = e;
        forget();
      }
      if (!pause()) {
        throw new IllegalStateException("no leader for " + topic + "/" + partition + " before the deadline: "
            + describe(last), last);
      }
    }
  }

  /** One batch to the partition's leader with acks=all; safe errors retried after a refresh. */
  ProducePartitionResponse produce(int partition, RecordBatch batch) throws Exception {
    while (true) {
      Leader lead = leaderOf(partition);
      ProduceResponse response;
      try {
        response = StorageServiceGrpc.newBlockingStub(channel(lead.address()))
            .withDeadlineAfter(callTimeoutMs(), TimeUnit.MILLISECONDS)
            .produce(ProduceRequest.newBuilder()
                .setAcks(Acks.ACKS_ALL)
                .setTimeoutMs(PRODUCE_TIMEOUT_MS)
                .setClientId(clientId)
                .addPartitions(ProducePartition.newBuilder()
                    .setTopic(topic)
                    .setPartition(partition)
                    .setCurrentLeaderEpoch(lead.epoch())
                    .addBatches(batch))
                .build());
      } catch (StatusRuntimeException e) {
        if (retriable(e) && pause()) {
          forget();
          continue;
        }
        throw e;
      }
      ProducePartitionResponse answer = response.getPartitions(0);
      if (!answer.hasError()) {
        return answer;
      }
      if (SAFE_TO_RETRY.contains(reasonName(answer.getError())) && pause()) {
        forget();
        System.err.println("produce: retrying after " + reasonName(answer.getError()));
        continue;
      }
      throw new PartitionException("Produce " + topic + "/" + partition, answer.getError());
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
      Leader lead = leaderOf(partition);
      FetchResponse response;
      try {
        response = StorageServiceGrpc.newBlockingStub(channel(lead.address()))
            .withDeadlineAfter(callTimeoutMs(), TimeUnit.MILLISECONDS)
            .fetch(FetchRequest.newBuilder()
                .setMaxWaitMs(FETCH_MAX_WAIT_MS)
                .setMinBytes(1)
                .setMaxBytes(FETCH_MAX_BYTES)
                .addPartitions(FetchPartition.newBuilder()
                    .setTopic(topic)
                    .setPartition(partition)
                    .setFetchOffset(next)
                    .setCurrentLeaderEpoch(lead.epoch()))
                .build());
      } catch (StatusRuntimeException e) {
        if (retriable(e) && pause()) {
          forget();
          continue;
        }
        throw e;
      }
      FetchedPartition answer = response.getPartitions(0);
      if (answer.hasError()) {
        if (SAFE_TO_RETRY.contains(reasonName(answer.getError())) && pause()) {
          forget();
          continue;
        }
        throw new PartitionException("Fetch " + topic + "/" + partition + " at offset " + next, answer.getError());
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
