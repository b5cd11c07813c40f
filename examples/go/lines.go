package main

// The line format shared by the Go, Node and Java examples (see ../README.md): one
// tab-separated line per record, bytes in lowercase hex so any byte survives.
//
//	input of produce:  TIMESTAMP_MS KEY VALUE HEADERS
//	output of reads:   record PARTITION OFFSET TIMESTAMP_MS KEY VALUE HEADERS
//
// KEY is "-" for a record without a key (has_key false) and hex otherwise, so an empty
// key is an empty field. HEADERS is "-" for none, else NAME=VALUE pairs joined by ","
// with NAME the hex of the header name's UTF-8 bytes and VALUE the hex of its value.

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// header is one record header; name is a protobuf string (valid UTF-8).
type header struct {
	name  string
	value []byte
}

// record is one record as this client sends or reads it.
type record struct {
	partition   int32
	offset      int64
	timestampMs int64
	key         []byte // nil when hasKey is false
	hasKey      bool
	value       []byte
	headers     []header
	// leaderEpoch is the epoch of the leader that appended the record, when the read
	// said (not printed; a group commits it with the offset). nil: unknown.
	leaderEpoch *int32
}

// parseInputLine reads "TIMESTAMP_MS KEY VALUE HEADERS" (tab-separated).
func parseInputLine(line string) (record, error) {
	fields := strings.Split(line, "\t")
	if len(fields) != 4 {
		return record{}, fmt.Errorf("want 4 tab-separated fields (timestamp key value headers), got %d", len(fields))
	}
	timestamp, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil || timestamp < 0 {
		return record{}, fmt.Errorf("timestamp %q: want a non-negative integer", fields[0])
	}
	r := record{timestampMs: timestamp}
	if fields[1] != "-" {
		if r.key, err = hex.DecodeString(fields[1]); err != nil {
			return record{}, fmt.Errorf("key: %w", err)
		}
		if r.key == nil {
			r.key = []byte{}
		}
		r.hasKey = true
	}
	if r.value, err = hex.DecodeString(fields[2]); err != nil {
		return record{}, fmt.Errorf("value: %w", err)
	}
	if fields[3] != "-" {
		for _, pair := range strings.Split(fields[3], ",") {
			name, value, found := strings.Cut(pair, "=")
			if !found {
				return record{}, fmt.Errorf("header %q: want HEXNAME=HEXVALUE", pair)
			}
			nameBytes, err := hex.DecodeString(name)
			if err != nil || !utf8.Valid(nameBytes) {
				return record{}, fmt.Errorf("header name %q: want the hex of UTF-8 text", name)
			}
			valueBytes, err := hex.DecodeString(value)
			if err != nil {
				return record{}, fmt.Errorf("header value %q: %w", value, err)
			}
			r.headers = append(r.headers, header{name: string(nameBytes), value: valueBytes})
		}
	}
	return r, nil
}

// formatRecordLine writes "record PARTITION OFFSET TIMESTAMP_MS KEY VALUE HEADERS".
func formatRecordLine(r record) string {
	key := "-"
	if r.hasKey {
		key = hex.EncodeToString(r.key)
	}
	headers := "-"
	if len(r.headers) > 0 {
		parts := make([]string, len(r.headers))
		for i, h := range r.headers {
			parts[i] = hex.EncodeToString([]byte(h.name)) + "=" + hex.EncodeToString(h.value)
		}
		headers = strings.Join(parts, ",")
	}
	return strings.Join([]string{
		"record",
		strconv.FormatInt(int64(r.partition), 10),
		strconv.FormatInt(r.offset, 10),
		strconv.FormatInt(r.timestampMs, 10),
		key,
		hex.EncodeToString(r.value),
		headers,
	}, "\t")
}
