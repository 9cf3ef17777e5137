"""Exceptions of the stream jobs."""

from __future__ import annotations


class StreamJobError(Exception):
    """Root of everything the stream jobs raise on purpose."""


class LakeError(StreamJobError):
    """The archive storage cannot be read or written; check LAKE_URL and its credentials."""
