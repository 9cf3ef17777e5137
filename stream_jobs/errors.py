"""Exceptions of the stream jobs."""

from __future__ import annotations

from iot_common.errors import PlatformError


class StreamJobError(PlatformError):
    """Root of everything the stream jobs raise on purpose."""


class LakeError(StreamJobError):
    """The archive storage cannot be read or written; check LAKE_URL and its credentials."""
