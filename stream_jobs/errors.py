"""Exceptions of the stream jobs."""

from __future__ import annotations

from iot_common.errors import PlatformError


class StreamJobError(PlatformError):
    """Root of everything the stream jobs raise on purpose."""


class LakeError(StreamJobError):
    """The archive storage cannot be read or written; check LAKE_URL and its credentials."""


class Fenced(StreamJobError):
    """A commit refused because the table no longer holds what it was based on: another
    member of the consumer group claimed the partitions it writes (stream_jobs.checkpoint).
    Nothing of it landed; the job drops what it holds of them and rejoins the group."""
