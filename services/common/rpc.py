"""The one place where servicer exceptions become gRPC statuses.

Servicers validate, call the core, and let `BrookError` propagate; `handle_errors`
turns it into a status with `google.rpc.ErrorInfo`. Anything else is a bug: it is
logged with its traceback and answered as INTERNAL without leaking internals.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from brook.errors import BrookError

log = logging.getLogger("brook.rpc")

T = TypeVar("T")


async def abort(context: grpc.aio.ServicerContext, error: BrookError) -> None:
    """Ends the call with `error` as a rich status (never returns)."""
    await context.abort_with_status(error.to_status())


def handle_errors(
    method: Callable[..., Awaitable[T]],
) -> Callable[..., Awaitable[T]]:
    """Decorates a unary servicer method: BrookError -> status; other exceptions -> INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await method(self, request, context)
        except BrookError as error:
            await abort(context, error)
            raise  # unreachable: abort raises
        except (grpc.aio.AbortError, NotImplementedError):
            raise
        except Exception as error:
            log.exception("internal error in %s", method.__qualname__)
            await abort(context, BrookError("INTERNAL", f"internal error: {type(error).__name__}"))
            raise

    return wrapper


def handle_stream_errors(
    method: Callable[..., AsyncIterator[T]],
) -> Callable[..., AsyncIterator[T]]:
    """Like handle_errors, for server-streaming methods written as async generators."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[T]:
        try:
            async for item in method(self, request, context):
                yield item
        except BrookError as error:
            await abort(context, error)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            log.exception("internal error in %s", method.__qualname__)
            await abort(context, BrookError("INTERNAL", f"internal error: {type(error).__name__}"))

    return wrapper
