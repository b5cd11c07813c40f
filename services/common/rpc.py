"""The one place where servicer exceptions become gRPC statuses, and where every call is
counted and timed.

Servicers validate, call the core, and let `BrookError` propagate; `handle_errors`
turns it into a status with `google.rpc.ErrorInfo`. Anything else is a bug: it is
logged with its traceback and answered as INTERNAL without leaking internals.

Every Brook servicer method is wrapped by `handle_errors` / `handle_stream_errors`, so
they also record its metrics (services/common/metrics.py): `brook_rpc_requests_total`,
`brook_rpc_errors_total` by reason (the BrookError's; INTERNAL for a bug, CANCELLED
when the caller went away, the status code's name for a servicer's own abort),
`brook_rpc_duration_seconds` (unary), `brook_rpc_streams_open` and
`brook_rpc_stream_messages_total` (streams). The label children are bound when the
method is decorated, so a call costs two clock reads, an increment and an observation.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from brook.errors import BrookError
from brook.services.common import logs
from brook.services.common.metrics import RpcMetrics
from brook.services.common.principal import principal_of

log = logging.getLogger("brook.rpc")

T = TypeVar("T")
_perf_counter = time.perf_counter


def _aborted_reason(context: grpc.aio.ServicerContext) -> str:
    """The status code name of a call the servicer aborted itself."""
    try:
        code = context.code()
    except Exception:
        code = None
    return getattr(code, "name", None) or "ABORTED"


def _log_internal(method: Callable[..., Any], context: grpc.aio.ServicerContext) -> None:
    try:
        principal: str | None = str(principal_of(context))
    except Exception:
        principal = None
    log.exception("internal error in %s", method.__qualname__,
                  extra=logs.fields(principal=principal))


async def abort(context: grpc.aio.ServicerContext, error: BrookError) -> None:
    """Ends the call with `error` as a rich status (never returns)."""
    await context.abort_with_status(error.to_status())


def handle_errors(
    method: Callable[..., Awaitable[T]],
) -> Callable[..., Awaitable[T]]:
    """Decorates a unary servicer method: BrookError -> status; other exceptions -> INTERNAL."""
    rpc = RpcMetrics(method.__qualname__)

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        started = _perf_counter()
        rpc.requests.inc()
        try:
            return await method(self, request, context)
        except BrookError as error:
            rpc.error(str(error.reason))
            await abort(context, error)
            raise  # unreachable: abort raises
        except grpc.aio.AbortError:
            rpc.error(_aborted_reason(context))
            raise
        except NotImplementedError:
            rpc.error("UNIMPLEMENTED")
            raise
        except asyncio.CancelledError:
            rpc.error("CANCELLED")
            raise
        except Exception as error:
            rpc.error("INTERNAL")
            _log_internal(method, context)
            await abort(context, BrookError("INTERNAL", f"internal error: {type(error).__name__}"))
            raise
        finally:
            rpc.duration.observe(_perf_counter() - started)

    return wrapper


def handle_stream_errors(
    method: Callable[..., AsyncIterator[T]],
) -> Callable[..., AsyncIterator[T]]:
    """Like handle_errors, for server-streaming methods written as async generators."""
    rpc = RpcMetrics(method.__qualname__)

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[T]:
        rpc.requests.inc()
        rpc.streams.inc()
        try:
            async for item in method(self, request, context):
                rpc.messages.inc()
                yield item
        except BrookError as error:
            rpc.error(str(error.reason))
            await abort(context, error)
        except grpc.aio.AbortError:
            rpc.error(_aborted_reason(context))
            raise
        except (asyncio.CancelledError, GeneratorExit):
            rpc.error("CANCELLED")
            raise
        except Exception as error:
            rpc.error("INTERNAL")
            _log_internal(method, context)
            await abort(context, BrookError("INTERNAL", f"internal error: {type(error).__name__}"))
        finally:
            rpc.streams.dec()

    return wrapper
