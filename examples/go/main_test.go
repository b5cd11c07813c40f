package main

// Unit tests of the pure parts: batch encoding/decoding and error rendering. The
// round trip against a real cluster is tests/interop/test_clients.py.

import (
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	brookv1 "github.com/brook-log/brook/examples/go/gen/brook/v1"
)

func sampleRecords() []record {
	return []record{
		{timestampMs: 1000, key: []byte("k0"), hasKey: true, value: []byte("v0"),
			headers: []header{{name: "h", value: []byte{0, 1}}, {name: "h", value: nil}}},
		{timestampMs: 1002, key: []byte{}, hasKey: true, value: nil},
		{timestampMs: 1001, value: []byte{0xff, 0}},
	}
}

// TestBatchRoundTripEveryCodec proves a batch this client builds carries the CRC-32C of
// its (compressed) records bytes and decodes back to the same records at
// base_offset + offset_delta, keys (none, empty) and headers included, for every codec.
func TestBatchRoundTripEveryCodec(t *testing.T) {
	for name, codec := range codecs {
		batch, err := newBatch(sampleRecords(), codec)
		if err != nil {
			t.Fatal(name, err)
		}
		if batch.GetCrc32C() != crc32.Checksum(batch.GetRecords(), crc32.MakeTable(crc32.Castagnoli)) {
			t.Fatal(name, "crc32c is not the Castagnoli checksum of records")
		}
		if batch.GetFirstTimestampMs() != 1000 || batch.GetMaxTimestampMs() != 1002 || batch.GetRecordCount() != 3 {
			t.Fatalf("%s header: %v", name, batch)
		}
		batch.BaseOffset = 40
		decoded, err := decodeBatch(7, batch)
		if err != nil {
			t.Fatal(name, err)
		}
		for i, r := range decoded {
			want := sampleRecords()[i]
			want.partition, want.offset = 7, int64(40+i)
			if formatRecordLine(r) != formatRecordLine(want) {
				t.Fatalf("%s record %d: %s, want %s", name, i, formatRecordLine(r), formatRecordLine(want))
			}
		}
		batch.Crc32C++
		if _, err := decodeBatch(7, batch); err == nil || !strings.Contains(err.Error(), "crc32c") {
			t.Fatalf("%s corrupt batch decoded: %v", name, err)
		}
	}
}

// TestLines proves the input line format parses to what the output format prints.
func TestLines(t *testing.T) {
	r, err := parseInputLine("1000\t6b30\t7630\t68=0001,68=")
	if err != nil {
		t.Fatal(err)
	}
	r.partition, r.offset = 1, 5
	if got := formatRecordLine(r); got != "record\t1\t5\t1000\t6b30\t7630\t68=0001,68=" {
		t.Fatalf("line: %q", got)
	}
	r, err = parseInputLine("5\t-\t\t-")
	if err != nil || r.hasKey || len(r.value) != 0 || r.headers != nil {
		t.Fatalf("no key: %+v %v", r, err)
	}
	r, err = parseInputLine("5\t\t00\t-")
	if err != nil || !r.hasKey || len(r.key) != 0 {
		t.Fatalf("empty key: %+v %v", r, err)
	}
	if _, err := parseInputLine("5\tzz\t00\t-"); err == nil {
		t.Fatal("bad hex accepted")
	}
}

// TestOneErrorVocabulary proves a failed call and a PartitionError with the same
// ErrorInfo print the same way (even wrapped), that the typed PartitionError fields are
// the fallback without error_info, and that a response carried in a failed call's status
// details is found.
func TestOneErrorVocabulary(t *testing.T) {
	info := &errdetails.ErrorInfo{
		Reason: "NOT_LEADER", Domain: "brook.v1",
		Metadata: map[string]string{"leader_id": "2", "retriable": "true", "refresh_metadata": "true"},
	}
	carriedResponse := &brookv1.ProduceResponse{Partitions: []*brookv1.ProducePartitionResponse{{
		Topic: "t", Partition: proto.Int32(0),
		Error: &brookv1.PartitionError{Code: 9, Reason: brookv1.ErrorReason_ERROR_REASON_NOT_LEADER, Message: "not the leader", ErrorInfo: info},
	}}}
	st, err := status.New(codes.FailedPrecondition, "not the leader").WithDetails(info, carriedResponse)
	if err != nil {
		t.Fatal(err)
	}
	call := fromCall("Produce t/0", st.Err())
	partition := fromPartition("Produce t/0", carriedResponse.GetPartitions()[0].GetError())
	want := `Produce t/0: reason=NOT_LEADER code=FAILED_PRECONDITION message="not the leader" domain=brook.v1 metadata={leader_id=2,refresh_metadata=true,retriable=true}`
	if describe(call) != want || describe(partition) != want {
		t.Fatalf("call:      %s\npartition: %s\nwant:      %s", describe(call), describe(partition), want)
	}
	if !strings.Contains(describe(fmt.Errorf("wrapped: %w", call)), want) || !retriable(call) || !partition.retriable() {
		t.Fatal("wrapped or retriable")
	}
	response, ok := carried[*brookv1.ProduceResponse](call)
	if !ok || response.GetPartitions()[0].GetError().GetReason() != brookv1.ErrorReason_ERROR_REASON_NOT_LEADER {
		t.Fatalf("carried response: %v %v", response, ok)
	}
	if _, ok := carried[*brookv1.FetchResponse](call); ok {
		t.Fatal("a FetchResponse was not carried")
	}
	typed := fromPartition("Produce t", &brookv1.PartitionError{
		Code: 3, Reason: brookv1.ErrorReason_ERROR_REASON_CORRUPT_BATCH, Message: "bad crc",
	})
	if text := describe(fmt.Errorf("wrapped: %w", typed)); !strings.Contains(text, "reason=CORRUPT_BATCH code=INVALID_ARGUMENT") || typed.retriable() {
		t.Fatalf("typed partition error: %q", text)
	}
	transport := fromCall("Fetch", status.Error(codes.Unavailable, "connection refused"))
	if !retriable(transport) || !strings.Contains(describe(transport), "transport failure") {
		t.Fatalf("transport: %s", describe(transport))
	}
	if describe(errors.New("plain")) != "plain" {
		t.Fatal("plain error")
	}
}

// TestPlainRecordRoundTrip proves the record API's plain records keep no key vs an empty
// key, empty values and headers.
func TestPlainRecordRoundTrip(t *testing.T) {
	for i, r := range sampleRecords() {
		plain := toPlain(r)
		consumed := &brookv1.ConsumedRecord{Offset: proto.Int64(int64(i)), TimestampMs: plain.TimestampMs, Headers: plain.GetHeaders()}
		switch key := plain.GetKeyKind().(type) {
		case *brookv1.PlainRecord_Key:
			consumed.KeyKind = &brookv1.ConsumedRecord_Key{Key: key.Key}
		}
		consumed.ValueKind = &brookv1.ConsumedRecord_Value{Value: plain.GetValue()}
		wire, err := proto.Marshal(consumed)
		if err != nil {
			t.Fatal(err)
		}
		var back brookv1.ConsumedRecord
		if err := proto.Unmarshal(wire, &back); err != nil {
			t.Fatal(err)
		}
		got := fromConsumed(7, &back)
		r.partition, r.offset = 7, int64(i)
		if formatRecordLine(got) != formatRecordLine(r) {
			t.Fatalf("record %d: %s, want %s", i, formatRecordLine(got), formatRecordLine(r))
		}
	}
}
