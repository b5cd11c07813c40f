package main

// Unit tests of the pure parts: batch encoding/decoding and error rendering. The
// round trip against a real cluster is tests/interop/test_go_client.py.

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	brookv1 "github.com/brook-log/brook/tests/interop/go/gen/brook/v1"
)

func sampleRecords() []record {
	return []record{
		{timestampMs: 1000, key: []byte("k0"), value: []byte("v0")},
		{timestampMs: 1002, key: []byte("k1"), value: []byte("v1")},
	}
}

// TestBatchRoundTrip proves a batch this client builds carries the CRC-32C of its
// records bytes and decodes back to the same records at base_offset + offset_delta.
func TestBatchRoundTrip(t *testing.T) {
	batch, err := newBatch(sampleRecords())
	if err != nil {
		t.Fatal(err)
	}
	if batch.GetCrc32C() != crc32.Checksum(batch.GetRecords(), crc32.MakeTable(crc32.Castagnoli)) {
		t.Fatal("crc32c is not the Castagnoli checksum of records")
	}
	if batch.GetFirstTimestampMs() != 1000 || batch.GetMaxTimestampMs() != 1002 || batch.GetRecordCount() != 2 {
		t.Fatalf("header: %v", batch)
	}
	batch.BaseOffset = 40
	decoded, err := decodeBatch(batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range decoded {
		want := sampleRecords()[i]
		if r.offset != int64(40+i) || !bytes.Equal(r.key, want.key) || !bytes.Equal(r.value, want.value) {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
}

// TestDecodeGzipAndCorrupt proves gzip records decode and a CRC mismatch is an error.
func TestDecodeGzipAndCorrupt(t *testing.T) {
	batch, err := newBatch(sampleRecords())
	if err != nil {
		t.Fatal(err)
	}
	var compressed bytes.Buffer
	writer := gzip.NewWriter(&compressed)
	_, _ = writer.Write(batch.GetRecords())
	_ = writer.Close()
	batch.Records = compressed.Bytes()
	batch.Compression = brookv1.CompressionCodec_COMPRESSION_CODEC_GZIP
	batch.Crc32C = crc32.Checksum(batch.Records, castagnoli)
	if decoded, err := decodeBatch(batch); err != nil || len(decoded) != 2 {
		t.Fatalf("gzip: %v %v", decoded, err)
	}
	batch.Crc32C++
	if _, err := decodeBatch(batch); err == nil || !strings.Contains(err.Error(), "crc32c") {
		t.Fatalf("corrupt batch decoded: %v", err)
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
