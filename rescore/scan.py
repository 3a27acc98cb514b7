"""Finding the images of an archive and reading their bytes.

An ARCHIVE is a folder tree, a ``.zip`` or an uncompressed ``.tar`` (zip and tar files
inside a folder tree are opened too). Every image becomes a :class:`ScanItem`:

- ``source``: where it is, stable across runs: an absolute path, or
  ``<archive path>::<member name>`` for a zip/tar member;
- ``flight``: the image's folder relative to the ARCHIVE root (``site/flight``); images
  at the root take the root's name; its first part is the site (:func:`split_flight`);
- ``fingerprint``: size plus modification time (zip: size plus CRC), so a re-run can
  tell an unchanged file from its index entry without reading it again.

Only the listing happens here (cheap: ``stat`` and archive directories). Bytes are read
by the workers (:class:`ArchiveReader`), which also hash them: the content hash, not the
path, is what results are keyed by.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from detector.decode import IMAGE_SUFFIXES

SEP = "::"  # between an archive's path and a member name in a source
COMPRESSED_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst")


class ArchiveError(ValueError):
    """An ARCHIVE argument that cannot be scanned at all (missing, unsupported type)."""


@dataclass(frozen=True, slots=True)
class ScanItem:
    """One image to score: where it is and how to read it."""

    source: str
    flight: str
    kind: str  # "file" | "zip" | "tar"
    container: str  # the file, or the zip/tar holding the member
    member: str = ""  # zip/tar member name
    offset: int = 0  # tar: offset of the member's data in the .tar
    size: int = 0
    fingerprint: str = ""

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScanItem:
        return cls(
            source=str(row["source"]),
            flight=str(row["flight"]),
            kind=str(row["kind"]),
            container=str(row["container"]),
            member=str(row.get("member") or ""),
            offset=int(row.get("offset") or 0),
            size=int(row.get("size") or 0),
            fingerprint=str(row.get("fingerprint") or ""),
        )


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """A file that looked like input but cannot be scanned (e.g. a corrupt zip)."""

    source: str
    flight: str
    reason: str
    message: str
    fingerprint: str = ""


@dataclass
class ScanResult:
    items: list[ScanItem] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    ignored: int = 0  # files that are neither images nor archives


def split_flight(flight: str) -> tuple[str, str]:
    """``site/flight/...`` -> (site, the whole folder path as the flight)."""
    return flight.split("/", 1)[0], flight


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def _is_compressed_tar(name: str) -> bool:
    low = name.lower()
    return low.endswith(COMPRESSED_TAR_SUFFIXES)


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(name).parts)


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p not in (".", ""))


def scan_archives(paths: Iterable[str | os.PathLike]) -> ScanResult:
    """List the images of every ARCHIVE (folder, .zip, .tar or a single image), sorted per archive.

    Raises :class:`ArchiveError` for a path that does not exist or is of an unsupported
    type; a corrupt archive found inside a tree is reported as a problem instead.
    """
    out = ScanResult()
    seen: set[str] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise ArchiveError(f"{raw}: no such file or folder")
        root = p.resolve()
        if root.is_dir():
            _scan_tree(root, out)
        elif root.suffix.lower() == ".zip":
            _scan_zip(root, root.stem, out)
        elif _is_compressed_tar(root.name):
            raise ArchiveError(f"{raw}: compressed tar archives cannot be read image by image; extract it or use .tar")
        elif root.suffix.lower() == ".tar":
            _scan_tar(root, root.stem, out)
        elif is_image_name(root.name):
            st = root.stat()
            out.items.append(
                ScanItem(
                    str(root),
                    root.parent.name,
                    "file",
                    str(root),
                    size=st.st_size,
                    fingerprint=f"{st.st_size}:{st.st_mtime_ns}",
                )
            )
        else:
            raise ArchiveError(f"{raw}: not a folder, .zip, .tar or image")
    # the same file named twice (overlapping ARCHIVE arguments) is scored once
    unique = []
    for it in out.items:
        if it.source not in seen:
            seen.add(it.source)
            unique.append(it)
    out.items = unique
    return out


def _scan_tree(root: Path, out: ScanResult) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root).as_posix()
        flight = root.name if rel == "." else rel
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            low = name.lower()
            if is_image_name(name):
                try:
                    st = path.stat()
                except OSError as e:
                    out.problems.append(ScanProblem(str(path), flight, "unreadable", f"cannot stat: {e.strerror}"))
                    continue
                out.items.append(
                    ScanItem(
                        str(path),
                        flight,
                        "file",
                        str(path),
                        size=st.st_size,
                        fingerprint=f"{st.st_size}:{st.st_mtime_ns}",
                    )
                )
            elif low.endswith(".zip"):
                _scan_zip(path, _join(rel, path.stem) or path.stem, out)
            elif low.endswith(".tar"):
                _scan_tar(path, _join(rel, path.stem) or path.stem, out)
            elif _is_compressed_tar(low):
                out.problems.append(
                    ScanProblem(
                        str(path),
                        flight,
                        "unsupported_archive",
                        "compressed tar: extract it or repack as .tar/.zip",
                        _stat_fp(path),
                    )
                )
            else:
                out.ignored += 1


def _stat_fp(path: Path) -> str:
    try:
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return ""


def _member_flight(prefix: str, name: str) -> str:
    parent = PurePosixPath(name).parent.as_posix()
    return _join(prefix, parent) or prefix


def _scan_zip(path: Path, prefix: str, out: ScanResult) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        out.problems.append(ScanProblem(str(path), prefix, "bad_archive", f"unreadable zip: {e}", _stat_fp(path)))
        return
    for info in sorted(infos, key=lambda i: i.filename):
        name = info.filename
        if info.is_dir() or _hidden(name):
            continue
        if not is_image_name(name):
            out.ignored += 1
            continue
        out.items.append(
            ScanItem(
                f"{path}{SEP}{name}",
                _member_flight(prefix, name),
                "zip",
                str(path),
                member=name,
                size=info.file_size,
                fingerprint=f"{info.file_size}:{info.CRC:08x}",
            )
        )


def _scan_tar(path: Path, prefix: str, out: ScanResult) -> None:
    try:
        with tarfile.open(path, "r:") as tf:
            members = tf.getmembers()
    except (tarfile.TarError, OSError, EOFError) as e:
        out.problems.append(ScanProblem(str(path), prefix, "bad_archive", f"unreadable tar: {e}", _stat_fp(path)))
        return
    for m in sorted(members, key=lambda m: m.name):
        if not m.isfile() or _hidden(m.name):
            continue
        if not is_image_name(m.name):
            out.ignored += 1
            continue
        out.items.append(
            ScanItem(
                f"{path}{SEP}{m.name}",
                _member_flight(prefix, m.name),
                "tar",
                str(path),
                member=m.name,
                offset=m.offset_data,
                size=m.size,
                fingerprint=f"{m.size}:{int(m.mtime)}",
            )
        )


class ItemReadError(OSError):
    """The bytes of an item cannot be read (reason ``unreadable``)."""

    reason = "unreadable"


class ArchiveReader:
    """Reads item bytes; keeps zip files open between calls (one reader per worker)."""

    def __init__(self, max_open: int = 16) -> None:
        self._zips: dict[str, zipfile.ZipFile] = {}
        self._max_open = max_open

    def read(self, item: ScanItem, limit: int | None = None) -> bytes:
        """The item's bytes; with ``limit``, only its first ``limit`` bytes."""
        try:
            if item.kind == "file":
                with open(item.container, "rb") as f:
                    return f.read() if limit is None else f.read(limit)
            if item.kind == "zip":
                with self._zip(item.container).open(item.member) as m:
                    return m.read() if limit is None else m.read(limit)
            if item.kind == "tar":
                want = item.size if limit is None else min(limit, item.size)
                with open(item.container, "rb") as f:
                    f.seek(item.offset)
                    data = f.read(want)
                if len(data) != want:
                    raise ItemReadError(f"tar member cut short ({len(data)} of {item.size} bytes)")
                return data
        except ItemReadError:
            raise
        except (OSError, zipfile.BadZipFile, KeyError, RuntimeError, EOFError, ValueError) as e:
            # RuntimeError: encrypted zip member; KeyError: member gone; ValueError: bad compression
            msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise ItemReadError(f"cannot read: {msg}") from None
        raise ItemReadError(f"unknown item kind {item.kind!r}")

    def _zip(self, path: str) -> zipfile.ZipFile:
        zf = self._zips.get(path)
        if zf is None:
            if len(self._zips) >= self._max_open:
                self.close()
            zf = self._zips[path] = zipfile.ZipFile(path)
        return zf

    def close(self) -> None:
        for zf in self._zips.values():
            zf.close()
        self._zips.clear()


def chunked(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]
