// Command interop is a Brook client written only against code generated from
// protos/brook/v1 (protoc-gen-go and protoc-gen-go-grpc), with no Brook library.
// It proves the contract in README.md "Using Brook from any language":
//
//  1. find partition 0's leader with MetadataService.GetMetadata on the bootstrap;
//  2. build a brook.v1.Records of -count records, serialize it, put the bytes in a
//     RecordBatch with their CRC-32C and send it with StorageService.Produce (acks=all);
//  3. read the records back with StorageService.Fetch (long poll), checking each
//     batch's CRC-32C and decoding its records bytes as brook.v1.Records;
//  4. send a batch with a wrong CRC-32C and expect the per-partition error
//     CORRUPT_BATCH (nothing appended).
//
// With -read-only it only does step 3, from -from, for -count records (to read what
// another client produced).
//
// Output on stdout, one fact a line:
//
//	produced N records at base offset B
//	OFFSET KEY VALUE                      (one line per record read, in offset order)
//	corrupt batch refused: CORRUPT_BATCH
//
// Any failure prints the gRPC status (code, message, google.rpc.ErrorInfo reason and
// metadata) or the per-partition error to stderr and exits 1; bad flags exit 2.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	brookv1 "github.com/brook-log/brook/tests/interop/go/gen/brook/v1"
)

const (
	// The partition this client writes and reads; the test topic has one.
	partitionIndex = 0
	// Bound on each unary call (a fetch long-poll is much shorter: fetchMaxWait).
	rpcTimeout = 10 * time.Second
	// How long the server may hold a Fetch waiting for data.
	fetchMaxWaitMs = 1000
	// Bound on one Fetch response; one batch is always returned even if larger.
	fetchMaxBytes = 4 << 20
	// How long the leader may wait for the in-sync replicas (acks=all).
	produceTimeoutMs = 10000
	// Pause before retrying a retriable error (metadata not propagated yet, new leader).
	retryPause = 100 * time.Millisecond
	// Bound on the decompressed size we accept when a batch misreports it.
	maxUncompressedBytes = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Per-partition reasons that guarantee nothing was appended, so a produce may be
// retried without duplicating records; metadata is refreshed before the retry.
var retriableReasons = map[brookv1.ErrorReason]bool{
	brookv1.ErrorReason_ERROR_REASON_NOT_LEADER:             true,
	brookv1.ErrorReason_ERROR_REASON_LEADER_NOT_AVAILABLE:   true,
	brookv1.ErrorReason_ERROR_REASON_NOT_LEADER_OR_FOLLOWER: true,
	brookv1.ErrorReason_ERROR_REASON_FENCED_LEADER_EPOCH:    true,
	brookv1.ErrorReason_ERROR_REASON_UNKNOWN_LEADER_EPOCH:   true,
	brookv1.ErrorReason_ERROR_REASON_NOT_ENOUGH_REPLICAS:    true,
	brookv1.ErrorReason_ERROR_REASON_TOO_MANY_REQUESTS:      true,
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

// describe renders an error for stderr: the gRPC status with its ErrorInfo details, or
// the per-partition error, or the error text.
func describe(err error) string {
	var pErr *partitionError
	if errors.As(err, &pErr) {
		return err.Error()
	}
	// The innermost status, not status.FromError's, whose message is the whole wrapped text.
	var withStatus interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &withStatus) {
		return err.Error()
	}
	st := withStatus.GRPCStatus()
	lines := []string{err.Error(), fmt.Sprintf("grpc status: code=%s message=%q", st.Code(), st.Message())}
	for _, detail := range st.Details() {
		if info, isInfo := detail.(*errdetails.ErrorInfo); isInfo {
			lines = append(lines, fmt.Sprintf("error info: reason=%s domain=%s metadata=%s",
				info.GetReason(), info.GetDomain(), formatMetadata(info.GetMetadata())))
		}
	}
	return strings.Join(lines, "\n")
}

// record is one record as this client sent or read it.
type record struct {
	offset      int64
	timestampMs int64
	key         []byte
	value       []byte
}

// client holds one connection per address, the cluster's bootstrap and the last leader
// metadata named for partition 0.
type client struct {
	bootstrap string
	topic     string
	conns     map[string]*grpc.ClientConn
	known     *leader
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

// leader is where partition 0 is led, as metadata said.
type leader struct {
	address string
	epoch   int32
}

// findLeader returns partition 0's leader: the one metadata last named, or, when there
// is none (first call, or forget after a NOT_LEADER-like error), a fresh answer.
func (c *client) findLeader(ctx context.Context) (leader, error) {
	if c.known != nil {
		return *c.known, nil
	}
	found, err := c.refreshLeader(ctx)
	if err != nil {
		return leader{}, err
	}
	c.known = &found
	return found, nil
}

// forgetLeader makes the next findLeader ask metadata again.
func (c *client) forgetLeader() { c.known = nil }

// refreshLeader asks the bootstrap for the topic's metadata until partition 0 has a live
// leader (a new topic's leader reaches the metadata cache through an etcd watch) or ctx
// ends; then it returns the last reason it had to wait.
func (c *client) refreshLeader(ctx context.Context) (leader, error) {
	conn, err := c.conn(c.bootstrap)
	if err != nil {
		return leader{}, err
	}
	metadata := brookv1.NewMetadataServiceClient(conn)
	var last error
	for {
		found, err := c.lookupLeader(ctx, metadata)
		if err == nil {
			return found, nil
		}
		last = err
		if !pause(ctx) {
			return leader{}, fmt.Errorf("no leader for %s/%d before the deadline: %w",
				c.topic, partitionIndex, last)
		}
	}
}

func (c *client) lookupLeader(ctx context.Context, metadata brookv1.MetadataServiceClient) (leader, error) {
	callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	response, err := metadata.GetMetadata(callCtx, &brookv1.GetMetadataRequest{Topics: []string{c.topic}})
	if err != nil {
		return leader{}, fmt.Errorf("GetMetadata: %w", err)
	}
	for _, topic := range response.GetTopics() {
		if topic.GetName() != c.topic {
			continue
		}
		if topic.GetError() != nil {
			return leader{}, &partitionError{what: "GetMetadata " + c.topic, pe: topic.GetError()}
		}
		for _, state := range topic.GetPartitions() {
			if state.GetPartition() != partitionIndex {
				continue
			}
			for _, node := range response.GetNodes() {
				if node.GetNodeId() == state.GetLeaderId() {
					return leader{address: node.GetAddress(), epoch: state.GetLeaderEpoch()}, nil
				}
			}
			return leader{}, fmt.Errorf("partition %d: leader %d is not a live node",
				partitionIndex, state.GetLeaderId())
		}
		return leader{}, fmt.Errorf("topic %s has no partition %d", c.topic, partitionIndex)
	}
	return leader{}, fmt.Errorf("metadata does not list topic %s", c.topic)
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

// newBatch serializes records as brook.v1.Records into an uncompressed RecordBatch
// with every producer-set field filled, as docs/design.md "Batches" says.
func newBatch(records []record) (*brookv1.RecordBatch, error) {
	message := &brookv1.Records{}
	for i, r := range records {
		message.Records = append(message.Records, &brookv1.Record{
			OffsetDelta: uint32(i),
			TimestampMs: r.timestampMs,
			Key:         r.key,
			Value:       r.value,
			HasKey:      true,
		})
	}
	payload, err := proto.Marshal(message)
	if err != nil {
		return nil, fmt.Errorf("serialize records: %w", err)
	}
	first, last := records[0].timestampMs, records[0].timestampMs
	for _, r := range records {
		first, last = min(first, r.timestampMs), max(last, r.timestampMs)
	}
	return &brookv1.RecordBatch{
		RecordCount:       int32(len(records)),
		FirstTimestampMs:  first,
		MaxTimestampMs:    last,
		Compression:       brookv1.CompressionCodec_COMPRESSION_CODEC_NONE,
		Crc32C:            crc32.Checksum(payload, castagnoli),
		ProducerId:        -1, // not an idempotent producer
		ProducerEpoch:     -1,
		BaseSequence:      -1,
		Records:           payload,
		UncompressedBytes: int32(len(payload)),
	}, nil
}

// produce sends one batch to partition 0's leader with acks=all and returns the
// partition's answer. Retriable errors that guarantee nothing was appended are retried
// (after refreshing the leader) until ctx ends; other partition errors are returned
// as *partitionError with the response.
func (c *client) produce(ctx context.Context, batch *brookv1.RecordBatch) (*brookv1.ProducePartitionResponse, error) {
	for {
		lead, err := c.findLeader(ctx)
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
			ClientId:  "brook-go-interop",
			Partitions: []*brookv1.ProducePartition{{
				Topic:              c.topic,
				Partition:          partitionIndex,
				CurrentLeaderEpoch: lead.epoch,
				Batches:            []*brookv1.RecordBatch{batch},
			}},
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("Produce to %s: %w", lead.address, err)
		}
		if len(response.GetPartitions()) != 1 {
			return nil, fmt.Errorf("Produce: %d partition answers for 1 partition", len(response.GetPartitions()))
		}
		answer := response.GetPartitions()[0]
		if answer.GetTopic() != c.topic || answer.GetPartition() != partitionIndex {
			return nil, fmt.Errorf("Produce: answer for %s/%d, asked %s/%d",
				answer.GetTopic(), answer.GetPartition(), c.topic, partitionIndex)
		}
		pe := answer.GetError()
		if pe == nil {
			return answer, nil
		}
		if retriableReasons[pe.GetReason()] && pause(ctx) {
			c.forgetLeader()
			fmt.Fprintf(os.Stderr, "produce: retrying after %s\n", reasonName(pe.GetReason()))
			continue
		}
		return answer, &partitionError{what: "Produce " + c.topic, pe: pe}
	}
}

// decodeBatch checks a fetched batch's CRC-32C, decompresses its records bytes if
// needed (gzip only: this client keeps to Go's standard library) and decodes them
// as brook.v1.Records.
func decodeBatch(batch *brookv1.RecordBatch) ([]record, error) {
	where := fmt.Sprintf("batch at base offset %d", batch.GetBaseOffset())
	if got := crc32.Checksum(batch.GetRecords(), castagnoli); got != batch.GetCrc32C() {
		return nil, fmt.Errorf("%s: crc32c %08x, header says %08x", where, got, batch.GetCrc32C())
	}
	payload := batch.GetRecords()
	switch batch.GetCompression() {
	case brookv1.CompressionCodec_COMPRESSION_CODEC_UNSPECIFIED, brookv1.CompressionCodec_COMPRESSION_CODEC_NONE:
	case brookv1.CompressionCodec_COMPRESSION_CODEC_GZIP:
		reader, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", where, err)
		}
		limit := min(int64(batch.GetUncompressedBytes()), maxUncompressedBytes)
		payload, err = io.ReadAll(io.LimitReader(reader, limit+1))
		if err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", where, err)
		}
		if int64(len(payload)) != int64(batch.GetUncompressedBytes()) {
			return nil, fmt.Errorf("%s: %d bytes after gzip, header says %d",
				where, len(payload), batch.GetUncompressedBytes())
		}
	default:
		return nil, fmt.Errorf("%s: codec %s not supported by this client", where, batch.GetCompression())
	}
	var message brookv1.Records
	if err := proto.Unmarshal(payload, &message); err != nil {
		return nil, fmt.Errorf("%s: decode records: %w", where, err)
	}
	if len(message.GetRecords()) != int(batch.GetRecordCount()) {
		return nil, fmt.Errorf("%s: %d records, header says %d",
			where, len(message.GetRecords()), batch.GetRecordCount())
	}
	out := make([]record, 0, len(message.GetRecords()))
	for _, r := range message.GetRecords() {
		timestamp := r.GetTimestampMs()
		if timestamp == 0 {
			timestamp = batch.GetMaxTimestampMs() // 0 means "the batch's max timestamp"
		}
		out = append(out, record{
			offset:      batch.GetBaseOffset() + int64(r.GetOffsetDelta()),
			timestampMs: timestamp,
			key:         r.GetKey(),
			value:       r.GetValue(),
		})
	}
	return out, nil
}

// fetch reads count records of partition 0 from offset `from` with long-polling Fetch
// calls, until it has them all or ctx ends. Records must come at consecutive offsets.
func (c *client) fetch(ctx context.Context, from int64, count int) ([]record, error) {
	out := make([]record, 0, count)
	next := from
	for len(out) < count {
		lead, err := c.findLeader(ctx)
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
				Partition:          partitionIndex,
				FetchOffset:        next,
				CurrentLeaderEpoch: lead.epoch,
			}},
		})
		cancel()
		if err != nil {
			return out, fmt.Errorf("Fetch from %s at offset %d: %w", lead.address, next, err)
		}
		if len(response.GetPartitions()) != 1 {
			return out, fmt.Errorf("Fetch: %d partition answers for 1 partition", len(response.GetPartitions()))
		}
		answer := response.GetPartitions()[0]
		if pe := answer.GetError(); pe != nil {
			if retriableReasons[pe.GetReason()] && pause(ctx) {
				c.forgetLeader()
				fmt.Fprintf(os.Stderr, "fetch: retrying after %s\n", reasonName(pe.GetReason()))
				continue
			}
			return out, &partitionError{what: fmt.Sprintf("Fetch %s at offset %d", c.topic, next), pe: pe}
		}
		for _, batch := range answer.GetBatches() {
			records, err := decodeBatch(batch)
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
		if ctx.Err() != nil && len(out) < count {
			return out, fmt.Errorf("Fetch: %d of %d records before the deadline: %w", len(out), count, ctx.Err())
		}
	}
	return out, nil
}

func printRecords(records []record) {
	for _, r := range records {
		fmt.Printf("%d %s %s\n", r.offset, r.key, r.value)
	}
}

// produceAndVerify is the full round trip: produce, read back, compare, corrupt batch.
func (c *client) produceAndVerify(ctx context.Context, count int) error {
	now := time.Now().UnixMilli()
	sent := make([]record, count)
	for i := range sent {
		sent[i] = record{
			timestampMs: now + int64(i),
			key:         []byte(fmt.Sprintf("go-key-%d", i)),
			value:       []byte(fmt.Sprintf("go-value-%d", i)),
		}
	}
	batch, err := newBatch(sent)
	if err != nil {
		return err
	}
	answer, err := c.produce(ctx, batch)
	if err != nil {
		return err
	}
	base := answer.GetBaseOffset()
	if last := answer.GetLastOffset(); last != base+int64(count)-1 {
		return fmt.Errorf("Produce: base offset %d and last offset %d for %d records", base, last, count)
	}
	fmt.Printf("produced %d records at base offset %d\n", count, base)

	read, err := c.fetch(ctx, base, count)
	printRecords(read)
	if err != nil {
		return err
	}
	for i, r := range read {
		want := sent[i]
		if r.offset != base+int64(i) || !bytes.Equal(r.key, want.key) ||
			!bytes.Equal(r.value, want.value) || r.timestampMs != want.timestampMs {
			return fmt.Errorf("read back %d %s %s ts=%d, sent %d %s %s ts=%d", r.offset, r.key,
				r.value, r.timestampMs, base+int64(i), want.key, want.value, want.timestampMs)
		}
	}

	corrupt, err := newBatch([]record{{timestampMs: now, key: []byte("go-corrupt-key"), value: []byte("go-corrupt-value")}})
	if err != nil {
		return err
	}
	corrupt.Crc32C++ // any other value is wrong
	answer, err = c.produce(ctx, corrupt)
	var pErr *partitionError
	switch {
	case err == nil:
		return fmt.Errorf("Produce accepted a batch with a wrong crc32c at base offset %d", answer.GetBaseOffset())
	case !errors.As(err, &pErr):
		return err
	case pErr.pe.GetReason() != brookv1.ErrorReason_ERROR_REASON_CORRUPT_BATCH:
		return fmt.Errorf("wrong crc32c: want CORRUPT_BATCH, got %w", err)
	}
	fmt.Printf("corrupt batch refused: %s\n", reasonName(pErr.pe.GetReason()))
	return nil
}

func main() {
	bootstrap := flag.String("bootstrap", "", "a coordinator's HOST:PORT (serves MetadataService)")
	topic := flag.String("topic", "", "topic to use (its partition 0)")
	count := flag.Int("count", 10, "records to produce, or to read with -read-only")
	readOnly := flag.Bool("read-only", false, "only read -count records from -from")
	from := flag.Int64("from", 0, "first offset to read with -read-only")
	timeout := flag.Duration("timeout", 30*time.Second, "bound on the whole run")
	flag.Parse()
	if *bootstrap == "" || *topic == "" || *count < 1 || *from < 0 || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c := &client{bootstrap: *bootstrap, topic: *topic, conns: map[string]*grpc.ClientConn{}}
	defer c.close()

	var err error
	if *readOnly {
		var read []record
		read, err = c.fetch(ctx, *from, *count)
		printRecords(read)
	} else {
		err = c.produceAndVerify(ctx, *count)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "interop: %s\n", describe(err))
		c.close()
		os.Exit(1) // deferred calls do not run after os.Exit; the conns are closed above
	}
}
