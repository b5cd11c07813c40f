package main

// The record API client (-api records): RecordService.ProduceRecords sends plain records
// to any storage node, which encodes them into one batch per partition, routes it to the
// partition's leader and answers each record's offset (without -partition a keyed record
// goes to murmur2(key) modulo the partition count); RecordService.ReadRecords reads
// decoded records from any node. No batch encoding, no CRC, no leader lookup here: the
// node does that work, at the cost of a hop and per-record work on the node.

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	brookv1 "github.com/brook-log/brook/examples/go/gen/brook/v1"
)

// anyNode returns a live storage node from metadata: any one serves RecordService.
// turn picks another one after a transport failure.
func (c *client) anyNode(ctx context.Context, turn int) (string, error) {
	for {
		var err error
		if len(c.nodes) == 0 {
			err = c.refresh(ctx)
		}
		if len(c.nodes) > 0 {
			return c.nodes[turn%len(c.nodes)], nil
		}
		if err == nil {
			err = fmt.Errorf("metadata lists no live storage node")
		}
		if !pause(ctx) {
			return "", fmt.Errorf("no storage node before the deadline: %w", err)
		}
	}
}

// toPlain is a record as ProduceRecords takes it: key and value as bytes (an empty key is
// a key: the oneof is set), headers in order, the record's own timestamp.
func toPlain(r record) *brookv1.PlainRecord {
	out := &brookv1.PlainRecord{
		TimestampMs: proto.Int64(r.timestampMs),
		ValueKind:   &brookv1.PlainRecord_Value{Value: r.value},
	}
	if r.hasKey {
		key := r.key
		if key == nil {
			key = []byte{}
		}
		out.KeyKind = &brookv1.PlainRecord_Key{Key: key}
	}
	for _, h := range r.headers {
		out.Headers = append(out.Headers, &brookv1.PlainHeader{Key: h.name, ValueKind: &brookv1.PlainHeader_Value{Value: h.value}})
	}
	return out
}

// fromConsumed is a ReadRecords record in this client's form.
func fromConsumed(partition int32, r *brookv1.ConsumedRecord) record {
	out := record{partition: partition, offset: r.GetOffset(), timestampMs: r.GetTimestampMs(), leaderEpoch: r.LeaderEpoch}
	if r.Partition != nil {
		out.partition = r.GetPartition()
	}
	switch key := r.GetKeyKind().(type) {
	case *brookv1.ConsumedRecord_Key:
		out.key, out.hasKey = key.Key, true
	case *brookv1.ConsumedRecord_KeyText:
		out.key, out.hasKey = []byte(key.KeyText), true
	}
	if out.hasKey && out.key == nil {
		out.key = []byte{}
	}
	switch value := r.GetValueKind().(type) {
	case *brookv1.ConsumedRecord_Value:
		out.value = value.Value
	case *brookv1.ConsumedRecord_ValueText:
		out.value = []byte(value.ValueText)
	}
	for _, h := range r.GetHeaders() {
		item := header{name: h.GetKey()}
		switch value := h.GetValueKind().(type) {
		case *brookv1.PlainHeader_Value:
			item.value = value.Value
		case *brookv1.PlainHeader_ValueText:
			item.value = []byte(value.ValueText)
		}
		out.headers = append(out.headers, item)
	}
	return out
}

// produced is one partition's share of a ProduceRecords answer: its records took offsets
// first..last, in request order.
type produced struct {
	partition   int32
	first, last int64
}

// produceRecords sends records with ProduceRecords (acks=all) to any node; partition nil
// lets the node pick by key. It returns each partition's offsets in the order the
// partitions first appear. A failed call is retried on another node when nothing can
// have been appended (transport failure, or a reason safe to retry: the node already
// retried leader moves itself); a failed call whose details carry the response (every
// record failed) is read as that response; a record's error is a *brookError, after the
// partitions that succeeded.
func (c *client) produceRecords(ctx context.Context, partition *int32, records []record, codec brookv1.CompressionCodec) ([]produced, error) {
	request := &brookv1.ProduceRecordsRequest{
		Topic:       c.topic,
		Partition:   partition,
		Acks:        brookv1.Acks_ACKS_ALL,
		TimeoutMs:   produceTimeoutMs,
		Compression: codec,
		ClientId:    c.clientID,
	}
	for _, r := range records {
		request.Records = append(request.Records, toPlain(r))
	}
	var response *brookv1.ProduceRecordsResponse
	for turn := 0; ; turn++ {
		address, err := c.anyNode(ctx, turn)
		if err != nil {
			return nil, err
		}
		conn, err := c.conn(address)
		if err != nil {
			return nil, err
		}
		callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
		response, err = brookv1.NewRecordServiceClient(conn).ProduceRecords(callCtx, request)
		cancel()
		if err == nil {
			break
		}
		err = fromCall(fmt.Sprintf("ProduceRecords %s on %s", c.topic, address), err)
		if carriedResponse, ok := carried[*brookv1.ProduceRecordsResponse](err); ok {
			response = carriedResponse // every record failed: each result says why
			break
		}
		if retriable(err) && pause(ctx) {
			c.nodes = nil
			continue
		}
		return nil, err
	}
	if len(response.GetResults()) != len(records) {
		return nil, fmt.Errorf("ProduceRecords: %d results for %d records", len(response.GetResults()), len(records))
	}
	var out []produced
	at := map[int32]int{} // partition -> index in out
	var failure error
	for i, result := range response.GetResults() {
		if pe := result.GetError(); pe != nil {
			if failure == nil {
				failure = fromPartition(fmt.Sprintf("ProduceRecords %s/%d (record %d)", c.topic, result.GetPartition(), i), pe)
			}
			continue
		}
		p, offset := result.GetPartition(), result.GetOffset()
		index, seen := at[p]
		if !seen {
			at[p] = len(out)
			out = append(out, produced{partition: p, first: offset, last: offset})
			continue
		}
		if offset != out[index].last+1 {
			return out, fmt.Errorf("ProduceRecords: record %d at %s/%d offset %d after offset %d", i, c.topic, p, offset, out[index].last)
		}
		out[index].last = offset
	}
	return out, failure
}

// readRecords reads up to count records of a partition from offset `from` with
// ReadRecords on any node, until it has them all or ctx ends; with toEnd it also stops at
// the high watermark.
func (c *client) readRecords(ctx context.Context, partition int32, from int64, count int, toEnd bool) ([]record, error) {
	out := make([]record, 0, count)
	next := from
	for turn := 0; len(out) < count; {
		what := fmt.Sprintf("ReadRecords %s/%d at offset %d", c.topic, partition, next)
		address, err := c.anyNode(ctx, turn)
		if err != nil {
			return out, err
		}
		conn, err := c.conn(address)
		if err != nil {
			return out, err
		}
		callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
		response, err := brookv1.NewRecordServiceClient(conn).ReadRecords(callCtx, &brookv1.ReadRecordsRequest{
			Topic:      c.topic,
			Partition:  partition,
			Start:      &brookv1.ReadRecordsRequest_Offset{Offset: next},
			MaxRecords: int32(min(count-len(out), 10000)),
			MaxWaitMs:  fetchMaxWaitMs,
		})
		cancel()
		if err != nil {
			err = fromCall(what+" on "+address, err)
			if retriable(err) && pause(ctx) {
				turn++
				c.nodes = nil
				continue
			}
			return out, err
		}
		for _, consumed := range response.GetRecords() {
			r := fromConsumed(partition, consumed)
			if r.offset != next {
				return out, fmt.Errorf("ReadRecords: offset %d where %d was next", r.offset, next)
			}
			out = append(out, r)
			next++
		}
		if response.NextOffset != nil && response.GetNextOffset() != next {
			return out, fmt.Errorf("ReadRecords: next_offset %d after offset %d", response.GetNextOffset(), next-1)
		}
		if toEnd && next >= response.GetHighWatermark() {
			break
		}
		if ctx.Err() != nil && len(out) < count {
			return out, fmt.Errorf("ReadRecords: %d of %d records before the deadline: %w", len(out), count, ctx.Err())
		}
	}
	return out, nil
}
