package main

// Batch encoding and decoding: brook.v1.Records, serialized, compressed, in a
// brook.v1.RecordBatch with its CRC-32C. The storage node never looks inside; this is
// all client work.

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"google.golang.org/protobuf/proto"

	brookv1 "github.com/brook-log/brook/examples/go/gen/brook/v1"
)

// Bound on the decompressed size we accept, whatever a batch header claims.
const maxUncompressedBytes = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var codecs = map[string]brookv1.CompressionCodec{
	"none": brookv1.CompressionCodec_COMPRESSION_CODEC_NONE,
	"gzip": brookv1.CompressionCodec_COMPRESSION_CODEC_GZIP,
	"zstd": brookv1.CompressionCodec_COMPRESSION_CODEC_ZSTD,
	"lz4":  brookv1.CompressionCodec_COMPRESSION_CODEC_LZ4,
}

func compress(payload []byte, codec brookv1.CompressionCodec) ([]byte, error) {
	var out bytes.Buffer
	var writer io.WriteCloser
	switch codec {
	case brookv1.CompressionCodec_COMPRESSION_CODEC_NONE:
		return payload, nil
	case brookv1.CompressionCodec_COMPRESSION_CODEC_GZIP:
		writer = gzip.NewWriter(&out)
	case brookv1.CompressionCodec_COMPRESSION_CODEC_ZSTD:
		// One frame that declares its content size, as the Python producer writes.
		encoder, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer encoder.Close()
		return encoder.EncodeAll(payload, nil), nil
	case brookv1.CompressionCodec_COMPRESSION_CODEC_LZ4:
		lz := lz4.NewWriter(&out)
		if err := lz.Apply(lz4.SizeOption(uint64(len(payload))), lz4.ConcurrencyOption(1)); err != nil {
			return nil, err
		}
		writer = lz
	default:
		return nil, fmt.Errorf("codec %s not supported", codec)
	}
	if _, err := writer.Write(payload); err != nil {
		return nil, err
	}
	if err := writer.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// decompress inflates records bytes, never past limit+1 bytes (the caller checks the
// exact size against the header).
func decompress(payload []byte, codec brookv1.CompressionCodec, limit int64) ([]byte, error) {
	var reader io.Reader
	switch codec {
	case brookv1.CompressionCodec_COMPRESSION_CODEC_UNSPECIFIED, brookv1.CompressionCodec_COMPRESSION_CODEC_NONE:
		return payload, nil
	case brookv1.CompressionCodec_COMPRESSION_CODEC_GZIP:
		gz, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, err
		}
		reader = gz
	case brookv1.CompressionCodec_COMPRESSION_CODEC_ZSTD:
		decoder, err := zstd.NewReader(bytes.NewReader(payload), zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(maxUncompressedBytes)) // a window is at least 1 KiB, whatever the content size
		if err != nil {
			return nil, err
		}
		defer decoder.Close()
		reader = decoder
	case brookv1.CompressionCodec_COMPRESSION_CODEC_LZ4:
		reader = lz4.NewReader(bytes.NewReader(payload))
	default:
		return nil, fmt.Errorf("unknown codec %s", codec)
	}
	return io.ReadAll(io.LimitReader(reader, limit+1))
}

// newBatch serializes records as brook.v1.Records, compresses them with codec and puts
// them in a RecordBatch with every producer-set field filled (base_offset and
// partition_leader_epoch are the leader's).
func newBatch(records []record, codec brookv1.CompressionCodec) (*brookv1.RecordBatch, error) {
	message := &brookv1.Records{}
	for i, r := range records {
		out := &brookv1.Record{
			OffsetDelta: uint32(i),
			TimestampMs: r.timestampMs,
			Key:         r.key,
			Value:       r.value,
			HasKey:      r.hasKey,
		}
		for _, h := range r.headers {
			out.Headers = append(out.Headers, &brookv1.RecordHeader{Key: h.name, Value: h.value})
		}
		message.Records = append(message.Records, out)
	}
	payload, err := proto.Marshal(message)
	if err != nil {
		return nil, fmt.Errorf("serialize records: %w", err)
	}
	compressed, err := compress(payload, codec)
	if err != nil {
		return nil, fmt.Errorf("compress records (%s): %w", codec, err)
	}
	first, last := records[0].timestampMs, records[0].timestampMs
	for _, r := range records {
		first, last = min(first, r.timestampMs), max(last, r.timestampMs)
	}
	return &brookv1.RecordBatch{
		RecordCount:       int32(len(records)),
		FirstTimestampMs:  first,
		MaxTimestampMs:    last,
		Compression:       codec,
		Crc32C:            crc32.Checksum(compressed, castagnoli), // of the bytes as sent
		ProducerId:        -1,                                     // not an idempotent producer
		ProducerEpoch:     -1,
		BaseSequence:      -1,
		Records:           compressed,
		UncompressedBytes: int32(len(payload)),
	}, nil
}

// decodeBatch checks a fetched batch's CRC-32C, decompresses its records bytes and
// decodes them as brook.v1.Records.
func decodeBatch(partition int32, batch *brookv1.RecordBatch) ([]record, error) {
	where := fmt.Sprintf("partition %d batch at base offset %d", partition, batch.GetBaseOffset())
	if got := crc32.Checksum(batch.GetRecords(), castagnoli); got != batch.GetCrc32C() {
		return nil, fmt.Errorf("%s: crc32c %08x, header says %08x", where, got, batch.GetCrc32C())
	}
	size := int64(batch.GetUncompressedBytes())
	if size < 0 || size > maxUncompressedBytes {
		return nil, fmt.Errorf("%s: uncompressed_bytes %d out of range", where, size)
	}
	payload, err := decompress(batch.GetRecords(), batch.GetCompression(), size)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", where, batch.GetCompression(), err)
	}
	if batch.GetCompression() > brookv1.CompressionCodec_COMPRESSION_CODEC_NONE && int64(len(payload)) != size {
		return nil, fmt.Errorf("%s: %d bytes after %s, header says %d", where, len(payload), batch.GetCompression(), size)
	}
	var message brookv1.Records
	if err := proto.Unmarshal(payload, &message); err != nil {
		return nil, fmt.Errorf("%s: decode records: %w", where, err)
	}
	if len(message.GetRecords()) != int(batch.GetRecordCount()) {
		return nil, fmt.Errorf("%s: %d records, header says %d", where, len(message.GetRecords()), batch.GetRecordCount())
	}
	out := make([]record, 0, len(message.GetRecords()))
	epoch := batch.GetPartitionLeaderEpoch()
	for _, r := range message.GetRecords() {
		timestamp := r.GetTimestampMs()
		if timestamp == 0 {
			timestamp = batch.GetMaxTimestampMs() // 0 means "the batch's max timestamp"
		}
		decoded := record{
			partition:   partition,
			offset:      batch.GetBaseOffset() + int64(r.GetOffsetDelta()),
			timestampMs: timestamp,
			hasKey:      r.GetHasKey(),
			value:       r.GetValue(),
			leaderEpoch: &epoch,
		}
		if decoded.hasKey {
			decoded.key = r.GetKey()
		}
		for _, h := range r.GetHeaders() {
			decoded.headers = append(decoded.headers, header{name: h.GetKey(), value: h.GetValue()})
		}
		out = append(out, decoded)
	}
	return out, nil
}
