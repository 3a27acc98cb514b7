"""Fetching a source's upstream archive when no local mirror is given."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path


class DownloadError(RuntimeError):
    """A source could not be fetched; the message says which and why, in one line."""


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (atomically, via a ``.part`` file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot download {url} ({reason}); the network may be unreachable") from None
    if sha256 and digest.hexdigest() != sha256.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(f"checksum mismatch for {url}: got {digest.hexdigest()}, expected {sha256}")
    part.replace(dest)
    return dest


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack a zip or tar archive into ``dest`` and return the dataset root: the
    single top-level folder GitHub archives have, or ``dest`` itself."""
    tmp = dest.with_name(dest.name + ".unpacking")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for m in z.namelist():
                    _check_member(m)
                z.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                t.extractall(tmp, filter="data")
        else:
            raise DownloadError(f"{archive.name} is neither a zip nor a tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive.name} is a corrupt archive: {e}") from None
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    entries = list(dest.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def _check_member(name: str) -> None:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts:
        raise DownloadError(f"archive member {name!r} escapes the target folder")


def fetch_source(name: str, url: str, cache: Path, sha256: str | None = None) -> Path:
    """The unpacked root of a source, downloading it once into ``cache``."""
    root_marker = cache / "sources" / f"{name}.root"
    if root_marker.exists():
        root = Path(root_marker.read_text().strip())
        if root.is_dir():
            return root
    try:
        archive = download(url, cache / "downloads" / f"{name}.archive", sha256)
    except DownloadError as e:
        raise DownloadError(f"source {name}: {e}: set DATA_MIRROR to a local copy of the datasets") from None
    root = unpack(archive, cache / "sources" / name)
    root_marker.write_text(str(root))
    return root
