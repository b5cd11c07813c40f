package main

// The batch API client: metadata (leaders, epochs, nodes, group manager), Produce and
// Fetch on the partition's leader, retries.

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	brookv1 "github.com/brook-log/brook/examples/go/gen/brook/v1"
)

const (
	// Bound on each unary call (a fetch long-poll is much shorter: fetchMaxWaitMs).
	rpcTimeout = 10 * time.Second
	// How long the server may hold a Fetch (or ReadRecords) waiting for data.
	fetchMaxWaitMs = 500
	// Bound on one Fetch response's batches. The channel keeps gRPC's stock 4 MiB receive
	// limit and FetchRequest.receive_limit_bytes is left unset (4 MiB): the server never
	// sends more, splitting a stored batch too large for it into smaller batches.
	fetchMaxBytes = 4 << 20
	// How long the leader may wait for the in-sync replicas (acks=all).
	produceTimeoutMs = 10000
	// Pause before retrying a retriable error (metadata not propagated yet, new leader).
	retryPause = 100 * time.Millisecond
)

// leader is where a partition is led, as metadata said. epoch is nil when metadata did
// not say: current_leader_epoch is then left unset (no check), never sent as 0, which is
// a real epoch.
type leader struct {
	address string
	epoch   *int32
}

// client holds one connection per address and the last metadata for one topic. Every
// connection keeps gRPC's stock limits (4 MiB received).
type client struct {
	bootstrap    string
	topic        string
	clientID     string
	conns        map[string]*grpc.ClientConn
	leaders      map[int32]leader // nil: ask metadata
	nodes        []string         // live storage nodes, by node id (RecordService)
	groupManager string
	partitions   int
}

func newClient(bootstrap, topic string) *client {
	return &client{bootstrap: bootstrap, topic: topic, clientID: "brook-example-go",
		conns: map[string]*grpc.ClientConn{}}
}

func (c *client) conn(address string) (*grpc.ClientConn, error) {
	if conn, ok := c.conns[address]; ok {
		return conn, nil
	}
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", address, err)
	}
	c.conns[address] = conn
	return conn, nil
}

func (c *client) close() {
	for _, conn := range c.conns {
		_ = conn.Close()
	}
}

// pause waits retryPause; false when ctx ended first.
func pause(ctx context.Context) bool {
	timer := time.NewTimer(retryPause)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// forget makes the next leaderOf ask metadata again.
func (c *client) forget() { c.leaders = nil }

// leaderOf returns a partition's leader from cached metadata, refreshing it (until the
// partition has a live leader, or ctx ends) when there is none.
func (c *client) leaderOf(ctx context.Context, partition int32) (leader, error) {
	var last error
	for {
		if c.leaders == nil {
			last = c.refresh(ctx)
		}
		if last == nil {
			if found, ok := c.leaders[partition]; ok {
				return found, nil
			}
			last = fmt.Errorf("partition %d of %s has no live leader in metadata", partition, c.topic)
			c.forget()
		}
		if !pause(ctx) {
			return leader{}, fmt.Errorf("no leader for %s/%d before the deadline: %w", c.topic, partition, last)
		}
	}
}

// refresh asks the bootstrap (a coordinator) for the topic's metadata.
func (c *client) refresh(ctx context.Context) error {
	conn, err := c.conn(c.bootstrap)
	if err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	response, err := brookv1.NewMetadataServiceClient(conn).GetMetadata(callCtx,
		&brookv1.GetMetadataRequest{Topics: []string{c.topic}})
	if err != nil {
		return fromCall("GetMetadata", err)
	}
	addresses := map[int32]string{}
	ids := []int32{}
	for _, node := range response.GetNodes() {
		addresses[node.GetNodeId()] = node.GetAddress()
		ids = append(ids, node.GetNodeId())
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	c.nodes = c.nodes[:0]
	for _, id := range ids {
		c.nodes = append(c.nodes, addresses[id])
	}
	c.groupManager = response.GetGroupManager().GetAddress()
	for _, topic := range response.GetTopics() {
		if topic.GetName() != c.topic {
			continue
		}
		if topic.GetError() != nil {
			return fromPartition("GetMetadata "+c.topic, topic.GetError())
		}
		leaders := map[int32]leader{}
		for _, state := range topic.GetPartitions() {
			if address, live := addresses[state.GetLeaderId()]; live && state.LeaderId != nil && state.GetLeaderId() >= 0 {
				leaders[state.GetPartition()] = leader{address: address, epoch: state.LeaderEpoch}
			}
		}
		c.leaders = leaders
		c.partitions = len(topic.GetPartitions())
		return nil
	}
	return fmt.Errorf("metadata does not list topic %s", c.topic)
}

// produce sends one batch to a partition's leader with acks=all and returns the answer.
// Errors that guarantee nothing was appended are retried after a metadata refresh until
// ctx ends (FENCED_LEADER_EPOCH included: the refresh brings the new epoch); others come
// back as *brookError. A failed call whose status details hold the ProduceResponse
// (every partition failed) is read like that response.
func (c *client) produce(ctx context.Context, partition int32, batch *brookv1.RecordBatch) (*brookv1.ProducePartitionResponse, error) {
	what := fmt.Sprintf("Produce %s/%d", c.topic, partition)
	for {
		lead, err := c.leaderOf(ctx, partition)
		if err != nil {
			return nil, err
		}
		conn, err := c.conn(lead.address)
		if err != nil {
			return nil, err
		}
		callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
		response, err := brookv1.NewStorageServiceClient(conn).Produce(callCtx, &brookv1.ProduceRequest{
			Acks:      brookv1.Acks_ACKS_ALL,
			TimeoutMs: produceTimeoutMs,
			ClientId:  c.clientID,
			Partitions: []*brookv1.ProducePartition{{
				Topic:              c.topic,
				Partition:          partition,
				CurrentLeaderEpoch: lead.epoch, // nil: unset, no check
				Batches:            []*brookv1.RecordBatch{batch},
			}},
		})
		cancel()
		if err != nil {
			err = fromCall(what+" on "+lead.address, err)
			carriedResponse, ok := carried[*brookv1.ProduceResponse](err)
			if !ok {
				if retriable(err) && pause(ctx) {
					c.forget()
					fmt.Fprintf(os.Stderr, "produce: retrying after %s\n", describe(err))
					continue
				}
				return nil, err
			}
			response = carriedResponse
		}
		if len(response.GetPartitions()) != 1 {
			return nil, fmt.Errorf("%s: %d partition answers for 1 partition", what, len(response.GetPartitions()))
		}
		answer := response.GetPartitions()[0]
		failure := fromPartition(what, answer.GetError())
		if failure == nil {
			return answer, nil
		}
		if failure.retriable() && pause(ctx) {
			c.forget()
			fmt.Fprintf(os.Stderr, "produce: retrying after %s\n", failure.reason())
			continue
		}
		return answer, failure
	}
}

// fetch reads up to count records of a partition from offset `from` with long-polling
// Fetch calls, until it has them all or ctx ends (then it returns what it has and the
// reason); with toEnd it also stops at the high watermark. Records come at consecutive
// offsets.
func (c *client) fetch(ctx context.Context, partition int32, from int64, count int, toEnd bool) ([]record, error) {
	out := make([]record, 0, count)
	next := from
	for len(out) < count {
		what := fmt.Sprintf("Fetch %s/%d at offset %d", c.topic, partition, next)
		lead, err := c.leaderOf(ctx, partition)
		if err != nil {
			return out, err
		}
		conn, err := c.conn(lead.address)
		if err != nil {
			return out, err
		}
		callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
		response, err := brookv1.NewStorageServiceClient(conn).Fetch(callCtx, &brookv1.FetchRequest{
			MaxWaitMs: fetchMaxWaitMs,
			MinBytes:  1,
			MaxBytes:  fetchMaxBytes,
			// receive_limit_bytes unset: 4 MiB, this channel's stock receive limit.
			Partitions: []*brookv1.FetchPartition{{
				Topic:              c.topic,
				Partition:          partition,
				FetchOffset:        next,
				CurrentLeaderEpoch: lead.epoch,
			}},
		})
		cancel()
		if err != nil {
			err = fromCall(what+" on "+lead.address, err)
			carriedResponse, ok := carried[*brookv1.FetchResponse](err)
			if !ok {
				if retriable(err) && pause(ctx) {
					c.forget()
					continue
				}
				return out, err
			}
			response = carriedResponse
		}
		if len(response.GetPartitions()) != 1 {
			return out, fmt.Errorf("%s: %d partition answers for 1 partition", what, len(response.GetPartitions()))
		}
		answer := response.GetPartitions()[0]
		if failure := fromPartition(what, answer.GetError()); failure != nil {
			if failure.retriable() && pause(ctx) {
				c.forget()
				fmt.Fprintf(os.Stderr, "fetch: retrying after %s\n", failure.reason())
				continue
			}
			return out, failure
		}
		for _, batch := range answer.GetBatches() {
			records, err := decodeBatch(partition, batch)
			if err != nil {
				return out, err
			}
			for _, r := range records {
				if r.offset < next {
					continue // earlier records of the batch that holds the fetch offset
				}
				if r.offset != next {
					return out, fmt.Errorf("Fetch: offset %d follows %d", r.offset, next-1)
				}
				if len(out) < count {
					out = append(out, r)
				}
				next++
			}
		}
		if toEnd && next >= answer.GetHighWatermark() {
			break
		}
		if ctx.Err() != nil && len(out) < count {
			return out, fmt.Errorf("Fetch: %d of %d records before the deadline: %w", len(out), count, ctx.Err())
		}
	}
	return out, nil
}
