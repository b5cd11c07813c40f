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
  private final BrookClient client;
  private final String group;
  private String memberId = "";
  private int epoch = 0;
  private long intervalMs = 0;
  private List<Integer> owned = new ArrayList<>();

  GroupMember(BrookClient client, String group) {
    this.client = client;
    this.group = group;
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
    HeartbeatResponse response = service().heartbeat(request.build());
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
      } catch (StatusRuntimeException e) {
        if (!BrookClient.retriable(e)) {
          throw e;
        }
        client.groupManager = "";
      }
    }
    for (int p : owned) {
      System.out.println("assigned\t" + client.topic + "\t" + p);
    }
  }

  /** Joins, reads each assigned partition from its committed offset, commits, leaves. */
  void run(int count) throws Exception {
    join();
    Map<Integer, Long> committed = new HashMap<>();
    for (CommittedOffset offset : service().fetchOffsets(FetchOffsetsRequest.newBuilder()
        .setGroupId(group).addAllPartitions(ownedPartitions()).build()).getOffsetsList()) {
      if (offset.getTopic().equals(client.topic)) {
        committed.put(offset.getPartition(), offset.getOffset());
      }
    }
    Map<Integer, Long> next = new LinkedHashMap<>();
    for (int partition : owned) {
      long from = committed.getOrDefault(partition, -1L);
      if (from < 0) {
        from = 0; // auto offset reset: earliest
      }
      List<Lines.Rec> records = client.fetch(partition, from, count, true);
      for (Lines.Rec r : records) {
        System.out.println(Lines.format(r));
      }
      if (!records.isEmpty()) {
        next.put(partition, records.get(records.size() - 1).offset() + 1);
      }
    }
    if (!next.isEmpty()) {
      CommitOffsetsRequest.Builder request = CommitOffsetsRequest.newBuilder()
          .setGroupId(group).setMemberId(memberId).setMemberEpoch(epoch);
      next.forEach((partition, offset) -> request.addOffsets(OffsetCommit.newBuilder()
          .setTopic(client.topic).setPartition(partition).setOffset(offset).setLeaderEpoch(-1)));
      CommitOffsetsResponse response = service().commitOffsets(request.build());
      for (CommitOffsetResult result : response.getResultsList()) {
        if (result.hasError()) {
          throw new BrookClient.PartitionException(
              "CommitOffsets " + result.getTopic() + "/" + result.getPartition(), result.getError());
        }
        System.out.println("committed\t" + result.getTopic() + "\t" + result.getPartition() + "\t"
            + next.get(result.getPartition()));
      }
    }
    try {
      service().heartbeat(HeartbeatRequest.newBuilder()
          .setGroupId(group).setMemberId(memberId).setMemberEpoch(-1).build());
      System.out.println("left");
    } catch (StatusRuntimeException e) {
      System.err.println("group: leave: " + BrookClient.describe(e));
    }
  }
}
