package main

// Consumer-group membership (KIP-848 style: the group manager assigns partitions and
// the member reports what it owns in every Heartbeat) and offset commits.

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	brookv1 "github.com/brook-log/brook/examples/go/gen/brook/v1"
)

// member is this client's place in a group.
type member struct {
	c        *client
	group    string
	id       string
	epoch    int32
	interval time.Duration
	owned    []int32 // partitions of c.topic this member consumes
}

// groupService is a GroupService client on the active group manager (from metadata).
func (m *member) groupService(ctx context.Context) (brookv1.GroupServiceClient, error) {
	for m.c.groupManager == "" {
		if err := m.c.refresh(ctx); err != nil {
			return nil, err
		}
		if m.c.groupManager == "" && !pause(ctx) {
			return nil, fmt.Errorf("metadata names no group manager before the deadline")
		}
	}
	conn, err := m.c.conn(m.c.groupManager)
	if err != nil {
		return nil, err
	}
	return brookv1.NewGroupServiceClient(conn), nil
}

func (m *member) ownedPartitions() []*brookv1.TopicPartitions {
	if len(m.owned) == 0 {
		return nil
	}
	return []*brookv1.TopicPartitions{{Topic: m.c.topic, Partitions: m.owned}}
}

// heartbeat sends one Heartbeat and takes the answer's assignment: this member owns
// nothing else, so it may take the whole assignment at once (revoking what is missing
// from it is a no-op here).
func (m *member) heartbeat(ctx context.Context, join bool) error {
	service, err := m.groupService(ctx)
	if err != nil {
		return err
	}
	request := &brookv1.HeartbeatRequest{
		GroupId:         m.group,
		MemberId:        m.id,
		MemberEpoch:     m.epoch,
		OwnedPartitions: m.ownedPartitions(),
	}
	if join { // sent once; later heartbeats keep them
		request.SubscribedTopicNames = []string{m.c.topic}
		request.ClientId = m.c.clientID
	}
	callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	response, err := service.Heartbeat(callCtx, request)
	if err != nil {
		err = fromCall("Heartbeat", err)
		if retriable(err) {
			m.c.groupManager = "" // a standby or a new manager: ask metadata again
		}
		return err
	}
	m.id = response.GetMemberId()
	m.epoch = response.GetMemberEpoch()
	m.interval = time.Duration(response.GetHeartbeatIntervalMs()) * time.Millisecond
	m.owned = nil
	for _, assigned := range response.GetAssignment() {
		if assigned.GetTopic() == m.c.topic {
			m.owned = append(m.owned, assigned.GetPartitions()...)
		}
	}
	sort.Slice(m.owned, func(i, j int) bool { return m.owned[i] < m.owned[j] })
	return nil
}

// join heartbeats (member_id empty, epoch 0, then what the answers say) until the group
// assigned this member at least one partition.
func (m *member) join(ctx context.Context) error {
	if err := m.heartbeat(ctx, true); err != nil {
		return err
	}
	fmt.Printf("member\t%s\t%d\n", m.id, m.epoch)
	for len(m.owned) == 0 {
		wait := min(max(m.interval, 50*time.Millisecond), time.Second)
		select {
		case <-ctx.Done():
			return fmt.Errorf("no partition assigned before the deadline (member %s epoch %d)", m.id, m.epoch)
		case <-time.After(wait):
		}
		if err := m.heartbeat(ctx, false); err != nil {
			if retriable(err) && pause(ctx) {
				continue
			}
			return err
		}
	}
	for _, partition := range m.owned {
		fmt.Printf("assigned\t%s\t%d\n", m.c.topic, partition)
	}
	return nil
}

// committed returns the group's committed offsets for the owned partitions (-1: none).
func (m *member) committed(ctx context.Context) (map[int32]int64, error) {
	service, err := m.groupService(ctx)
	if err != nil {
		return nil, err
	}
	callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	response, err := service.FetchOffsets(callCtx, &brookv1.FetchOffsetsRequest{
		GroupId: m.group, Partitions: m.ownedPartitions(),
	})
	if err != nil {
		return nil, fromCall("FetchOffsets", err)
	}
	out := map[int32]int64{}
	for _, offset := range response.GetOffsets() {
		if offset.GetTopic() == m.c.topic {
			out[offset.GetPartition()] = offset.GetOffset()
		}
	}
	return out, nil
}

// position is where a partition's consumption stands: the next offset, and the epoch of
// the leader that appended the last record read (nil: unknown; sent as unset, never 0).
type position struct {
	offset      int64
	leaderEpoch *int32
}

// commit stores next offsets, fenced by this member's id and epoch (member_epoch is
// optional in the proto: a member sets it, 0 being a real epoch).
func (m *member) commit(ctx context.Context, offsets map[int32]position) error {
	service, err := m.groupService(ctx)
	if err != nil {
		return err
	}
	request := &brookv1.CommitOffsetsRequest{GroupId: m.group, MemberId: m.id, MemberEpoch: proto.Int32(m.epoch)}
	for _, partition := range m.owned {
		if at, ok := offsets[partition]; ok {
			request.Offsets = append(request.Offsets, &brookv1.OffsetCommit{
				Topic: m.c.topic, Partition: partition, Offset: at.offset, LeaderEpoch: at.leaderEpoch,
			})
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	response, err := service.CommitOffsets(callCtx, request)
	if err != nil {
		return fromCall("CommitOffsets", err)
	}
	for _, result := range response.GetResults() {
		if failure := fromPartition(fmt.Sprintf("CommitOffsets %s/%d", result.GetTopic(), result.GetPartition()), result.GetError()); failure != nil {
			return failure
		}
		fmt.Printf("committed\t%s\t%d\t%d\n", result.GetTopic(), result.GetPartition(), offsets[result.GetPartition()].offset)
	}
	return nil
}

// leave sends the leaving heartbeat (member_epoch -1, with its current epoch).
func (m *member) leave(ctx context.Context) error {
	service, err := m.groupService(ctx)
	if err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	if _, err := service.Heartbeat(callCtx, &brookv1.HeartbeatRequest{
		GroupId: m.group, MemberId: m.id, MemberEpoch: -1,
		// The member's own epoch proves the leave comes from it (groups.proto).
		CurrentMemberEpoch: proto.Int32(m.epoch),
	}); err != nil {
		return fromCall("Heartbeat (leave)", err)
	}
	fmt.Println("left")
	return nil
}

// reader reads up to count records of a partition from an offset (c.fetch: the batch API;
// c.readRecords: the record API); with toEnd it stops at the high watermark.
type reader func(ctx context.Context, partition int32, from int64, count int, toEnd bool) ([]record, error)

// runGroup joins, reads up to count records of each assigned partition from the
// committed offset (the log start when none) up to its high watermark, commits the next
// offsets and leaves.
func runGroup(ctx context.Context, c *client, read reader, group string, count int) error {
	m := &member{c: c, group: group}
	if err := m.join(ctx); err != nil {
		return err
	}
	committed, err := m.committed(ctx)
	if err != nil {
		return err
	}
	next := map[int32]position{}
	for _, partition := range m.owned {
		from := committed[partition]
		if from < 0 {
			from = 0 // auto offset reset: earliest (a trimmed log answers OFFSET_OUT_OF_RANGE)
		}
		records, err := read(ctx, partition, from, count, true)
		if err != nil {
			return err
		}
		for _, r := range records {
			fmt.Println(formatRecordLine(r))
		}
		if len(records) > 0 {
			last := records[len(records)-1]
			next[partition] = position{offset: last.offset + 1, leaderEpoch: last.leaderEpoch}
		}
	}
	if len(next) > 0 {
		if err := m.commit(ctx, next); err != nil {
			return err
		}
	}
	if err := m.leave(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "group: %s\n", describe(err))
	}
	return nil
}
