package dev.brook.example;

import dev.brook.v1.CommitOffsetResult;
import dev.brook.v1.CommitOffsetsRequest;
import dev.brook.v1.CommitOffsetsResponse;
import dev.brook.v1.CommittedOffset;
import dev.brook.v1.FetchOffsetsRequest;
import dev.brook.v1.GroupServiceGrpc;
import dev.brook.v1.HeartbeatRequest;
import dev.brook.v1.HeartbeatResponse;
import dev.brook.v1.OffsetCommit;
import dev.brook.v1.TopicPartitions;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Consumer-group membership, KIP-848 style: the group manager assigns partitions and the
 * member reports what it owns in every Heartbeat; commits are fenced by member id + epoch.
 */
final class GroupMember {
  /** Reads up to count records of a partition from an offset, to the high watermark (toEnd). */
  @FunctionalInterface
  interface Reader {
    List<Lines.Rec> read(int partition, long from, int count, boolean toEnd) throws Exception;
  }

  private final BrookClient client;
  private final String group;
  private final Reader reader;
  private String memberId = "";
  private int epoch = 0;
  private long intervalMs = 0;
  private List<Integer> owned = new ArrayList<>();

  GroupMember(BrookClient client, String group, Reader reader) {
    this.client = client;
    this.group = group;
    this.reader = reader;
  }

  private GroupServiceGrpc.GroupServiceBlockingStub service() throws Exception {
    while (client.groupManager.isEmpty()) {
      client.refresh();
      if (client.groupManager.isEmpty() && !client.pause()) {
        throw new IllegalStateException("metadata names no group manager before the deadline");
      }
    }
    return GroupServiceGrpc.newBlockingStub(client.channel(client.groupManager))
        .withDeadlineAfter(client.callTimeoutMs(), TimeUnit.MILLISECONDS);
  }

  private List<TopicPartitions> ownedPartitions() {
    if (owned.isEmpty()) {
      return List.of();
    }
    return List.of(TopicPartitions.newBuilder().setTopic(client.topic).addAllPartitions(owned).build());
  }

  /** One Heartbeat; this member owns nothing else, so it takes the whole assignment. */
  private void heartbeat(boolean join) throws Exception {
    HeartbeatRequest.Builder request = HeartbeatRequest.newBuilder()
        .setGroupId(group)
        .setMemberId(memberId)
        .setMemberEpoch(epoch)
        .addAllOwnedPartitions(ownedPartitions());
    if (join) { // sent once; later heartbeats keep them
      request.addSubscribedTopicNames(client.topic).setClientId(client.clientId);
    }
    HeartbeatResponse response;
    try {
      response = service().heartbeat(request.build());
    } catch (StatusRuntimeException e) {
      throw BrookException.fromCall("Heartbeat", e);
    }
    memberId = response.getMemberId();
    epoch = response.getMemberEpoch();
    intervalMs = response.getHeartbeatIntervalMs();
    List<Integer> assigned = new ArrayList<>();
    for (TopicPartitions tp : response.getAssignmentList()) {
      if (tp.getTopic().equals(client.topic)) {
        assigned.addAll(tp.getPartitionsList());
      }
    }
    assigned.sort(null);
    owned = assigned;
  }

  void join() throws Exception {
    heartbeat(true);
    System.out.println("member\t" + memberId + "\t" + epoch);
    while (owned.isEmpty()) {
      if (System.nanoTime() >= client.deadlineNanos) {
        throw new IllegalStateException("no partition assigned before the deadline (member " + memberId
            + " epoch " + epoch + ")");
      }
      Thread.sleep(Math.min(Math.max(intervalMs, 50), 1000));
      try {
        heartbeat(false);
      } catch (BrookException e) {
        if (!e.retriable()) {
          throw e;
        }
        client.groupManager = ""; // a standby or a new manager: ask metadata again
      }
    }
    for (int p : owned) {
      System.out.println("assigned\t" + client.topic + "\t" + p);
    }
  }

  /**
   * Joins, reads each assigned partition from its committed offset with the chosen API,
   * commits (member id + epoch, and the leader epoch of the last record read), leaves.
   */
  void run(int count) throws Exception {
    join();
    Map<Integer, Long> committed = new HashMap<>();
    List<CommittedOffset> offsets;
    try {
      offsets = service().fetchOffsets(FetchOffsetsRequest.newBuilder()
          .setGroupId(group).addAllPartitions(ownedPartitions()).build()).getOffsetsList();
    } catch (StatusRuntimeException e) {
      throw BrookException.fromCall("FetchOffsets", e);
    }
    for (CommittedOffset offset : offsets) {
      if (offset.getTopic().equals(client.topic) && offset.hasOffset()) {
        committed.put(offset.getPartition(), offset.getOffset());
      }
    }
    Map<Integer, Lines.Rec> last = new LinkedHashMap<>();
    for (int partition : owned) {
      long from = committed.getOrDefault(partition, -1L);
      if (from < 0) {
        from = 0; // auto offset reset: earliest
      }
      List<Lines.Rec> records = reader.read(partition, from, count, true);
      for (Lines.Rec r : records) {
        System.out.println(Lines.format(r));
      }
      if (!records.isEmpty()) {
        last.put(partition, records.get(records.size() - 1));
      }
    }
    if (!last.isEmpty()) {
      // member_epoch is optional in the proto: a member sets it (0 is a real epoch).
      CommitOffsetsRequest.Builder request = CommitOffsetsRequest.newBuilder()
          .setGroupId(group).setMemberId(memberId).setMemberEpoch(epoch);
      last.forEach((partition, r) -> {
        OffsetCommit.Builder commit = OffsetCommit.newBuilder()
            .setTopic(client.topic).setPartition(partition).setOffset(r.offset() + 1);
        if (r.leaderEpoch() != null) { // else unset: unknown
          commit.setLeaderEpoch(r.leaderEpoch());
        }
        request.addOffsets(commit);
      });
      CommitOffsetsResponse response;
      try {
        response = service().commitOffsets(request.build());
      } catch (StatusRuntimeException e) {
        throw BrookException.fromCall("CommitOffsets", e);
      }
      for (CommitOffsetResult result : response.getResultsList()) {
        if (result.hasError()) {
          throw BrookException.fromPartition(
              "CommitOffsets " + result.getTopic() + "/" + result.getPartition(), result.getError());
        }
        System.out.println("committed\t" + result.getTopic() + "\t" + result.getPartition() + "\t"
            + (last.get(result.getPartition()).offset() + 1));
      }
    }
    try {
      service().heartbeat(HeartbeatRequest.newBuilder()
          .setGroupId(group).setMemberId(memberId).setMemberEpoch(-1)
          .setCurrentMemberEpoch(epoch).build());
      System.out.println("left");
    } catch (StatusRuntimeException e) {
      System.err.println("group: " + BrookException.fromCall("Heartbeat (leave)", e).getMessage());
    }
  }
}
