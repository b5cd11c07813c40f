// Command brook-example-go is a Brook client written only against code generated from
// protos/brook/v1 (protoc-gen-go and protoc-gen-go-grpc), with no Brook library.
//
//	brook-example-go produce -bootstrap HOST:PORT -topic T [-partition 0] [-compression none|gzip|zstd|lz4] [-batch-size 100] < records
//	brook-example-go consume -bootstrap HOST:PORT -topic T [-partition 0] [-from 0] -count N
//	brook-example-go group   -bootstrap HOST:PORT -topic T -group G [-count N]
//
// produce reads record lines from stdin (TIMESTAMP_MS KEY VALUE HEADERS, see lines.go),
// sends them to the partition's leader in batches (brook.v1.Records, compressed, CRC-32C,
// acks=all) and prints "produced PARTITION BASE_OFFSET LAST_OFFSET" per batch.
// consume prints "record PARTITION OFFSET TIMESTAMP_MS KEY VALUE HEADERS" lines.
// group joins the group (Heartbeat), reads up to -count records of each assigned
// partition from the committed offset (up to the high watermark), commits (member id + epoch), leaves, and prints
// "member ID EPOCH", "assigned TOPIC P", record lines, "committed TOPIC P OFFSET", "left".
//
// -api selects the data API; "batch" (StorageService Produce/Fetch with RecordBatch) is
// the one there is. Any failure prints the gRPC status (code, message, ErrorInfo reason
// and metadata) or the per-partition error on stderr and exits 1; bad usage exits 2.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

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
	api := flags.String("api", "batch", "data API: batch (StorageService Produce/Fetch with RecordBatch)")
	timeoutMs := flags.Int("timeout-ms", 30000, "bound on the whole run, in milliseconds")
	partition := flags.Int("partition", 0, "partition to produce to or consume from (produce, consume)")
	compression := flags.String("compression", "none", "codec of produced batches: none, gzip, zstd, lz4 (produce)")
	batchSize := flags.Int("batch-size", 100, "records per batch (produce)")
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
	codec, knownCodec := codecs[*compression]
	bad := *bootstrap == "" || *topic == "" || flags.NArg() != 0 || *api != "batch" || !knownCodec ||
		*partition < 0 || *timeoutMs < 1 || *batchSize < 1 || *from < 0 || *count < 1 || (command == "group" && *group == "")
	if bad {
		flags.Usage()
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*timeoutMs)*time.Millisecond)
	c := newClient(*bootstrap, *topic)
	var err error
	switch command {
	case "produce":
		err = runProduce(ctx, c, int32(*partition), codec, *batchSize, *corrupt)
	case "consume":
		var records []record
		records, err = c.fetch(ctx, int32(*partition), *from, *count, false)
		for _, r := range records {
			fmt.Println(formatRecordLine(r))
		}
	case "group":
		err = runGroup(ctx, c, *group, *count)
	}
	c.close()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "brook-example-go: %s\n", describe(err))
		os.Exit(1)
	}
}

// runProduce reads record lines from stdin and produces them in batches of batchSize.
func runProduce(ctx context.Context, c *client, partition int32, codec brookv1.CompressionCodec, batchSize int, corrupt bool) error {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	var pending []record
	send := func() error {
		if len(pending) == 0 {
			return nil
		}
		batch, err := newBatch(pending, codec)
		if err != nil {
			return err
		}
		if corrupt {
			batch.Crc32C++ // any other value is wrong
		}
		answer, err := c.produce(ctx, partition, batch)
		if err != nil {
			return err
		}
		if answer.GetLastOffset() != answer.GetBaseOffset()+int64(len(pending))-1 {
			return fmt.Errorf("Produce: base offset %d and last offset %d for %d records",
				answer.GetBaseOffset(), answer.GetLastOffset(), len(pending))
		}
		fmt.Printf("produced\t%d\t%d\t%d\n", partition, answer.GetBaseOffset(), answer.GetLastOffset())
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
