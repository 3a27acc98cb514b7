"""What a run has left to do: :func:`plan_run` splits the scanned items.

- **done**: unchanged files (same fingerprint as in the archive index) whose content this
  model already scored; not even read.
- **known unreadable**: unchanged files whose bytes failed to decode before; not retried.
- **copies**: files with the same bytes as another item to score (backup copies, the same
  flight in a folder and in a zip). Only the first goes to the workers; the others get its
  outcome when it comes back (:meth:`rescore.outcome.Outcome.copy_for`), so every content
  goes through the model once per run, whichever workers its copies would have landed on.
- **todo**: everything else, for the workers.

Finding copies reads only files that could be copies: items of equal size are compared by
a hash of their first 64 KiB, and only those that still match are hashed whole.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rescore.outcome import DECODE_REASONS
from rescore.scan import ArchiveReader, ItemReadError, ScanItem
from storage.archive import ArchiveIndex

HEAD_BYTES = 64 * 1024


@dataclass
class Plan:
    todo: list[ScanItem]
    done: list[ScanItem]  # already scored by this model (unchanged file, known hash)
    known_unreadable: list[ScanItem]  # unchanged files that failed to decode before
    copies: dict[str, list[tuple[ScanItem, str]]] = field(default_factory=dict)  # todo source -> (copy, sha256)
    dedupe_s: float = 0.0  # time spent finding copies

    @property
    def skipped(self) -> int:
        return len(self.done) + len(self.known_unreadable)

    @property
    def n_copies(self) -> int:
        return sum(len(v) for v in self.copies.values())

    @property
    def to_process(self) -> int:
        """Items this run records an outcome for: the ones to score and their copies."""
        return len(self.todo) + self.n_copies


def plan_run(index: ArchiveIndex, items: Sequence[ScanItem], model_key: str) -> Plan:
    """What is left to score: every item except unchanged files whose content this model
    scored (or which were found unreadable for a reason in their bytes), with copies of the
    same bytes set aside."""
    rows = index.files(it.source for it in items)
    candidates: dict[str, str] = {}
    bad: set[str] = set()
    for it in items:
        r = rows.get(it.source)
        if r is None or r.fingerprint != it.fingerprint:
            continue
        if r.error_reason in DECODE_REASONS:
            bad.add(it.source)
        elif r.error_reason is None and r.sha256:
            candidates[it.source] = r.sha256
    scored = index.store.scored(candidates.values(), model_key)
    todo, done, known_bad = [], [], []
    for it in items:
        if it.source in bad:
            known_bad.append(it)
        elif candidates.get(it.source) in scored:
            done.append(it)
        else:
            todo.append(it)
    t0 = time.perf_counter()
    todo, copies = set_copies_aside(todo)
    return Plan(todo, done, known_bad, copies, time.perf_counter() - t0)


def set_copies_aside(
    items: Sequence[ScanItem], reader: ArchiveReader | None = None
) -> tuple[list[ScanItem], dict[str, list[tuple[ScanItem, str]]]]:
    """(the items with one item per content, {source of that item: [(copy, sha256), ...]})."""
    own = reader is None
    reader = reader or ArchiveReader()
    try:
        by_size: dict[int, list[ScanItem]] = defaultdict(list)
        for it in items:
            if it.size > 0:
                by_size[it.size].append(it)
        first_of: dict[str, str] = {}  # sha256 -> source of the item that is scored
        copies: dict[str, list[tuple[ScanItem, str]]] = {}
        for same_size in by_size.values():
            if len(same_size) < 2:
                continue
            for group in _narrow(same_size, lambda it: _digest(reader, it, HEAD_BYTES)):
                for it in group:
                    sha = _digest(reader, it, None)
                    if sha is None:
                        continue  # unreadable now: the worker reports it
                    if sha in first_of:
                        copies.setdefault(first_of[sha], []).append((it, sha))
                    else:
                        first_of[sha] = it.source
        set_aside = {c.source for cs in copies.values() for c, _ in cs}
        return [it for it in items if it.source not in set_aside], copies
    finally:
        if own:
            reader.close()


def _narrow(items: list[ScanItem], key: Callable[[ScanItem], str | None]) -> list[list[ScanItem]]:
    """Groups of two or more items with the same key (items without a key are dropped)."""
    groups: dict[str, list[ScanItem]] = defaultdict(list)
    for it in items:
        k = key(it)
        if k is not None:
            groups[k].append(it)
    return [g for g in groups.values() if len(g) > 1]


def _digest(reader: ArchiveReader, item: ScanItem, limit: int | None) -> str | None:
    try:
        return hashlib.sha256(reader.read(item, limit)).hexdigest()
    except ItemReadError:
        return None
