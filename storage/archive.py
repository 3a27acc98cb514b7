"""The archive index: what the re-scorer (``pvwind rescore``) keeps beside the shared results.

Images and results go into the shared tables through the one result-to-row function
(:func:`storage.store.result_row`): ``images`` (one row per content hash, ``source`` =
where the re-scorer first found it) and ``results`` (unique on ``(image_sha256,
model_version)``). The re-scorer's own tables (:mod:`storage.tables`):

- ``rescore_files``: one row per source (path or archive member): its fingerprint, content
  hash and, for a file that could not be scored, the reason. A re-run skips an unchanged,
  already scored file without reading it.
- ``rescore_runs``: one row per run (model key, archives, counts, timings, status). A run
  records its owner process (host, boot, pid, start time) in ``stats``; a later run marks
  a ``running`` row whose process is gone as ``interrupted`` (:meth:`ArchiveIndex.close_abandoned_runs`).

Every batch is written in ONE transaction with idempotent inserts, so a process killed at
any point leaves whole batches only, and a re-run never records an image twice for a model.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from detector.results import ImageResult
from storage.database import QUERY_CHUNK, insert_ignore
from storage.store import Store, result_row
from storage.tables import Image, RescoreFile, RescoreRun, Result, utcnow

MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "BMP": "image/bmp", "WEBP": "image/webp"}


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One row of the file index: a source, its flight folder, its fingerprint, its content
    hash (None: the bytes could not be read) and, for a file that could not be scored, why."""

    source: str
    flight: str
    fingerprint: str
    sha256: str | None = None
    error_reason: str | None = None
    error: str | None = None


def media_type(fmt: str | None) -> str:
    return MEDIA_TYPES.get((fmt or "").upper(), "application/octet-stream")


# -- the owner of a run ----------------------------------------------------------------------
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), to tell a reused pid from the owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def this_process() -> dict[str, Any]:
    """The identity a run row records for its owner."""
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid(), "started": _start_ticks(os.getpid())}


def process_gone(owner: dict[str, Any] | None) -> bool:
    """True when the process ``owner`` names certainly no longer runs: it ran on this host and
    the host was rebooted since, or its pid is free or now belongs to a process started later.
    A row without an owner predates owner records and counts as gone. A process of another
    host cannot be checked from here: never gone."""
    if not owner:
        return True
    if owner.get("host") != socket.gethostname():
        return False
    if owner.get("boot") and _boot_id() and owner["boot"] != _boot_id():
        return True
    pid = int(owner.get("pid") or 0)
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    started = owner.get("started")
    return started is not None and _start_ticks(pid) not in (None, started)


class ArchiveIndex:
    """The re-scorer's file index and run log, beside the images and results of a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def url(self) -> str:
        """The store's URL, password included (for worker connections; show it with ``shown_url``)."""
        return self.store.engine.url.render_as_string(hide_password=False)

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ reads
    def files(self, sources: Iterable[str]) -> dict[str, FileRecord]:
        """The index rows of these sources (absent: never seen)."""
        out: dict[str, FileRecord] = {}
        srcs = list(sources)
        with self.store.session() as s:
            for i in range(0, len(srcs), QUERY_CHUNK):
                q = select(
                    RescoreFile.source,
                    RescoreFile.flight,
                    RescoreFile.fingerprint,
                    RescoreFile.image_sha256,
                    RescoreFile.error_reason,
                    RescoreFile.error,
                ).where(RescoreFile.source.in_(srcs[i : i + QUERY_CHUNK]))
                for row in s.execute(q):
                    out[row[0]] = FileRecord(*row)
        return out

    # ----------------------------------------------------------------- writes
    def write(self, files: Sequence[FileRecord], results: Sequence[ImageResult], model_key: str) -> None:
        """File-index rows, and the images and results of the scored ones (each result's
        ``source`` names where its image was found), in one transaction."""
        if not files and not results:
            return
        now = utcnow()
        images: dict[str, dict[str, Any]] = {}
        rows: dict[str, dict[str, Any]] = {}
        for r in results:
            if not r.ok or not r.sha256:
                raise ValueError(f"{r.source}: only scored results with a content hash are stored")
            images.setdefault(
                r.sha256,
                {
                    "sha256": r.sha256,
                    "media_type": media_type(r.image.format if r.image else None),
                    "size_bytes": r.bytes or 0,
                    "width": r.width,
                    "height": r.height,
                    "source": r.source or None,
                    "created_at": now,
                },
            )
            rows.setdefault(r.sha256, result_row(r.sha256, model_key, r))
        index = {
            f.source: {
                "source": f.source,
                "flight": f.flight,
                "fingerprint": f.fingerprint,
                "image_sha256": f.sha256,
                "error_reason": f.error_reason,
                "error": f.error,
                "updated_at": now,
            }
            for f in files
        }
        # tables in one order in every batch (and rows in key order, insert_ignore): concurrent
        # writers of the same images never wait for each other in a cycle
        with self.store.session() as s, s.begin():
            insert_ignore(s, Image, list(images.values()), ["sha256"])
            insert_ignore(s, Result, list(rows.values()), ["image_sha256", "model_version"])
            insert_ignore(
                s,
                RescoreFile,
                list(index.values()),
                ["source"],
                ("flight", "fingerprint", "image_sha256", "error_reason", "error", "updated_at"),
            )

    # ------------------------------------------------------------------- runs
    def close_abandoned_runs(self) -> int:
        """Mark ``running`` runs whose process is gone (killed, machine rebooted) as
        ``interrupted``; returns how many. Runs of a live process, or of another host, stay."""
        with self.store.session() as s, s.begin():
            running = s.execute(select(RescoreRun.id, RescoreRun.stats).where(RescoreRun.status == "running")).all()
            gone = [rid for rid, stats in running if process_gone((stats or {}).get("owner"))]
            if gone:
                s.execute(
                    update(RescoreRun)
                    .where(RescoreRun.id.in_(gone), RescoreRun.status == "running")
                    .values(status="interrupted")
                )
            return len(gone)

    def start_run(self, model_key: str, mode: str, archives: list[str], found: int, skipped: int) -> int:
        with self.store.session() as s, s.begin():
            run = RescoreRun(
                model_version=model_key,
                mode=mode,
                archives={"paths": archives},
                status="running",
                found=found,
                skipped=skipped,
                stats={"owner": this_process()},
                started_at=utcnow(),
            )
            s.add(run)
            s.flush()
            return int(run.id)

    def finish_run(self, run_id: int, status: str, scored: int, unreadable: int, stats: dict[str, Any]) -> None:
        with self.store.session() as s, s.begin():
            s.execute(
                update(RescoreRun)
                .where(RescoreRun.id == run_id)
                .values(
                    status=status,
                    scored=scored,
                    unreadable=unreadable,
                    stats={**stats, "owner": this_process()},
                    finished_at=utcnow(),
                )
            )
