"""Images by content hash, results by (image hash, model key), and the job bookkeeping
that makes a restart of the service lose no image and score none twice.

Each public method runs its own short transaction, so a ``Store`` is safe to share
between threads. A result is stored as :meth:`detector.results.ImageResult.payload` and
read back as an :class:`~detector.results.ImageResult` (:func:`result_row` is the one
place a result becomes a row).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.orm import Session

from detector.results import ImageResult
from storage.database import QUERY_CHUNK, insert_ignore, make_sessionmaker, open_engine
from storage.tables import Image, ImageBlob, Job, JobItem, Result, utcnow

ACTIVE = ("queued", "running")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class NewImage:
    """An accepted upload to store."""

    data: bytes
    media_type: str
    width: int | None = None
    height: int | None = None

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)


@dataclass(frozen=True)
class NewItem:
    """One file of a job upload: either an accepted image or the reason it was rejected."""

    filename: str
    image_sha256: str | None = None  # stored with Store.put_image first
    error_code: str | None = None
    error_status: int | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class ScoredResult:
    """The outcome for one image of a chunk: a result, or an error."""

    image_sha256: str
    result: ImageResult | None = None
    error_code: str | None = None
    error_status: int | None = None
    error_message: str | None = None


def result_row(sha256: str, model_key: str, result: ImageResult) -> dict[str, Any]:
    """The ``results`` row of one scored image (the only place a result becomes a row)."""
    return {
        "image_sha256": sha256,
        "model_version": model_key,
        "n_defects": len(result.findings),
        "priority": result.priority,
        "payload": result.payload(),
        "created_at": utcnow(),
    }


@dataclass(frozen=True)
class PendingItem:
    job_id: str
    position: int
    filename: str
    image_sha256: str


@dataclass(frozen=True)
class ItemRow:
    """A job item joined with its result (None until scored or if it failed)."""

    position: int
    filename: str
    image_sha256: str | None
    status: str
    error_code: str | None
    error_status: int | None
    error_message: str | None
    result: ImageResult | None
    size_bytes: int | None


class LeaseLost(Exception):
    """Another instance took the job over (this one stopped renewing its lease in time)."""


class Store:
    """Database access for the service and the re-scorer."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = make_sessionmaker(engine)

    @classmethod
    def from_url(cls, url: str, *, create: bool = True) -> Store:
        return cls(open_engine(url, create=create))

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._session()

    # ---------------------------------------------------------------- images
    def put_image(self, image: NewImage, *, keep_bytes: bool = True, source: str | None = None) -> str:
        """Store an image once per content hash; returns the hash."""
        sha = image.sha256
        with self.session() as s, s.begin():
            insert_ignore(
                s,
                Image,
                [
                    {
                        "sha256": sha,
                        "media_type": image.media_type,
                        "size_bytes": len(image.data),
                        "width": image.width,
                        "height": image.height,
                        "source": source,
                        "created_at": utcnow(),
                    }
                ],
                ["sha256"],
            )
            if keep_bytes:
                insert_ignore(s, ImageBlob, [{"sha256": sha, "data": image.data}], ["sha256"])
        return sha

    def prune_orphans(self, older_than: timedelta = timedelta(hours=1)) -> int:
        """Delete images no job item and no result refers to, stored more than ``older_than`` ago
        (left by uploads that failed half-way). Returns how many were deleted."""
        cutoff = utcnow() - older_than
        with self.session() as s, s.begin():
            used = select(JobItem.image_sha256).where(JobItem.image_sha256.is_not(None))
            scored = select(Result.image_sha256)
            orphans = select(Image.sha256).where(
                Image.created_at < cutoff, Image.sha256.not_in(used), Image.sha256.not_in(scored)
            )
            shas = list(s.scalars(orphans))
            for i in range(0, len(shas), 500):
                batch = shas[i : i + 500]
                s.execute(delete(ImageBlob).where(ImageBlob.sha256.in_(batch)))
                s.execute(delete(Image).where(Image.sha256.in_(batch)))
            return len(shas)

    def image_bytes(self, shas: Sequence[str]) -> dict[str, bytes]:
        """Stored bytes by hash (images registered without bytes are absent)."""
        if not shas:
            return {}
        with self.session() as s:
            rows = s.execute(select(ImageBlob.sha256, ImageBlob.data).where(ImageBlob.sha256.in_(set(shas))))
            return {sha: bytes(data) for sha, data in rows}

    # --------------------------------------------------------------- results
    def results_for(self, shas: Iterable[str], model_version: str) -> dict[str, ImageResult]:
        """Existing results of these images by this model key."""
        keys = sorted(set(shas))
        out: dict[str, ImageResult] = {}
        with self.session() as s:
            for i in range(0, len(keys), QUERY_CHUNK):
                rows = s.execute(
                    select(Result.image_sha256, Result.payload).where(
                        Result.model_version == model_version, Result.image_sha256.in_(keys[i : i + QUERY_CHUNK])
                    )
                )
                out.update({sha: ImageResult.from_payload(payload) for sha, payload in rows})
        return out

    def scored(self, shas: Iterable[str], model_version: str) -> set[str]:
        """The hashes among ``shas`` that have a result by this model key."""
        keys = sorted(set(shas))
        out: set[str] = set()
        with self.session() as s:
            for i in range(0, len(keys), QUERY_CHUNK):
                q = select(Result.image_sha256).where(
                    Result.model_version == model_version, Result.image_sha256.in_(keys[i : i + QUERY_CHUNK])
                )
                out.update(s.scalars(q))
        return out

    def other_versions(self, model_version: str) -> list[str]:
        """Model keys with results in the store other than ``model_version``, newest first."""
        with self.session() as s:
            rows = s.execute(
                select(Result.model_version, func.max(Result.created_at).label("last"))
                .where(Result.model_version != model_version)
                .group_by(Result.model_version)
                .order_by(func.max(Result.created_at).desc())
            )
            return [v for v, _ in rows]

    def _put_results(self, s: Session, results: Sequence[ScoredResult], model_version: str) -> dict[str, int]:
        rows = [result_row(r.image_sha256, model_version, r.result) for r in results if r.result is not None]
        insert_ignore(s, Result, rows, ["image_sha256", "model_version"])
        shas = {r["image_sha256"] for r in rows}
        if not shas:
            return {}
        ids = s.execute(
            select(Result.image_sha256, Result.id).where(
                Result.model_version == model_version, Result.image_sha256.in_(shas)
            )
        )
        return {sha: rid for sha, rid in ids}

    def put_results(self, results: Sequence[ScoredResult], model_version: str) -> dict[str, int]:
        """Store results (an existing one for the same image and model is kept); returns result ids by hash."""
        with self.session() as s, s.begin():
            return self._put_results(s, results, model_version)

    def count_results(self, model_version: str | None = None) -> int:
        with self.session() as s:
            q = select(func.count()).select_from(Result)
            if model_version is not None:
                q = q.where(Result.model_version == model_version)
            return int(s.scalar(q) or 0)

    # ------------------------------------------------------------------ jobs
    def create_job(
        self,
        items: Sequence[NewItem],
        *,
        model_version: str,
        asset_type: str,
        site: str | None,
        flight: str | None,
        conditions: dict[str, Any] | None = None,
    ) -> Job:
        """The job and its items, in one transaction (the images are already stored by ``put_image``)."""
        job = Job(
            id=uuid.uuid4().hex,
            status="queued",
            asset_type=asset_type,
            site=site,
            flight=flight,
            model_version=model_version,
            conditions=conditions or None,
            total=len(items),
            done=0,
            failed=sum(1 for it in items if it.image_sha256 is None),
            created_at=utcnow(),
        )
        with self.session() as s, s.begin():
            s.add(job)
            s.flush()
            s.add_all(
                JobItem(
                    job_id=job.id,
                    position=i,
                    filename=it.filename,
                    image_sha256=it.image_sha256,
                    status="pending" if it.image_sha256 is not None else "error",
                    error_code=it.error_code,
                    error_status=it.error_status,
                    error_message=it.error_message,
                )
                for i, it in enumerate(items)
            )
            if job.failed == job.total:
                job.status, job.finished_at = "done", utcnow()
            if site and site.strip():  # the job's images are a flight of the site (history/)
                from storage.flights import add_images, ensure_flight

                fid = ensure_flight(s, site, flight if flight and flight.strip() else f"job-{job.id}")
                add_images(s, fid, [(it.image_sha256, it.filename) for it in items if it.image_sha256], model_version)
        return job

    def get_job(self, job_id: str) -> Job | None:
        with self.session() as s:
            return s.get(Job, job_id)

    def cancel_job(self, job_id: str) -> Job | None:
        """Cancel a queued or running job; returns the job (unchanged if it had finished) or None."""
        with self.session() as s, s.begin():
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(ACTIVE))
                .values(status="cancelled", finished_at=utcnow(), owner=None, lease_until=None)
            )
            return s.get(Job, job_id)

    def pending_images(self) -> int:
        """Images of active jobs not yet scored (the job backlog)."""
        with self.session() as s:
            q = (
                select(func.count())
                .select_from(JobItem)
                .join(Job, Job.id == JobItem.job_id)
                .where(JobItem.status == "pending", Job.status.in_(ACTIVE))
            )
            return int(s.scalar(q) or 0)

    def release_leases(self) -> int:
        """Free the jobs every instance holds (only right for a single-instance database such as SQLite)."""
        with self.session() as s, s.begin():
            r = s.execute(update(Job).where(Job.status == "running").values(owner=None, lease_until=None))
            return r.rowcount or 0

    def release_owner(self, owner: str) -> int:
        """Free the jobs one instance holds (at its orderly shutdown)."""
        with self.session() as s, s.begin():
            r = s.execute(update(Job).where(Job.owner == owner).values(owner=None, lease_until=None))
            return r.rowcount or 0

    def release_job(self, job_id: str, owner: str) -> None:
        with self.session() as s, s.begin():
            s.execute(update(Job).where(Job.id == job_id, Job.owner == owner).values(owner=None, lease_until=None))

    def claim_job(self, owner: str, lease_seconds: float) -> str | None:
        """Take the oldest active job no live instance holds; returns its id."""
        now = utcnow()
        free = or_(Job.owner.is_(None), Job.lease_until < now)
        with self.session() as s, s.begin():
            ids = s.scalars(select(Job.id).where(Job.status.in_(ACTIVE), free).order_by(Job.created_at).limit(8)).all()
            for job_id in ids:
                r = s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status.in_(ACTIVE), free)
                    .values(
                        status="running",
                        owner=owner,
                        lease_until=now + timedelta(seconds=lease_seconds),
                        started_at=func.coalesce(Job.started_at, now),
                    )
                )
                if r.rowcount == 1:
                    return job_id
        return None

    def _renew(self, s: Session, job_id: str, owner: str, lease_seconds: float) -> None:
        r = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.owner == owner, Job.status == "running")
            .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        )
        if r.rowcount != 1:
            raise LeaseLost(job_id)

    def renew_lease(self, job_id: str, owner: str, lease_seconds: float) -> None:
        """Extend the lease; raises LeaseLost if the job was cancelled or taken over."""
        with self.session() as s, s.begin():
            self._renew(s, job_id, owner, lease_seconds)

    def pending_items(self, job_id: str, limit: int) -> list[PendingItem]:
        with self.session() as s:
            rows = s.execute(
                select(JobItem.position, JobItem.filename, JobItem.image_sha256)
                .where(JobItem.job_id == job_id, JobItem.status == "pending")
                .order_by(JobItem.position)
                .limit(limit)
            )
            return [PendingItem(job_id, pos, name, sha) for pos, name, sha in rows]

    def complete_items(
        self,
        job_id: str,
        owner: str,
        lease_seconds: float,
        model_version: str,
        outcomes: Sequence[tuple[int, ScoredResult]],
    ) -> int:
        """Record the outcomes of a chunk of items (position, result) in ONE transaction:
        results, item states, job counters, lease. An item already done is not counted again.
        Returns how many items changed state. Raises LeaseLost (nothing written) if the job
        is no longer this owner's to write."""
        with self.session() as s, s.begin():
            self._renew(s, job_id, owner, lease_seconds)
            ids = self._put_results(s, [r for _, r in outcomes], model_version)
            done = failed = 0
            for pos, r in outcomes:
                ok = r.result is not None
                values: dict[str, Any] = (
                    {"status": "done", "result_id": ids[r.image_sha256]}
                    if ok
                    else {
                        "status": "error",
                        "error_code": r.error_code,
                        "error_status": r.error_status,
                        "error_message": r.error_message,
                    }
                )
                changed = s.execute(
                    update(JobItem)
                    .where(JobItem.job_id == job_id, JobItem.position == pos, JobItem.status == "pending")
                    .values(**values)
                ).rowcount
                if changed:
                    done += ok
                    failed += not ok
            s.execute(update(Job).where(Job.id == job_id).values(done=Job.done + done, failed=Job.failed + failed))
            return done + failed

    def finish_job(self, job_id: str, owner: str) -> bool:
        """Mark a running job done if no item is pending; True if it is now done."""
        with self.session() as s, s.begin():
            left = s.scalar(
                select(func.count()).select_from(JobItem).where(JobItem.job_id == job_id, JobItem.status == "pending")
            )
            if left:
                return False
            r = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.owner == owner, Job.status == "running")
                .values(status="done", finished_at=utcnow(), owner=None, lease_until=None)
            )
            return r.rowcount == 1

    def job_rows(self, job_id: str) -> list[ItemRow]:
        """All items of a job in upload order, with their results."""
        with self.session() as s:
            rows = s.execute(
                select(
                    JobItem.position,
                    JobItem.filename,
                    JobItem.image_sha256,
                    JobItem.status,
                    JobItem.error_code,
                    JobItem.error_status,
                    JobItem.error_message,
                    Result.payload,
                    Image.size_bytes,
                )
                .outerjoin(Result, Result.id == JobItem.result_id)
                .outerjoin(Image, Image.sha256 == JobItem.image_sha256)
                .where(JobItem.job_id == job_id)
                .order_by(JobItem.position)
            )
            return [
                ItemRow(*row[:7], ImageResult.from_payload(row[7]) if row[7] is not None else None, row[8])  # type: ignore[arg-type]
                for row in rows
            ]
