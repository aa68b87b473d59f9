"""Errors raised when a stream entry cannot be read; consumers decide per type whether to skip or dead-letter."""

from __future__ import annotations


class EntryError(Exception):
    """Base class: this entry cannot be turned into an event."""


class MalformedEntry(EntryError):
    """A field is missing, or ``data`` is not valid JSON of the declared type."""


class UnknownEventType(EntryError):
    """A producer newer than this reader publishes an event type this reader does not know."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown event type {kind!r}")
        self.kind = kind


class UnsupportedVersion(EntryError):
    """The entry's schema version is newer than this reader understands."""

    def __init__(self, version: int, supported: int) -> None:
        super().__init__(f"schema version {version} is newer than the supported {supported}")
        self.version = version
        self.supported = supported


class UnpublishableEvent(ValueError):
    """An event with an amount or a time no reader could use: the producer must never write it to the stream."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"refusing to publish event {key[:200]!r}: {problem}")
        self.key = key
        self.problem = problem
