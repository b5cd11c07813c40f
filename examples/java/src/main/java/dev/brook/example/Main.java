package dev.brook.example;

import dev.brook.v1.CompressionCodec;
import dev.brook.v1.ProducePartitionResponse;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A Brook client written only against code generated from protos/brook/v1 (protoc and
 * protoc-gen-grpc-java at build time), with no Brook library.
 *
 * <pre>
 *   java -jar target/brook-example.jar produce --bootstrap HOST:PORT --topic T [--partition 0]
 *       [--compression none|gzip|zstd|lz4] [--batch-size 100] &lt; records
 *   java -jar target/brook-example.jar consume --bootstrap HOST:PORT --topic T [--partition 0] [--from 0] --count N
 *   java -jar target/brook-example.jar group   --bootstrap HOST:PORT --topic T --group G [--count N]
 * </pre>
 *
 * Same commands, flags and line formats as the Go and Node examples (../README.md).
 * --api selects the data API. "batch" (the default): StorageService Produce/Fetch with
 * RecordBatch on the partition's leader; this program encodes, compresses and checksums
 * batches itself (Batches), to --partition (default 0). "records": RecordService
 * ProduceRecords/ReadRecords on any node with plain records (RecordApi); the node builds the
 * batches (with --compression); without --partition it picks each keyed record's partition by
 * murmur2(key). Failures print the gRPC status or the PartitionError in one format, from its
 * google.rpc.ErrorInfo (BrookException), on stderr and exit 1; bad usage exits 2.
 */
public final class Main {
  private static final String USAGE = String.join("\n",
      "usage: brook-example produce|consume|group --bootstrap HOST:PORT --topic T [flags]",
      "  --api batch          data API: batch (StorageService Produce/Fetch with RecordBatch, on the",
      "                       leader) or records (RecordService ProduceRecords/ReadRecords, on any node)",
      "  --timeout-ms 30000   bound on the whole run",
      "  --partition 0        partition to produce to or consume from (produce, consume); with",
      "                       --api records, produce without it lets the node pick by key",
      "  --compression none   codec of produced batches: none, gzip, zstd, lz4 (produce)",
      "  --batch-size 100     records per batch or ProduceRecords request (produce)",
      "  --from 0             first offset to read (consume)",
      "  --count 1            records to read (consume); most records per partition (group)",
      "  --group G            consumer group id (group)");

  private Main() {}

  public static void main(String[] args) {
    Map<String, String> flags = new HashMap<>(Map.of(
        "api", "batch", "timeout-ms", "30000", "partition", "", "compression", "none",
        "batch-size", "100", "from", "0", "count", "1", "group", ""));
    String command;
    long timeoutMs;
    Integer partition; // null only for produce --api records without --partition: by key
    int batchSize;
    long from;
    int count;
    CompressionCodec codec;
    try {
      if (args.length == 0 || !List.of("produce", "consume", "group").contains(args[0])) {
        throw new IllegalArgumentException("want one command: produce, consume or group");
      }
      command = args[0];
      for (int i = 1; i < args.length; i += 2) {
        String name = args[i].replaceFirst("^--?", "");
        if (!args[i].startsWith("-") || i + 1 >= args.length
            || !(flags.containsKey(name) || name.equals("bootstrap") || name.equals("topic"))) {
          throw new IllegalArgumentException("bad flag " + args[i]);
        }
        flags.put(name, args[i + 1]);
      }
      if (!flags.containsKey("bootstrap") || !flags.containsKey("topic")) {
        throw new IllegalArgumentException("--bootstrap and --topic are required");
      }
      if (!List.of("batch", "records").contains(flags.get("api"))) {
        throw new IllegalArgumentException("--api " + flags.get("api") + ": want batch or records");
      }
      codec = Batches.CODECS.get(flags.get("compression"));
      if (codec == null) {
        throw new IllegalArgumentException("--compression: want none, gzip, zstd or lz4");
      }
      if (command.equals("group") && flags.get("group").isEmpty()) {
        throw new IllegalArgumentException("--group is required");
      }
      timeoutMs = Long.parseLong(flags.get("timeout-ms"));
      boolean byKey = command.equals("produce") && flags.get("api").equals("records");
      partition = flags.get("partition").isEmpty() ? (byKey ? null : 0) : Integer.valueOf(flags.get("partition"));
      batchSize = Integer.parseInt(flags.get("batch-size"));
      from = Long.parseLong(flags.get("from"));
      count = Integer.parseInt(flags.get("count"));
      if (timeoutMs < 1 || (partition != null && partition < 0) || batchSize < 1 || from < 0 || count < 1) {
        throw new IllegalArgumentException("numbers out of range");
      }
    } catch (IllegalArgumentException e) {
      System.err.println(e.getMessage() + "\n" + USAGE);
      System.exit(2);
      return;
    }
    int code = 0;
    boolean records = flags.get("api").equals("records");
    try (BrookClient client = new BrookClient(flags.get("bootstrap"), flags.get("topic"), timeoutMs)) {
      RecordApi recordApi = new RecordApi(client);
      GroupMember.Reader reader = records ? recordApi::read : client::fetch;
      switch (command) {
        case "produce" -> produce(client, records ? recordApi : null, partition, codec, batchSize);
        case "consume" -> {
          for (Lines.Rec r : reader.read(partition, from, count, false)) {
            System.out.println(Lines.format(r));
          }
        }
        default -> new GroupMember(client, flags.get("group"), reader).run(count);
      }
    } catch (Exception e) {
      System.err.println("brook-example-java: " + BrookException.describe(e));
      code = 1;
    }
    System.out.flush();
    System.exit(code);
  }

  /**
   * Reads record lines from stdin and sends them batchSize at a time: one RecordBatch to the
   * partition's leader (recordApi null: --api batch), or one ProduceRecords request to any
   * node (partition null: the node picks by key).
   */
  private static void produce(BrookClient client, RecordApi recordApi, Integer partition, CompressionCodec codec,
      int batchSize) throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    List<Lines.Rec> pending = new ArrayList<>();
    String line;
    int number = 0;
    while ((line = in.readLine()) != null) {
      number++;
      if (line.isEmpty()) {
        continue;
      }
      try {
        pending.add(Lines.parseInput(line));
      } catch (IllegalArgumentException e) {
        throw new IllegalArgumentException("stdin line " + number + ": " + e.getMessage(), e);
      }
      if (pending.size() == batchSize) {
        send(client, recordApi, partition, codec, pending);
      }
    }
    send(client, recordApi, partition, codec, pending);
  }

  private static void send(BrookClient client, RecordApi recordApi, Integer partition, CompressionCodec codec,
      List<Lines.Rec> pending) throws Exception {
    if (pending.isEmpty()) {
      return;
    }
    if (recordApi != null) {
      recordApi.produce(partition, pending, codec, p -> System.out.println(
          "produced\t" + p.partition() + "\t" + p.first() + "\t" + p.last()));
      pending.clear();
      return;
    }
    ProducePartitionResponse answer = client.produce(partition, Batches.newBatch(pending, codec));
    if (answer.getLastOffset() != answer.getBaseOffset() + pending.size() - 1) {
      throw new IllegalStateException("Produce: base offset " + answer.getBaseOffset() + " and last offset "
          + answer.getLastOffset() + " for " + pending.size() + " records");
    }
    System.out.println("produced\t" + partition + "\t" + answer.getBaseOffset() + "\t" + answer.getLastOffset());
    pending.clear();
  }
}
