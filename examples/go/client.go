package main

// The batch API client: metadata (leaders, group manager), Produce, Fetch, and how
// errors are read and retried.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	brookv1 "github.com/brook-log/brook/examples/go/gen/brook/v1"
)

const (
	// Bound on each unary call (a fetch long-poll is much shorter: fetchMaxWaitMs).
	rpcTimeout = 10 * time.Second
	// How long the server may hold a Fetch waiting for data.
	fetchMaxWaitMs = 500
	// Bound on one Fetch response; one batch is always returned even if larger.
	fetchMaxBytes = 4 << 20
	// How long the leader may wait for the in-sync replicas (acks=all).
	produceTimeoutMs = 10000
	// Pause before retrying a retriable error (metadata not propagated yet, new leader).
	retryPause = 100 * time.Millisecond
)

// Reasons that guarantee nothing was appended, so a produce may be retried without
// duplicating records (after a metadata refresh). NOT_ENOUGH_REPLICAS_AFTER_APPEND and
// REQUEST_TIMED_OUT are retriable too, but the batch may already be in the log: retrying
// them can duplicate records, so this client reports them instead.
var safeToRetry = map[brookv1.ErrorReason]bool{
	brookv1.ErrorReason_ERROR_REASON_NOT_LEADER:                     true,
	brookv1.ErrorReason_ERROR_REASON_LEADER_NOT_AVAILABLE:           true,
	brookv1.ErrorReason_ERROR_REASON_NOT_LEADER_OR_FOLLOWER:         true,
	brookv1.ErrorReason_ERROR_REASON_FENCED_LEADER_EPOCH:            true,
	brookv1.ErrorReason_ERROR_REASON_UNKNOWN_LEADER_EPOCH:           true,
	brookv1.ErrorReason_ERROR_REASON_NOT_ENOUGH_REPLICAS:            true,
	brookv1.ErrorReason_ERROR_REASON_TOO_MANY_REQUESTS:              true,
	brookv1.ErrorReason_ERROR_REASON_STORAGE_ERROR:                  true,
	brookv1.ErrorReason_ERROR_REASON_NOT_COORDINATOR:                true,
	brookv1.ErrorReason_ERROR_REASON_COORDINATOR_NOT_AVAILABLE:      true,
	brookv1.ErrorReason_ERROR_REASON_REASSIGNMENT_IN_PROGRESS:       true,
	brookv1.ErrorReason_ERROR_REASON_ELIGIBLE_LEADERS_NOT_AVAILABLE: true,
}

// partitionError is a PartitionError from a response, as a Go error.
type partitionError struct {
	what string
	pe   *brookv1.PartitionError
}

func (e *partitionError) Error() string {
	return fmt.Sprintf("%s: partition error reason=%s code=%d message=%q metadata=%s",
		e.what, reasonName(e.pe.GetReason()), e.pe.GetCode(), e.pe.GetMessage(),
		formatMetadata(e.pe.GetMetadata()))
}

// reasonName is the ErrorReason without its enum prefix, as ErrorInfo.reason spells it.
func reasonName(reason brookv1.ErrorReason) string {
	return strings.TrimPrefix(reason.String(), "ERROR_REASON_")
}

func formatMetadata(metadata map[string]string) string {
	keys := make([]string, 0, len(metadata))
	for key := range metadata {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, key := range keys {
		parts = append(parts, key+"="+metadata[key])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// errorInfo is the google.rpc.ErrorInfo of a failed call, or nil.
func errorInfo(err error) (*status.Status, *errdetails.ErrorInfo) {
	var withStatus interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &withStatus) {
		return nil, nil
	}
	st := withStatus.GRPCStatus()
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			return st, info
		}
	}
	return st, nil
}

// retriableCall says whether a failed call may be retried: a transport failure
// (UNAVAILABLE without details: the node is down or restarting) or an ErrorInfo whose
// reason is safe to retry.
func retriableCall(err error) bool {
	st, info := errorInfo(err)
	if st == nil {
		return false
	}
	if info == nil {
		return st.Code() == codes.Unavailable
	}
	reason := brookv1.ErrorReason(brookv1.ErrorReason_value["ERROR_REASON_"+info.GetReason()])
	return safeToRetry[reason]
}

// describe renders an error for stderr: the gRPC status with its ErrorInfo details, or
// the per-partition error, or the error text.
func describe(err error) string {
	var pErr *partitionError
	if errors.As(err, &pErr) {
		return err.Error()
	}
	st, info := errorInfo(err)
	if st == nil {
		return err.Error()
	}
	lines := []string{err.Error(), fmt.Sprintf("grpc status: code=%s message=%q", st.Code(), st.Message())}
	if info != nil {
		lines = append(lines, fmt.Sprintf("error info: reason=%s domain=%s metadata=%s",
			info.GetReason(), info.GetDomain(), formatMetadata(info.GetMetadata())))
	}
	return strings.Join(lines, "\n")
}

// leader is where a partition is led, as metadata said.
type leader struct {
	address string
	epoch   int32
}

// client holds one connection per address and the last metadata for one topic.
type client struct {
	bootstrap    string
	topic        string
	clientID     string
	conns        map[string]*grpc.ClientConn
	leaders      map[int32]leader // nil: ask metadata
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
		return fmt.Errorf("GetMetadata: %w", err)
	}
	addresses := map[int32]string{}
	for _, node := range response.GetNodes() {
		addresses[node.GetNodeId()] = node.GetAddress()
	}
	c.groupManager = response.GetGroupManager().GetAddress()
	for _, topic := range response.GetTopics() {
		if topic.GetName() != c.topic {
			continue
		}
		if topic.GetError() != nil {
			return &partitionError{what: "GetMetadata " + c.topic, pe: topic.GetError()}
		}
		leaders := map[int32]leader{}
		for _, state := range topic.GetPartitions() {
			if address, live := addresses[state.GetLeaderId()]; live && state.GetLeaderId() >= 0 {
				leaders[state.GetPartition()] = leader{address: address, epoch: state.GetLeaderEpoch()}
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
// ctx ends; other partition errors come back as *partitionError.
func (c *client) produce(ctx context.Context, partition int32, batch *brookv1.RecordBatch) (*brookv1.ProducePartitionResponse, error) {
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
				CurrentLeaderEpoch: lead.epoch,
				Batches:            []*brookv1.RecordBatch{batch},
			}},
		})
		cancel()
		if err != nil {
			if retriableCall(err) && pause(ctx) {
				c.forget()
				fmt.Fprintf(os.Stderr, "produce: retrying after %v\n", err)
				continue
			}
			return nil, fmt.Errorf("Produce to %s: %w", lead.address, err)
		}
		if len(response.GetPartitions()) != 1 {
			return nil, fmt.Errorf("Produce: %d partition answers for 1 partition", len(response.GetPartitions()))
		}
		answer := response.GetPartitions()[0]
		pe := answer.GetError()
		if pe == nil {
			return answer, nil
		}
		if safeToRetry[pe.GetReason()] && pause(ctx) {
			c.forget()
			fmt.Fprintf(os.Stderr, "produce: retrying after %s\n", reasonName(pe.GetReason()))
			continue
		}
		return answer, &partitionError{what: fmt.Sprintf("Produce %s/%d", c.topic, partition), pe: pe}
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
			Partitions: []*brookv1.FetchPartition{{
				Topic:              c.topic,
				Partition:          partition,
				FetchOffset:        next,
				CurrentLeaderEpoch: lead.epoch,
			}},
		})
		cancel()
		if err != nil {
			if retriableCall(err) && pause(ctx) {
				c.forget()
				continue
			}
			return out, fmt.Errorf("Fetch from %s at offset %d: %w", lead.address, next, err)
		}
		if len(response.GetPartitions()) != 1 {
			return out, fmt.Errorf("Fetch: %d partition answers for 1 partition", len(response.GetPartitions()))
		}
		answer := response.GetPartitions()[0]
		if pe := answer.GetError(); pe != nil {
			if safeToRetry[pe.GetReason()] && pause(ctx) {
				c.forget()
				fmt.Fprintf(os.Stderr, "fetch: retrying after %s\n", reasonName(pe.GetReason()))
				continue
			}
			return out, &partitionError{what: fmt.Sprintf("Fetch %s/%d at offset %d", c.topic, partition, next), pe: pe}
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
