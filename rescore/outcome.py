"""What happened to one scanned item: the unit a worker hands to the writer.

An :class:`Outcome` is ``scored`` (with the :class:`~detector.results.ImageResult`),
``known`` (this model already scored the same bytes) or ``unreadable`` (a reason). Local
worker processes return outcomes as they are (pickled); on Ray they travel as flat rows
(:meth:`Outcome.to_row`), the result as its stored payload (``ImageResult.payload()``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from detector.results import ImageResult
from rescore.scan import split_flight
from storage.archive import FileRecord

SCORED, KNOWN, UNREADABLE = "scored", "known", "unreadable"

#: reasons in the bytes themselves (the decoder's): an unchanged file is not retried
DECODE_REASONS = ("empty", "not_image", "truncated", "corrupt", "too_large")

#: columns of :meth:`Outcome.to_row`
ROW_FIELDS = (
    "source",
    "flight",
    "fingerprint",
    "status",
    "sha256",
    "payload",
    "size_bytes",
    "error_reason",
    "error",
)


@dataclass(slots=True)
class Outcome:
    source: str
    flight: str
    fingerprint: str
    status: str
    sha256: str | None = None
    result: ImageResult | None = None  # scored: the result, in context (source, site, flight)
    size_bytes: int = 0
    error_reason: str | None = None
    error: str | None = None

    def file_record(self) -> FileRecord:
        """The item's row in the archive index."""
        bad = self.status == UNREADABLE
        return FileRecord(
            self.source,
            self.flight,
            self.fingerprint,
            self.sha256,
            self.error_reason if bad else None,
            self.error if bad else None,
        )

    def copy_for(self, source: str, flight: str, fingerprint: str, sha256: str) -> Outcome:
        """The outcome of another file with the same bytes (not scored again): known when
        this one has a result, else unreadable for the same reason."""
        if self.status in (SCORED, KNOWN):
            return Outcome(source, flight, fingerprint, KNOWN, sha256, size_bytes=self.size_bytes)
        return Outcome(
            source,
            flight,
            fingerprint,
            UNREADABLE,
            sha256,
            size_bytes=self.size_bytes,
            error_reason=self.error_reason,
            error=self.error,
        )

    def to_row(self) -> dict[str, Any]:
        """Flat, null-free columns (for Ray Data / Arrow)."""
        payload = json.dumps(self.result.payload(), separators=(",", ":")) if self.result is not None else ""
        row = {
            "source": self.source,
            "flight": self.flight,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "sha256": self.sha256,
            "payload": payload,
            "size_bytes": self.size_bytes,
            "error_reason": self.error_reason,
            "error": self.error,
        }
        return {k: ("" if v is None else v) for k, v in row.items()}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Outcome:
        def s(k: str) -> str | None:
            v = row.get(k)
            return None if v is None or v == "" else str(v)

        source, flight, payload = str(row["source"]), str(row["flight"]), s("payload")
        site, _ = split_flight(flight)
        result = (
            ImageResult.from_payload(json.loads(payload), source=source, site=site, flight=flight) if payload else None
        )
        return cls(
            source=source,
            flight=flight,
            fingerprint=str(row["fingerprint"]),
            status=str(row["status"]),
            sha256=s("sha256"),
            result=result,
            size_bytes=int(row.get("size_bytes") or 0),
            error_reason=s("error_reason"),
            error=s("error"),
        )
