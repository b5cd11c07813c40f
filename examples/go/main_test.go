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

// TestDescribeStatusWithErrorInfo proves a failed call prints its gRPC code, message and
// ErrorInfo reason even when wrapped, and a partition error prints its reason.
func TestDescribeStatusWithErrorInfo(t *testing.T) {
	st, err := status.New(codes.FailedPrecondition, "not the leader").WithDetails(&errdetails.ErrorInfo{
		Reason: "NOT_LEADER", Domain: "brook.v1", Metadata: map[string]string{"leader_id": "2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	text := describe(fmt.Errorf("Produce to x: %w", st.Err()))
	for _, want := range []string{
		`grpc status: code=FailedPrecondition message="not the leader"`,
		"error info: reason=NOT_LEADER domain=brook.v1 metadata={leader_id=2}",
	} {
		if !strings.Contains(text, want) {
			t.Fatalf("%q lacks %q", text, want)
		}
	}
	pErr := &partitionError{what: "Produce t", pe: &brookv1.PartitionError{
		Code: 3, Reason: brookv1.ErrorReason_ERROR_REASON_CORRUPT_BATCH, Message: "bad crc",
	}}
	if text := describe(fmt.Errorf("wrapped: %w", pErr)); !strings.Contains(text, "reason=CORRUPT_BATCH code=3") {
		t.Fatalf("partition error: %q", text)
	}
	if describe(errors.New("plain")) != "plain" {
		t.Fatal("plain error")
	}
}
