"""Per-source counters: rows read, records kept, drops by reason, redactions, fatal error."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceStats:
    """What happened to one source. ``read`` counts raw rows; kept/dropped count records.

    For most adapters one row is one record; oasst2 builds one thread record from many message
    rows, so there ``read`` is larger than ``kept`` plus ``dropped``.
    """

    name: str
    uri: str
    kind: str
    adapter: str
    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    redacted: Counter[str] = field(default_factory=Counter)
    # Records kept by a rule rather than a check (language_undecided), counted at cleaning.
    notes: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    capped: bool = False

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uri": self.uri,
            "kind": self.kind,
            "adapter": self.adapter,
            "read": self.read,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_total": sum(self.dropped.values()),
            "redacted": dict(sorted(self.redacted.items())),
            "notes": dict(sorted(self.notes.items())),
            "error": self.error,
            "capped": self.capped,
        }
