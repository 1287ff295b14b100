"""The exception tree of :mod:`estafet.protocol`, and the root of every library error.

::

    EstafetError                  root of every error the library raises (the CLI translates it)
    ├── ProtocolError             anything protocol/ refuses
    │   ├── DecodeError           untrusted bytes that are malformed, oversized or non-canonical
    │   │   └── BudgetError       more elements or deeper nesting than the budget (refused before
    │   │                         anything is built)
    │   ├── SchemaError           well-formed bytes whose content has the wrong shape
    │   ├── FormError             a result form that breaks hard rules (carries the violations)
    │   ├── ManifestError         an election manifest that cannot be used
    │   └── ReconcileError        a malformed or hostile reconciliation message (reconcile.py)
    ├── CryptoError               see estafet.crypto.errors
    ├── RelayError                see estafet.relay.errors
    └── CentralError              see estafet.central.errors

Every layer imports downward, so the root lives here, at the bottom.

Errors carry fields so callers can show or log them without parsing messages.
"""

from __future__ import annotations

from dataclasses import dataclass


class EstafetError(Exception):
    """Root of every error raised by the estafet library."""


class ProtocolError(EstafetError):
    """Root of every error raised by :mod:`estafet.protocol`."""


class DecodeError(ProtocolError):
    """Bytes from outside could not be decoded within limits, or were not canonical."""


class BudgetError(DecodeError):
    """Untrusted bytes hold more elements, or nest deeper, than the decoding budget allows.

    Raised by a scan of the bytes before any value is built, so refusing a hostile body costs
    time proportional to the budget, not to the body, and no memory."""

    def __init__(self, message: str, *, elements: int, depth: int) -> None:
        super().__init__(message)
        self.elements = elements
        self.depth = depth


class SchemaError(ProtocolError):
    """Decoded content does not have the shape its kind requires."""


class ManifestError(ProtocolError):
    """The election manifest is malformed or inconsistent."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: ``rule`` is a stable name (see docs/rules.md), ``message`` explains."""

    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


class FormError(ProtocolError):
    """A result form breaks one or more hard rules; nothing may be signed."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(str(v) for v in self.violations))

    @property
    def rules(self) -> list[str]:
        return [v.rule for v in self.violations]
