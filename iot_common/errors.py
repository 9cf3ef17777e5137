"""The platform's exception root, and the contract's rejection that every stage shares."""

from __future__ import annotations


class PlatformError(Exception):
    """Root of everything our services raise on purpose."""


class InvalidReading(PlatformError):
    """A payload that breaks the reading contract; `code` is stable, `detail` says why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}"


def reason_code(reason: str) -> str:
    """A dead letter's reason, '<code>: <detail>' (`InvalidReading.reason`, or the
    bridge's own), -> its code."""
    return reason.split(":", 1)[0].strip()
