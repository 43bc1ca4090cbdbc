"""A span made current for a block and ended after it, for the spans made on every call or
event (module servers' SERVER spans, events' PRODUCER and CONSUMER spans).

What OpenTelemetry's `start_as_current_span` does, without its two generator-based context
managers (`_agnosticcontextmanager` around `use_span`), which cost more than the span's own
bookkeeping when a trivial call or event makes one (py-spy of bench/tracing.py's module).
"""

from __future__ import annotations

from contextvars import Token
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import Span, Status, StatusCode


class active:  # lower case: used as a function, `with active(span):`
    """Make `span` current until the block ends, then end it.

    Args:
        span: A span just started (`Tracer.start_span`).
        fail_on_exception: Record an exception that escapes the block on the span and mark
            it failed, as `start_as_current_span` does; False leaves the status to the caller.
    """

    __slots__ = ("_fail_on_exception", "_span", "_token")

    def __init__(self, span: Span, *, fail_on_exception: bool = True) -> None:
        self._span = span
        self._fail_on_exception = fail_on_exception
        self._token: Token[OtelContext] | None = None

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if error is not None and self._fail_on_exception and self._span.is_recording():
                self._span.record_exception(error)
                self._span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
            self._span.end()
