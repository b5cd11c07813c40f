// Command brook-example-go is a Brook client written only against code generated from
// protos/ (protoc-gen-go and protoc-gen-go-grpc), with no Brook library.
//
//	brook-example-go produce -bootstrap HOST:PORT -topic T [-partition 0] [-compression none|gzip|zstd|lz4] [-batch-size 100] < records
//	brook-example-go consume -bootstrap HOST:PORT -topic T [-partition 0] [-from 0] -count N
//	brook-example-go group   -bootstrap HOST:PORT -topic T -group G [-count N]
//	common: -timeout-ms 30000, -api batch|records
//
// produce reads record lines from stdin (TIMESTAMP_MS KEY VALUE HEADERS, see lines.go)
// and sends them in groups of -batch-size (acks=all); it prints
// "produced PARTITION BASE_OFFSET LAST_OFFSET" per batch. consume prints
// "record PARTITION OFFSET TIMESTAMP_MS KEY VALUE HEADERS" lines. group joins the group
// (Heartbeat), reads up to -count records of each assigned partition from the committed
// offset (up to the high watermark), commits (member id + epoch), leaves, and prints
// "member ID EPOCH", "assigned TOPIC P", record lines, "committed TOPIC P OFFSET", "left".
//
// -api selects the data API. "batch" (the default): StorageService Produce/Fetch with
// RecordBatch on the partition's leader; this program encodes, compresses and checksums
// batches itself (batch.go), to -partition (default 0). "records": RecordService
// ProduceRecords/ReadRecords on any node with plain records (records.go); the node builds
// the batches (with -compression); without -partition it picks each keyed record's
// partition by murmur2(key). Any failure prints the gRPC status or the PartitionError in
// one format, from its google.rpc.ErrorInfo (errors.go), on stderr and exits 1; bad
// usage exits 2.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	brookv1 "github.com/brook-log/brook/examples/go/gen/brook/v1"
)

const usage = `usage: brook-example-go produce|consume|group [flags]   (-h after a command lists its flags)`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	command := os.Args[1]
	flags := flag.NewFlagSet(command, flag.ExitOnError)
	bootstrap := flags.String("bootstrap", "", "a coordinator's HOST:PORT (serves MetadataService)")
	topic := flags.String("topic", "", "topic to use")
	api := flags.String("api", "batch", "data API: batch (StorageService Produce/Fetch with RecordBatch, on the leader) or records (RecordService ProduceRecords/ReadRecords, on any node)")
	timeoutMs := flags.Int("timeout-ms", 30000, "bound on the whole run, in milliseconds")
	partition := flags.Int("partition", 0, "partition to produce to or consume from (produce, consume); with -api records, produce without it lets the node pick by key")
	compression := flags.String("compression", "none", "codec of produced batches: none, gzip, zstd, lz4 (produce)")
	batchSize := flags.Int("batch-size", 100, "records per batch or ProduceRecords request (produce)")
	from := flags.Int64("from", 0, "first offset to read (consume)")
	count := flags.Int("count", 1, "records to read (consume); most records per partition (group)")
	group := flags.String("group", "", "consumer group id (group)")
	corrupt := flags.Bool("corrupt-crc", false, "send batches with a wrong crc32c, to see CORRUPT_BATCH (produce)")
	switch command {
	case "produce", "consume", "group":
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	_ = flags.Parse(os.Args[2:])
	partitionSet := false
	flags.Visit(func(f *flag.Flag) { partitionSet = partitionSet || f.Name == "partition" })
	codec, knownCodec := codecs[*compression]
	bad := *bootstrap == "" || *topic == "" || flags.NArg() != 0 || (*api != "batch" && *api != "records") || !knownCodec ||
		*partition < 0 || *timeoutMs < 1 || *batchSize < 1 || *from < 0 || *count < 1 || (command == "group" && *group == "")
	if bad {
		flags.Usage()
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*timeoutMs)*time.Millisecond)
	c := newClient(*bootstrap, *topic)
	read := c.fetch // the reads of consume and group
	if *api == "records" {
		read = c.readRecords
	}
	var err error
	switch command {
	case "produce":
		var target *int32 // -api records without -partition: the node picks by key
		if partitionSet || *api == "batch" {
			target = proto.Int32(int32(*partition))
		}
		err = runProduce(ctx, c, *api, target, codec, *batchSize, *corrupt)
	case "consume":
		var records []record
		records, err = read(ctx, int32(*partition), *from, *count, false)
		for _, r := range records {
			fmt.Println(formatRecordLine(r))
		}
	case "group":
		err = runGroup(ctx, c, read, *group, *count)
	}
	c.close()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "brook-example-go: %s\n", describe(err))
		os.Exit(1)
	}
}

// runProduce reads record lines from stdin and produces them batchSize at a time: one
// RecordBatch to the partition's leader (-api batch), or one ProduceRecords request to
// any node (-api records; partition nil: by key).
func runProduce(ctx context.Context, c *client, api string, partition *int32, codec brookv1.CompressionCodec, batchSize int, corrupt bool) error {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	var pending []record
	send := func() error {
		if len(pending) == 0 {
			return nil
		}
		if api == "records" {
			spans, err := c.produceRecords(ctx, partition, pending, codec)
			for _, span := range spans {
				fmt.Printf("produced\t%d\t%d\t%d\n", span.partition, span.first, span.last)
			}
			pending = pending[:0]
			return err
		}
		batch, err := newBatch(pending, codec)
		if err != nil {
			return err
		}
		if corrupt {
			batch.Crc32C++ // any other value is wrong
		}
		answer, err := c.produce(ctx, *partition, batch)
		if err != nil {
			return err
		}
		if answer.GetLastOffset() != answer.GetBaseOffset()+int64(len(pending))-1 {
			return fmt.Errorf("Produce: base offset %d and last offset %d for %d records",
				answer.GetBaseOffset(), answer.GetLastOffset(), len(pending))
		}
		fmt.Printf("produced\t%d\t%d\t%d\n", *partition, answer.GetBaseOffset(), answer.GetLastOffset())
		pending = pending[:0]
		return nil
	}
	for line := 1; scanner.Scan(); line++ {
		text := strings.TrimRight(scanner.Text(), "\r")
		if text == "" {
			continue
		}
		r, err := parseInputLine(text)
		if err != nil {
			return fmt.Errorf("stdin line %d: %w", line, err)
		}
		pending = append(pending, r)
		if len(pending) == batchSize {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if err := scanner.Err(); err != nil {
		return fmt.Errorf("stdin: %w", err)
	}
	return send()
}
