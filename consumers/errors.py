"""The consumers' own errors, each with a message that says what to change."""

from __future__ import annotations

from plumbing.errors import ConfigError, ProcessError


class ConsumerError(ProcessError):
    """Base class of everything the consumers raise on purpose at run time (a bad setting is a ConfigError)."""


class SocketTimeoutTooShort(ConfigError):
    """The Redis client would time out a blocking read before Redis answers it.

    A blocked XREADGROUP that hits the client's socket timeout is abandoned client-side and the connection is
    reset; every idle period would then look like a network failure.
    """

    def __init__(self, socket_timeout: float, block_ms: int) -> None:
        super().__init__(
            f"the Redis client's socket_timeout ({socket_timeout:g} s) must be longer than the read block "
            f"({block_ms} ms): create the client with socket_timeout of at least {block_ms / 1000 + 5:g} s "
            "(consumers.connect does this), or lower --block-ms / LIQ_BLOCK_MS"
        )
        self.socket_timeout = socket_timeout
        self.block_ms = block_ms


class WindowTooLong(ConsumerError, ValueError):
    """A rolling window longer than the totals keep buckets for was asked for."""

    def __init__(self, seconds: float, horizon: int) -> None:
        super().__init__(
            f"rolling windows cover at most {horizon} s, not {seconds:g} s: ask for a shorter window, "
            "or read the all-time totals from statistics()"
        )
        self.seconds = seconds
        self.horizon = horizon


class SinkError(ConsumerError):
    """An alert sink did not take the alert; the message never contains the sink's secret URL or token."""

    def __init__(self, sink: str, detail: str, *, retry_after: float | None = None, permanent: bool = False) -> None:
        super().__init__(f"{sink}: {detail}")
        self.sink = sink
        self.retry_after = retry_after
        """Seconds the service asked us to wait before the next attempt, if it said."""
        self.permanent = permanent
        """The request itself is wrong (bad token, unknown chat): retrying now cannot help."""


class AlertNotDelivered(ConsumerError):
    """Every attempt at a sink failed; the entry stays pending and is retried later."""


class AlertInFlight(ConsumerError):
    """Another delivery of the same event is sending this alert right now (or died doing it, until its claim expires).

    Raised so that the entry stays pending: it is retried after the other delivery has either finished (then the
    alert is not sent again) or its claim has expired (then this one sends it).
    """
