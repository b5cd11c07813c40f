package dev.brook.example;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.rpc.ErrorInfo;
import dev.brook.v1.PartitionError;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * One failure, in the API's one vocabulary: a google.rpc.ErrorInfo (reason, domain
 * "brook.v1", metadata with "retriable" and "refresh_metadata") with a canonical gRPC code and
 * a message. A failed call carries it in its status details (read with {@link StatusProto});
 * a PartitionError inside a response carries the same ErrorInfo in error_info. Both become a
 * BrookException, printed and retried one way.
 */
final class BrookException extends Exception {
  /**
   * Reasons that guarantee nothing was appended: safe to retry after a metadata refresh.
   * NOT_ENOUGH_REPLICAS_AFTER_APPEND and REQUEST_TIMED_OUT are retriable too (ErrorInfo
   * metadata retriable=true), but the batch may be in the log already; retrying them may
   * duplicate records, so they are reported. Reads use the same set.
   */
  static final Set<String> SAFE_TO_RETRY = Set.of(
      "NOT_LEADER", "LEADER_NOT_AVAILABLE", "NOT_LEADER_OR_FOLLOWER", "FENCED_LEADER_EPOCH",
      "UNKNOWN_LEADER_EPOCH", "NOT_ENOUGH_REPLICAS", "TOO_MANY_REQUESTS", "STORAGE_ERROR",
      "NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE", "REASSIGNMENT_IN_PROGRESS",
      "ELIGIBLE_LEADERS_NOT_AVAILABLE");

  final Status.Code code;
  final String grpcMessage;
  /** Null for a transport failure (the call failed below Brook). */
  final ErrorInfo info;
  /** The other status details: the whole response when every partition failed. */
  private final List<Any> details;

  private BrookException(String what, Status.Code code, String message, ErrorInfo info, List<Any> details,
      Throwable cause) {
    super(format(what, code, message, info), cause);
    this.code = code;
    this.grpcMessage = message;
    this.info = info;
    this.details = details;
  }

  /** Every example prints a failure this way, whichever channel it came from. */
  static String format(String what, Status.Code code, String message, ErrorInfo info) {
    String quoted = "\"" + (message == null ? "" : message) + "\"";
    if (info == null) {
      return what + ": code=" + code + " message=" + quoted + " (no ErrorInfo: transport failure)";
    }
    return what + ": reason=" + info.getReason() + " code=" + code + " message=" + quoted + " domain="
        + info.getDomain() + " metadata=" + formatMetadata(info.getMetadataMap());
  }

  static String formatMetadata(Map<String, String> metadata) {
    List<String> parts = new ArrayList<>();
    new TreeMap<>(metadata).forEach((key, value) -> parts.add(key + "=" + value));
    return "{" + String.join(",", parts) + "}";
  }

  /** A failed call as a BrookException. */
  static BrookException fromCall(String what, StatusRuntimeException error) {
    ErrorInfo info = null;
    List<Any> others = new ArrayList<>();
    com.google.rpc.Status status = StatusProto.fromThrowable(error);
    if (status != null) {
      for (Any detail : status.getDetailsList()) {
        if (info == null && detail.is(ErrorInfo.class)) {
          try {
            info = detail.unpack(ErrorInfo.class);
            continue;
          } catch (InvalidProtocolBufferException e) {
            // kept with the other details
          }
        }
        others.add(detail);
      }
    }
    return new BrookException(what, error.getStatus().getCode(), error.getStatus().getDescription(), info, others,
        error);
  }

  /**
   * A PartitionError as a BrookException, or null when unset. It reads error_info; the typed
   * fields are the fallback for a server that does not send it.
   */
  static BrookException fromPartition(String what, PartitionError pe) {
    ErrorInfo info = pe.getErrorInfo();
    if (info.getReason().isEmpty()) {
      info = ErrorInfo.newBuilder()
          .setReason(pe.getReason().name().replaceFirst("^ERROR_REASON_", ""))
          .setDomain("brook.v1")
          .putAllMetadata(pe.getMetadataMap())
          .putMetadata("retriable", Boolean.toString(pe.getRetriable()))
          .putMetadata("refresh_metadata", Boolean.toString(pe.getRefreshMetadata()))
          .build();
    }
    return new BrookException(what, Status.fromCodeValue(pe.getCode()).getCode(), pe.getMessage(), info, List.of(),
        null);
  }

  /** The ErrorInfo reason ("NOT_LEADER"), or "" for a transport failure. */
  String reason() {
    return info == null ? "" : info.getReason();
  }

  /** A reason safe to retry, or a transport failure that is UNAVAILABLE (the node is down). */
  boolean retriable() {
    return info == null ? code == Status.Code.UNAVAILABLE : SAFE_TO_RETRY.contains(info.getReason());
  }

  /**
   * The response of type {@code type} carried in the status details of a call whose every
   * partition failed (the first failure's status, with the whole response), or null.
   */
  <T extends Message> T carried(Class<T> type) {
    for (Any detail : details) {
      if (detail.is(type)) {
        try {
          return detail.unpack(type);
        } catch (InvalidProtocolBufferException e) {
          return null;
        }
      }
    }
    return null;
  }

  /** For stderr: a Brook failure in the one format, any other error by its message. */
  static String describe(Throwable error) {
    if (error instanceof StatusRuntimeException call) {
      return fromCall("call", call).getMessage();
    }
    return String.valueOf(error.getMessage());
  }
}
