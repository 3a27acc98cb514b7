"""Sites, their flights and the images of each flight: what ``history/`` matches into tracks.

A flight is recorded wherever images are scored with a site: a job (``POST /v1/jobs`` with
``site`` and ``flight``: :meth:`storage.store.Store.create_job`), ``pvwind rescore`` (the
``SITE/FLIGHT/`` folders of an archive) and ``pvwind inspect --site --flight --out-db``. A
flight's images are (content hash, model key) pairs, so the findings stay where they are, in
``results.payload``. Recording new images of a flight (or a new model key) marks the flight
as not matched (``matched_at`` = None): :func:`history.tracker.match_site` re-builds the
site's tracks from that flight on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage.database import QUERY_CHUNK, insert_ignore
from storage.store import Store
from storage.tables import Flight, FlightImage, Result, Site, utcnow

NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class FlightRow:
    id: int
    site: str
    name: str
    flown_on: date | None
    date_source: str
    rtk: bool | None
    model_version: str | None
    status: str
    matched: bool
    offset_east_m: float | None
    offset_north_m: float | None


def flight_name(value: str) -> str:
    """A site or flight name as stored: stripped, at most 200 characters."""
    name = " ".join(str(value).split())[:NAME_MAX]
    if not name:
        raise ValueError("a site or flight name must not be empty")
    return name


def ensure_flight(
    s: Session,
    site: str,
    flight: str,
    *,
    flown_on: date | None = None,
    rtk: bool | None = None,
) -> int:
    """The flight's id (site and flight created when new). A date given here wins over the
    one taken from the images' capture time."""
    site, flight = flight_name(site), flight_name(flight)
    insert_ignore(s, Site, [{"name": site, "created_at": utcnow()}], ["name"])
    site_id = s.scalar(select(Site.id).where(Site.name == site))
    insert_ignore(
        s,
        Flight,
        [
            {
                "site_id": site_id,
                "name": flight,
                "flown_on": flown_on,
                "date_source": "given" if flown_on else "images",
                "rtk": rtk,
                "status": "open",
                "created_at": utcnow(),
            }
        ],
        ["site_id", "name"],
    )
    row = s.execute(
        select(Flight.id, Flight.flown_on, Flight.rtk).where(Flight.site_id == site_id, Flight.name == flight)
    ).one()
    values: dict[str, Any] = {}
    if flown_on is not None and row.flown_on != flown_on:
        values.update(flown_on=flown_on, date_source="given", matched_at=None)
    if rtk is not None and row.rtk != rtk:
        values.update(rtk=rtk, matched_at=None)
    if values:
        s.execute(update(Flight).where(Flight.id == row.id).values(**values))
    return int(row.id)


def add_images(s: Session, flight_id: int, images: Iterable[tuple[str, str | None]], model_key: str) -> int:
    """Record (content hash, source name) pairs as images of a flight scored by ``model_key``
    (the images rows must exist). Returns how many were new; new images, or a model key other
    than the flight's, mark the flight for matching again."""
    rows = {sha: {"flight_id": flight_id, "image_sha256": sha, "model_version": model_key, "source": src,
                  "created_at": utcnow()} for sha, src in images if sha}  # fmt: skip
    if not rows:
        return 0

    def count() -> int:
        q = (
            select(func.count())
            .select_from(FlightImage)
            .where(FlightImage.flight_id == flight_id, FlightImage.model_version == model_key)
        )
        return int(s.scalar(q) or 0)

    before = count()
    insert_ignore(s, FlightImage, list(rows.values()), ["flight_id", "image_sha256", "model_version"])
    added = count() - before
    current = s.scalar(select(Flight.model_version).where(Flight.id == flight_id))
    if added or current != model_key:
        s.execute(update(Flight).where(Flight.id == flight_id).values(model_version=model_key, matched_at=None))
    return added


class FlightLog:
    """Sites and flights beside the images and results of a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ----------------------------------------------------------------- writes
    def record(
        self,
        site: str,
        flight: str,
        images: Sequence[tuple[str, str | None]],
        model_key: str,
        *,
        flown_on: date | None = None,
        rtk: bool | None = None,
        complete: bool = False,
    ) -> int:
        """Record images (hash, source name) of a flight in one transaction; returns the flight id."""
        with self.store.session() as s, s.begin():
            fid = ensure_flight(s, site, flight, flown_on=flown_on, rtk=rtk)
            add_images(s, fid, images, model_key)
            if complete:
                s.execute(update(Flight).where(Flight.id == fid).values(status="complete"))
            return fid

    def complete(self, site: str, flight: str) -> int | None:
        """Mark a flight complete (all its images are in); returns its id (None: unknown)."""
        with self.store.session() as s, s.begin():
            fid = s.scalar(
                select(Flight.id).join(Site, Site.id == Flight.site_id).where(Site.name == site, Flight.name == flight)
            )
            if fid is not None:  # its images may have new results: match it again
                s.execute(update(Flight).where(Flight.id == fid).values(status="complete", matched_at=None))
            return fid

    # ------------------------------------------------------------------ reads
    def sites(self) -> list[str]:
        with self.store.session() as s:
            return list(s.scalars(select(Site.name).order_by(Site.name)))

    def site_id(self, site: str) -> int | None:
        with self.store.session() as s:
            return s.scalar(select(Site.id).where(Site.name == site))

    def flights(self, site: str) -> list[FlightRow]:
        """The site's flights in flight order: by date (flights without one last), then name."""
        with self.store.session() as s:
            rows = s.execute(
                select(Flight, Site.name).join(Site, Site.id == Flight.site_id).where(Site.name == site)
            ).all()
        out = [
            FlightRow(
                f.id, site_name, f.name, f.flown_on, f.date_source, f.rtk, f.model_version, f.status,
                f.matched_at is not None, f.offset_east_m, f.offset_north_m,
            )
            for f, site_name in rows
        ]  # fmt: skip
        return sorted(out, key=flight_order)

    def image_results(self, flight_id: int, model_key: str) -> list[tuple[str, str | None, dict[str, Any]]]:
        """(hash, source name, stored payload) of the flight's images that have a result by
        ``model_key``, in hash order (images still waiting for their result are left out)."""
        with self.store.session() as s:
            rows = s.execute(
                select(FlightImage.image_sha256, FlightImage.source, Result.payload)
                .join(
                    Result,
                    (Result.image_sha256 == FlightImage.image_sha256)
                    & (Result.model_version == FlightImage.model_version),
                )
                .where(FlightImage.flight_id == flight_id, FlightImage.model_version == model_key)
                .order_by(FlightImage.image_sha256)
            )
            return [(sha, src, payload) for sha, src, payload in rows]

    def image_counts(self, flight_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """(images, images with a result) per flight, for the flight's model key."""
        out: dict[int, tuple[int, int]] = {}
        ids = list(flight_ids)
        with self.store.session() as s:
            for i in range(0, len(ids), QUERY_CHUNK):
                q = (
                    select(FlightImage.flight_id, func.count(), func.count(Result.id))
                    .join(
                        Flight,
                        (Flight.id == FlightImage.flight_id) & (Flight.model_version == FlightImage.model_version),
                    )
                    .outerjoin(
                        Result,
                        (Result.image_sha256 == FlightImage.image_sha256)
                        & (Result.model_version == FlightImage.model_version),
                    )
                    .where(FlightImage.flight_id.in_(ids[i : i + QUERY_CHUNK]))
                    .group_by(FlightImage.flight_id)
                )
                out.update({fid: (int(n), int(k)) for fid, n, k in s.execute(q)})
        return out


def flight_order(f: FlightRow | Any) -> tuple:
    """Flights in time order: by date (undated last), then name, then id."""
    return (f.flown_on is None, f.flown_on or date.min, f.name, f.id)
