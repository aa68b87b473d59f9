"""The root of the errors our processes raise on purpose, and the one type every process uses for a bad setting.

The process runner (:mod:`plumbing.process`) turns a :class:`ConfigError` into exit code 2 and any other
:class:`ProcessError` into exit code 1, each as one line; so the producer's and the consumers' own error roots
subclass :class:`ProcessError`, and a bad setting is the same type whichever process finds it.
"""

from __future__ import annotations


class ProcessError(Exception):
    """Base class of everything our processes raise on purpose; the message says what to do about it."""


class ConfigError(ProcessError, ValueError):
    """A setting is missing or malformed; the message names the flag and the environment variable."""


class MetricsUnavailable(ProcessError):
    """The metrics server could not listen where it was told to (port taken, address not on this host)."""

    def __init__(self, host: str, port: int, reason: OSError) -> None:
        super().__init__(
            f"cannot serve metrics on {host}:{port} ({reason.strerror or reason}): choose a free port with "
            "--metrics-port / METRICS_PORT, an address of this host with --metrics-host / METRICS_HOST, or 0 to "
            "serve no metrics"
        )
        self.host = host
        self.port = port
