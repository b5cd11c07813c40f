package main

// Errors, in the API's one vocabulary: a google.rpc.ErrorInfo (reason, domain "brook.v1",
// metadata with "retriable" and "refresh_metadata") with a canonical gRPC code and a
// message. A failed call carries it in its status details; a PartitionError inside a
// response carries the same ErrorInfo in error_info. Both become a *brookError, printed
// and retried by one set of functions.

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	brookv1 "github.com/brook-log/brook/examples/go/gen/brook/v1"
)

// Reasons that guarantee nothing was appended, so a produce may be retried without
// duplicating records (after a metadata refresh). NOT_ENOUGH_REPLICAS_AFTER_APPEND and
// REQUEST_TIMED_OUT are retriable too (ErrorInfo metadata retriable=true), but the batch
// may already be in the log: retrying them can duplicate records, so this client reports
// them instead. Reads use the same set.
var safeToRetry = map[string]bool{
	"NOT_LEADER":                     true,
	"LEADER_NOT_AVAILABLE":           true,
	"NOT_LEADER_OR_FOLLOWER":         true,
	"FENCED_LEADER_EPOCH":            true,
	"UNKNOWN_LEADER_EPOCH":           true,
	"NOT_ENOUGH_REPLICAS":            true,
	"TOO_MANY_REQUESTS":              true,
	"STORAGE_ERROR":                  true,
	"NOT_COORDINATOR":                true,
	"COORDINATOR_NOT_AVAILABLE":      true,
	"REASSIGNMENT_IN_PROGRESS":       true,
	"ELIGIBLE_LEADERS_NOT_AVAILABLE": true,
}

// brookError is one failure: what was being done, the canonical code, the message and
// the ErrorInfo (nil for a transport failure: the call failed below Brook).
type brookError struct {
	what    string
	code    codes.Code
	message string
	info    *errdetails.ErrorInfo
	// details are the other messages of a failed call's status details: the whole
	// response (ProduceResponse, FetchResponse, ...) when every partition failed.
	details []any
}

// Error prints the failure as every example does, whichever channel it came from; the
// code by its google.rpc.Code name (FAILED_PRECONDITION).
func (e *brookError) Error() string {
	codeName := code.Code(e.code).String()
	if e.info == nil {
		return fmt.Sprintf("%s: code=%s message=%q (no ErrorInfo: transport failure)", e.what, codeName, e.message)
	}
	return fmt.Sprintf("%s: reason=%s code=%s message=%q domain=%s metadata=%s",
		e.what, e.info.GetReason(), codeName, e.message, e.info.GetDomain(), formatMetadata(e.info.GetMetadata()))
}

// reason is the ErrorInfo reason ("NOT_LEADER"), or "" for a transport failure.
func (e *brookError) reason() string { return e.info.GetReason() }

// retriable: a reason that is safe to retry, or a transport failure that is UNAVAILABLE
// (the node is down or restarting).
func (e *brookError) retriable() bool {
	if e.info == nil {
		return e.code == codes.Unavailable
	}
	return safeToRetry[e.info.GetReason()]
}

// fromCall turns a failed call into a *brookError (nil when err is nil); an error that is
// not a gRPC status is wrapped as it is.
func fromCall(what string, err error) error {
	if err == nil {
		return nil
	}
	var withStatus interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &withStatus) {
		return fmt.Errorf("%s: %w", what, err)
	}
	st := withStatus.GRPCStatus()
	out := &brookError{what: what, code: st.Code(), message: st.Message()}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && out.info == nil {
			out.info = info
		} else {
			out.details = append(out.details, detail)
		}
	}
	return out
}

// fromPartition turns a PartitionError into a *brookError (nil when pe is nil). It reads
// error_info, the same ErrorInfo a failed call carries; the typed fields are the fallback
// for a server that does not send it.
func fromPartition(what string, pe *brookv1.PartitionError) *brookError {
	if pe == nil {
		return nil
	}
	info := pe.GetErrorInfo()
	if info.GetReason() == "" {
		metadata := map[string]string{
			"retriable":        fmt.Sprint(pe.GetRetriable()),
			"refresh_metadata": fmt.Sprint(pe.GetRefreshMetadata()),
		}
		for key, value := range pe.GetMetadata() {
			metadata[key] = value
		}
		info = &errdetails.ErrorInfo{
			Reason:   strings.TrimPrefix(pe.GetReason().String(), "ERROR_REASON_"),
			Domain:   "brook.v1",
			Metadata: metadata,
		}
	}
	return &brookError{what: what, code: codes.Code(pe.GetCode()), message: pe.GetMessage(), info: info}
}

// carried returns the response of type T a failed call holds in its status details: a
// multi-partition call whose every partition failed fails with the first failure's
// status and the whole response beside its ErrorInfo.
func carried[T proto.Message](err error) (T, bool) {
	var zero T
	var be *brookError
	if !errors.As(err, &be) {
		return zero, false
	}
	for _, detail := range be.details {
		if response, ok := detail.(T); ok {
			return response, true
		}
	}
	return zero, false
}

// retriable says whether an error may be retried (see brookError.retriable).
func retriable(err error) bool {
	var be *brookError
	return errors.As(err, &be) && be.retriable()
}

func formatMetadata(metadata map[string]string) string {
	keys := make([]string, 0, len(metadata))
	for key := range metadata {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, key := range keys {
		parts = append(parts, key+"="+metadata[key])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// describe renders an error for stderr. Every Brook failure, from a failed call or from
// a PartitionError, prints as "WHAT: reason=R code=C message=M domain=D metadata={...}".
func describe(err error) string {
	var be *brookError
	if !errors.As(err, &be) { // a gRPC status no call site wrapped: same format
		if wrapped, ok := fromCall("call", err).(*brookError); ok {
			return wrapped.Error()
		}
	}
	return err.Error()
}
