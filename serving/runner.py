"""The job runner: background threads that score persisted jobs chunk by chunk.

Crash safety: every chunk's results, item states and job counters are written in ONE
transaction (``Store.complete_items``), and results are unique per (image, model
version). A server stopped at any point therefore resumes with exactly the items that
have no committed outcome: none lost, none recorded twice; an image already scored by
this model (in this job or any other) is not scored again.

Ownership: an instance holds a job by a lease it renews with every chunk. With SQLite
(one instance by design) the leases are released at start, so a restarted server
resumes at once; with PostgreSQL another instance takes a job over after
``job_lease_seconds`` without renewal.
"""

from __future__ import annotations

import logging
import threading
import uuid

from detector.config import Conditions
from history.tracker import match_site
from serving.detectors import DetectorPool, score
from serving.errors import Rejection
from serving.memory import LargeImages, decode_plan, header_pixels, release_memory
from serving.metrics import Metrics
from serving.queue import BACKGROUND, InferenceQueue
from serving.settings import Settings
from storage.flights import FlightLog, flight_name
from storage.store import LeaseLost, PendingItem, ScoredResult, Store

log = logging.getLogger("pvwind.jobs")


class JobRunner:
    def __init__(
        self,
        store: Store,
        pool: DetectorPool,
        queue: InferenceQueue,
        settings: Settings,
        metrics: Metrics,
        large_images: LargeImages | None = None,
    ) -> None:
        self.store = store
        # shared with POST /v1/inspections: large images of jobs take the same permits
        self.large_images = large_images or LargeImages(settings.max_large_decodes if settings else 1)
        self.pool = pool
        self.queue = queue
        self.settings = settings
        self.metrics = metrics
        self.owner = f"{uuid.uuid4().hex[:12]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self.settings.is_sqlite:
            n = self.store.release_leases()
            if n:
                log.info("resuming %d interrupted job(s)", n)
        n = self.store.prune_orphans()
        if n:
            log.info("deleted %d stored image(s) of uploads that failed half-way", n)
        for i in range(self.settings.job_runners):
            t = threading.Thread(target=self._loop, name=f"job-runner-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the chunk in progress, then stop; this instance's jobs are released for others."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self.store.release_owner(self.owner)

    # ----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self.store.claim_job(self.owner, self.settings.job_lease_seconds)
            except Exception:  # database away: try again later
                log.exception("cannot claim a job")
                job_id = None
            if job_id is None:
                self._wake.wait(self.settings.job_poll_seconds)
                self._wake.clear()
                continue
            try:
                self._run(job_id)
            except LeaseLost:
                log.info("job %s: cancelled or taken over", job_id)
            except Exception:
                log.exception("job %s: runner error; it stays queued for a retry", job_id)
                self._stop.wait(self.settings.job_poll_seconds)
                try:
                    self.store.release_job(job_id, self.owner)
                except Exception:  # the lease expires by itself
                    log.exception("job %s: cannot release", job_id)

    def _run(self, job_id: str) -> None:
        s = self.settings
        log.info("job %s: scoring", job_id)
        job = self.store.get_job(job_id)
        conditions = Conditions(**job.conditions) if job is not None and job.conditions else None
        key = self.pool.detectors[0].key_for(conditions)
        while not self._stop.is_set():
            items = self.store.pending_items(job_id, s.job_chunk_images)
            if not items:
                if self.store.finish_job(job_id, self.owner):
                    log.info("job %s: done", job_id)
                    self._flight_done(job_id)
                return
            outcomes, by_model = self._score_chunk(items, conditions, key)
            self.store.complete_items(job_id, self.owner, s.job_lease_seconds, key, outcomes)
            self._count(items, outcomes, by_model)

    def _flight_done(self, job_id: str) -> None:
        """A job with a site is (part of) a flight: mark it complete and bring the site's tracks
        up to date (history/). A failure here leaves the results as they are; the tracks are
        built on the next match (``POST /v1/sites/{site}/match``, ``pvwind history``)."""
        job = self.store.get_job(job_id)
        if job is None or not job.site or not job.site.strip():
            return
        try:
            name = job.flight if job.flight and job.flight.strip() else f"job-{job.id}"
            FlightLog(self.store).complete(flight_name(job.site), flight_name(name))
            rep = match_site(self.store, flight_name(job.site))
            log.info("job %s: site %s matched (%s)", job_id, job.site, rep.states)
        except Exception:
            log.exception("job %s: matching the flights of site %s failed", job_id, job.site)

    def _count(self, items: list[PendingItem], outcomes: list[tuple[int, ScoredResult]], by_model: set[str]) -> None:
        """images{path="job"}: scored (by the model, now), reused (an earlier result of the
        same image and model), rejected."""
        m = self.metrics.images
        for it, (_, r) in zip(items, outcomes, strict=True):
            if r.result is None:
                m.labels("job", "rejected").inc()
            elif it.image_sha256 in by_model:
                by_model.discard(it.image_sha256)  # a second copy in the chunk is a reuse
                m.labels("job", "scored").inc()
                for f in r.result.findings:
                    self.metrics.defects.labels(f.class_name).inc()
            else:
                m.labels("job", "reused").inc()

    def _score_chunk(
        self, items: list[PendingItem], conditions: Conditions | None = None, key: str | None = None
    ) -> tuple[list[tuple[int, ScoredResult]], set[str]]:
        """Outcomes by item position, and the hashes the model scored for this chunk."""
        version = key or self.pool.model_key
        shas = list(dict.fromkeys(it.image_sha256 for it in items))
        known = self.store.results_for(shas, version)
        todo = [sha for sha in shas if sha not in known]
        blobs = self.store.image_bytes(todo)
        results: dict[str, ScoredResult] = {sha: ScoredResult(sha, r) for sha, r in known.items()}
        present = []
        for sha in todo:
            if blobs.get(sha) is None:
                results[sha] = ScoredResult(
                    sha,
                    error_code="image_missing",
                    error_status=500,
                    error_message="the stored image bytes are missing",
                )
            else:
                present.append(sha)
        # as a request does: groups of at most large_image_pixels, each larger image alone under a permit
        groups, large = decode_plan([header_pixels(blobs[sha]) for sha in present], self.settings.large_image_pixels)
        decoded: list[str] = []
        for group in groups:
            decoded += self._decode_and_score([present[i] for i in group], blobs, conditions, results)
        for i in large:
            with self.large_images.hold_sync():
                decoded += self._decode_and_score([present[i]], blobs, conditions, results)
            blobs.pop(present[i], None)
            release_memory()
        by_model = {sha for sha in decoded if results[sha].result is not None}
        return [(it.position, results[it.image_sha256]) for it in items], by_model

    def _decode_and_score(
        self, shas: list[str], blobs: dict[str, bytes], conditions: Conditions | None, results: dict[str, ScoredResult]
    ) -> list[str]:
        """Decode ``shas`` and score them in one task; their outcomes go to ``results``. Returns the
        hashes that reached the model. No pixels outlive the call."""
        decoded = []
        for sha in shas:
            try:
                decoded.append((sha, self.pool.decode(blobs[sha], sha, conditions)))
            except Rejection as r:
                results[sha] = ScoredResult(sha, error_code=r.code, error_status=r.status, error_message=r.message)
        if not decoded:
            return []
        names = [sha for sha, _ in decoded]
        images = [[d for _, d in decoded]]  # the task's only reference to the pixels (see scoring.py)
        del decoded
        slot = self.queue.reserve(len(names), wait=True)
        fut = self.queue.submit(slot, lambda det: score(det, images.pop()), BACKGROUND)
        try:
            scored = fut.result()
        except Exception as e:
            log.exception("scoring failed for %d image(s)", len(names))
            scored = [e] * len(names)
        for sha, res in zip(names, scored, strict=True):
            if isinstance(res, Exception):
                results[sha] = ScoredResult(
                    sha,
                    error_code="scoring_failed",
                    error_status=500,
                    error_message=f"the model failed on this image: {type(res).__name__}",
                )
            else:
                results[sha] = ScoredResult(sha, res)
        return names
