"""Prometheus metrics of the central server: in-process counters plus gauges read from central.db.

Counters (reset when the process restarts, as Prometheus expects): objects received by kind and
outcome (including ``duplicate``, ``malformed`` and ``ignored``), bytes received, verification
failures by reason, enrollments by outcome. Gauges: objects stored by kind and status, stored
bytes, TPS/election slots in conflict, log length, blobs held.
"""

from __future__ import annotations

from collections import Counter

from .db import CentralDB

PREFIX = "estafet_central"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Stats:
    """Counters kept in memory by :class:`~.ingest.Central`."""

    def __init__(self) -> None:
        self._received: Counter[tuple[str, str]] = Counter()
        self._failures: Counter[str] = Counter()
        self._enroll: Counter[str] = Counter()
        self.bytes = 0
        self.duplicates = 0

    def received(self, kind: str, status: str) -> None:
        self._received[kind, status] += 1

    def failed(self, reason: str) -> None:
        self._failures[reason] += 1

    def enrolled(self, outcome: str) -> None:
        self._enroll[outcome] += 1

    def render(self, db: CentralDB) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_: str, samples: list[tuple[str, int]]) -> None:
            out.append(f"# HELP {PREFIX}_{name} {help_}")
            out.append(f"# TYPE {PREFIX}_{name} {kind}")
            out.extend(f"{PREFIX}_{name}{labels} {value}" for labels, value in samples)

        family(
            "objects_received_total",
            "counter",
            "Objects pushed to ingest, by kind and outcome.",
            [
                (f'{{kind="{_label(k)}",status="{_label(s)}"}}', n)
                for (k, s), n in sorted(self._received.items())
            ],
        )
        family("bytes_received_total", "counter", "Bytes pushed to ingest.", [("", self.bytes)])
        family(
            "verification_failures_total",
            "counter",
            "Objects that failed verification.",
            [(f'{{reason="{_label(r)}"}}', n) for r, n in sorted(self._failures.items())],
        )
        family(
            "enrollments_total",
            "counter",
            "Enrollment requests by outcome.",
            [(f'{{outcome="{_label(o)}"}}', n) for o, n in sorted(self._enroll.items())],
        )
        counts = db.object_counts()
        family(
            "objects_stored",
            "gauge",
            "Objects held, by kind and status.",
            [
                (
                    f'{{kind="{_label(r["kind"] or "unknown")}",status="{_label(r["status"])}"}}',
                    int(r["n"]),
                )
                for r in counts
            ],
        )
        family(
            "bytes_stored",
            "gauge",
            "Bytes of objects held.",
            [("", sum(int(r["bytes"] or 0) for r in counts))],
        )
        slots = {(r["tps"], r["election"]) for r in db.results_with("conflict")}
        family("conflicts", "gauge", "TPS/election slots in conflict.", [("", len(slots))])
        family("log_length", "gauge", "Entries in the ingest log.", [("", db.log_head()[0])])
        family("blobs_stored", "gauge", "Photo blobs held.", [("", db.blob_count())])
        return "\n".join(out) + "\n"
