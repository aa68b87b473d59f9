"""The producer's own errors, each with a message a user can act on."""

from __future__ import annotations

from plumbing.errors import ConfigError, ProcessError


class ProducerError(ProcessError):
    """Base class of everything the producer raises on purpose at run time (a bad setting is a ConfigError)."""


class EvictionRisk(ConfigError):
    """Redis may evict our keys when memory is full, and exactly once would silently end with them."""


class ExchangeError(ProducerError):
    """The exchange did not give a usable answer for one request."""


class ExchangeUnavailable(ExchangeError):
    """Retries ran out on 429s, 5xx answers, timeouts or connection errors."""


class ExchangeRejected(ExchangeError):
    """A 4xx other than 429: our request is wrong, so retrying it would not help."""


class MalformedResponse(ExchangeError):
    """The answer was not the JSON shape the API documents; it is logged and counted, never published."""
