package dev.brook.example;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

/**
 * The line format shared by the Go, Node and Java examples (see ../README.md): one
 * tab-separated line per record, bytes in lowercase hex.
 *
 * <pre>
 *   input of produce:  TIMESTAMP_MS KEY VALUE HEADERS
 *   output of reads:   record PARTITION OFFSET TIMESTAMP_MS KEY VALUE HEADERS
 * </pre>
 *
 * KEY is "-" for a record without a key (has_key false), hex otherwise (an empty key is
 * an empty field). HEADERS is "-" for none, else HEXNAME=HEXVALUE pairs joined by ",".
 */
final class Lines {
  private static final HexFormat HEX = HexFormat.of();

  private Lines() {}

  /** One header; the name is a protobuf string (UTF-8). */
  record Header(String name, byte[] value) {}

  /**
   * One record as this client sends or reads it; key is null when the record has none.
   * leaderEpoch is the epoch of the leader that appended it, when the read said (not
   * printed; a group commits it with the offset), else null.
   */
  record Rec(int partition, long offset, long timestampMs, byte[] key, byte[] value, List<Header> headers,
      Integer leaderEpoch) {}

  static Rec parseInput(String line) {
    String[] fields = line.split("\t", -1); // -1: keep trailing empty fields
    if (fields.length != 4) {
      throw new IllegalArgumentException(
          "want 4 tab-separated fields (timestamp key value headers), got " + fields.length);
    }
    long timestamp;
    try {
      timestamp = Long.parseLong(fields[0]);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("timestamp " + fields[0] + ": want an integer");
    }
    if (timestamp < 0) {
      throw new IllegalArgumentException("timestamp " + fields[0] + ": want a non-negative integer");
    }
    byte[] key = fields[1].equals("-") ? null : HEX.parseHex(fields[1]);
    byte[] value = HEX.parseHex(fields[2]);
    List<Header> headers = new ArrayList<>();
    if (!fields[3].equals("-")) {
      for (String pair : fields[3].split(",", -1)) {
        int at = pair.indexOf('=');
        if (at < 0) {
          throw new IllegalArgumentException("header " + pair + ": want HEXNAME=HEXVALUE");
        }
        headers.add(new Header(utf8(HEX.parseHex(pair.substring(0, at))), HEX.parseHex(pair.substring(at + 1))));
      }
    }
    return new Rec(0, 0, timestamp, key, value, headers, null);
  }

  private static String utf8(byte[] bytes) {
    try {
      return StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(bytes))
          .toString();
    } catch (CharacterCodingException e) {
      throw new IllegalArgumentException("header name: want the hex of UTF-8 text");
    }
  }

  static String format(Rec r) {
    String headers = "-";
    if (!r.headers().isEmpty()) {
      List<String> parts = new ArrayList<>();
      for (Header h : r.headers()) {
        parts.add(HEX.formatHex(h.name().getBytes(StandardCharsets.UTF_8)) + "=" + HEX.formatHex(h.value()));
      }
      headers = String.join(",", parts);
    }
    return String.join("\t", "record", Integer.toString(r.partition()), Long.toString(r.offset()),
        Long.toString(r.timestampMs()), r.key() == null ? "-" : HEX.formatHex(r.key()),
        HEX.formatHex(r.value()), headers);
  }
}
