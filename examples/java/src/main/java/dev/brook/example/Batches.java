package dev.brook.example;

import com.github.luben.zstd.Zstd;
import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.brook.v1.CompressionCodec;
import dev.brook.v1.Record;
import dev.brook.v1.RecordBatch;
import dev.brook.v1.RecordHeader;
import dev.brook.v1.Records;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32C;
import java.util.zip.GZIPInputStream;
import java.util.zip.GZIPOutputStream;
import org.apache.commons.compress.compressors.lz4.FramedLZ4CompressorInputStream;
import org.apache.commons.compress.compressors.lz4.FramedLZ4CompressorOutputStream;

/** brook.v1.Records, serialized, compressed, in a RecordBatch with its CRC-32C; and back. */
final class Batches {
  /** Bound on the decompressed size we accept, whatever a batch header claims. */
  static final int MAX_UNCOMPRESSED_BYTES = 64 << 20;

  static final Map<String, CompressionCodec> CODECS = Map.of(
      "none", CompressionCodec.COMPRESSION_CODEC_NONE,
      "gzip", CompressionCodec.COMPRESSION_CODEC_GZIP,
      "zstd", CompressionCodec.COMPRESSION_CODEC_ZSTD,
      "lz4", CompressionCodec.COMPRESSION_CODEC_LZ4);

  private Batches() {}

  static int crc32c(byte[] bytes) {
    CRC32C crc = new CRC32C();
    crc.update(bytes);
    return (int) crc.getValue(); // uint32 in the proto is a Java int: compare as int
  }

  static byte[] compress(byte[] payload, CompressionCodec codec) throws IOException {
    switch (codec) {
      case COMPRESSION_CODEC_NONE:
        return payload;
      case COMPRESSION_CODEC_ZSTD:
        return Zstd.compress(payload, 3); // one frame with its content size
      case COMPRESSION_CODEC_GZIP:
      case COMPRESSION_CODEC_LZ4: {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (OutputStream stream = codec == CompressionCodec.COMPRESSION_CODEC_GZIP
            ? new GZIPOutputStream(out) : new FramedLZ4CompressorOutputStream(out)) {
          stream.write(payload);
        }
        return out.toByteArray();
      }
      default:
        throw new IllegalArgumentException("codec " + codec + " not supported");
    }
  }

  /** Inflates records bytes, never past size + 1 bytes (the caller checks the exact size). */
  static byte[] decompress(byte[] payload, CompressionCodec codec, int size) throws IOException {
    switch (codec) {
      case COMPRESSION_CODEC_UNSPECIFIED:
      case COMPRESSION_CODEC_NONE:
        return payload;
      case COMPRESSION_CODEC_ZSTD:
        return Zstd.decompress(payload, size); // fails when the frame holds more
      case COMPRESSION_CODEC_GZIP:
      case COMPRESSION_CODEC_LZ4: {
        try (InputStream in = codec == CompressionCodec.COMPRESSION_CODEC_GZIP
            ? new GZIPInputStream(new ByteArrayInputStream(payload))
            : new FramedLZ4CompressorInputStream(new ByteArrayInputStream(payload))) {
          return in.readNBytes(size + 1);
        }
      }
      default:
        throw new IOException("unknown codec " + codec);
    }
  }

  static RecordBatch newBatch(List<Lines.Rec> records, CompressionCodec codec) throws IOException {
    Records.Builder message = Records.newBuilder();
    long first = Long.MAX_VALUE;
    long last = Long.MIN_VALUE;
    for (int i = 0; i < records.size(); i++) {
      Lines.Rec r = records.get(i);
      Record.Builder out = Record.newBuilder()
          .setOffsetDelta(i)
          .setTimestampMs(r.timestampMs())
          .setHasKey(r.key() != null)
          .setValue(ByteString.copyFrom(r.value()));
      if (r.key() != null) {
        out.setKey(ByteString.copyFrom(r.key()));
      }
      for (Lines.Header h : r.headers()) {
        out.addHeaders(RecordHeader.newBuilder().setKey(h.name()).setValue(ByteString.copyFrom(h.value())));
      }
      message.addRecords(out);
      first = Math.min(first, r.timestampMs());
      last = Math.max(last, r.timestampMs());
    }
    byte[] payload = message.build().toByteArray();
    byte[] compressed = compress(payload, codec);
    return RecordBatch.newBuilder()
        .setRecordCount(records.size())
        .setFirstTimestampMs(first)
        .setMaxTimestampMs(last)
        .setCompression(codec)
        .setCrc32C(crc32c(compressed)) // of the bytes as sent, after compression
        .setProducerId(-1) // not an idempotent producer
        .setProducerEpoch(-1)
        .setBaseSequence(-1)
        .setRecords(ByteString.copyFrom(compressed))
        .setUncompressedBytes(payload.length)
        .build();
  }

  static List<Lines.Rec> decodeBatch(int partition, RecordBatch batch) throws IOException {
    String where = "partition " + partition + " batch at base offset " + batch.getBaseOffset();
    byte[] bytes = batch.getRecords().toByteArray();
    int got = crc32c(bytes);
    if (got != batch.getCrc32C()) {
      throw new IOException(where + ": crc32c " + Integer.toHexString(got) + ", header says "
          + Integer.toHexString(batch.getCrc32C()));
    }
    int size = batch.getUncompressedBytes();
    if (size < 0 || size > MAX_UNCOMPRESSED_BYTES) {
      throw new IOException(where + ": uncompressed_bytes " + size + " out of range");
    }
    byte[] payload;
    try {
      payload = decompress(bytes, batch.getCompression(), size);
    } catch (IOException | RuntimeException e) {
      throw new IOException(where + ": " + batch.getCompression() + ": " + e.getMessage(), e);
    }
    boolean compressed = batch.getCompression() != CompressionCodec.COMPRESSION_CODEC_NONE
        && batch.getCompression() != CompressionCodec.COMPRESSION_CODEC_UNSPECIFIED;
    if (compressed && payload.length != size) {
      throw new IOException(where + ": " + payload.length + " bytes after " + batch.getCompression()
          + ", header says " + size);
    }
    Records message;
    try {
      message = Records.parseFrom(payload);
    } catch (InvalidProtocolBufferException e) {
      throw new IOException(where + ": decode records: " + e.getMessage(), e);
    }
    if (message.getRecordsCount() != batch.getRecordCount()) {
      throw new IOException(where + ": " + message.getRecordsCount() + " records, header says "
          + batch.getRecordCount());
    }
    List<Lines.Rec> out = new ArrayList<>();
    for (Record r : message.getRecordsList()) {
      long timestamp = r.getTimestampMs() == 0 ? batch.getMaxTimestampMs() : r.getTimestampMs();
      List<Lines.Header> headers = new ArrayList<>();
      for (RecordHeader h : r.getHeadersList()) {
        headers.add(new Lines.Header(h.getKey(), h.getValue().toByteArray()));
      }
      out.add(new Lines.Rec(partition, batch.getBaseOffset() + Integer.toUnsignedLong(r.getOffsetDelta()),
          timestamp, r.getHasKey() ? r.getKey().toByteArray() : null, r.getValue().toByteArray(), headers,
          batch.getPartitionLeaderEpoch()));
    }
    return out;
  }
}
