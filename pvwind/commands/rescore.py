"""``pvwind rescore ARCHIVE... [--model models/current] [--out results.db] [--workers N] [--ray [auto|local|ADDRESS]]``.

Re-scores every image of one or more archives (folder trees, .zip, .tar) with a model,
skipping what this model key already scored (by content hash), so an interrupted run
continues where it stopped. See docs/rescore.md (exit codes: 0 done, 1 nothing could be
scored, 2 an error stopped it, 130 interrupted).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pvwind.cli import CLIError

MAX_DEFAULT_WORKERS = 16  # without --workers (ONNX Runtime): one per core up to this many


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Re-score an image archive with a model: resumable (results keyed by image content hash and model "
        "key), parallel (--workers) or on a Ray cluster (--ray). Writes results to a SQL store and "
        "exports GeoJSON/CSV/Parquet, a per-site/flight summary, the unreadable files and a change report."
    )
    parser.add_argument("archives", nargs="+", metavar="ARCHIVE", help="folder tree, .zip or .tar of images")
    parser.add_argument("--model", help="model folder or .onnx (default: $PVWIND_MODEL or models/current)")
    parser.add_argument("--config", help="detector settings YAML (default: configs/detector.yaml)")
    parser.add_argument(
        "--out",
        default="results.db",
        metavar="STORE",
        help="result store: a SQLite file or a SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db "
        "(default: results.db)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local worker processes, or Ray actors with --ray (default: one per core, at most 16)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="T",
        help="ONNX Runtime threads per worker (default: cores // workers; 1 per Ray actor)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="auto|local|ADDRESS",
        help="run on Ray: 'auto' joins this machine's cluster or starts a local one, 'local' starts one, "
        "or a cluster address (ray://head:10001)",
    )
    parser.add_argument("--batch-size", type=int, help="images per ONNX Runtime run (default: detector config)")
    parser.add_argument("--chunk", type=int, default=32, help="images per worker task (default: 32)")
    parser.add_argument(
        "--commit-every",
        type=int,
        default=64,
        metavar="N",
        help="images per store transaction (default: 64; at most 2 s apart)",
    )
    parser.add_argument(
        "--export-dir",
        type=Path,
        metavar="DIR",
        help="where exports and reports go (default: next to the SQLite store, rescore-<model>/)",
    )
    parser.add_argument(
        "--formats", default="geojson,csv,parquet", help="exports, comma-separated: geojson,csv,parquet (default: all)"
    )
    parser.add_argument(
        "--compare",
        metavar="KEY",
        help="model key to diff against (default: the latest other key in the store); 'none' to skip the change report",
    )
    parser.add_argument("--no-export", action="store_true", help="only score; no exports or reports")
    parser.add_argument(
        "--no-history",
        action="store_true",
        help="do not record the SITE/FLIGHT folders as flights nor match their findings across flights "
        "(pvwind history)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.epilog = "exit codes: 0 done, 1 no image could be scored (all unreadable), 2 error, 130 interrupted"


def _model_key(model: str | None, config: str | None) -> tuple[str, str, str]:
    """(model path, result key, backend) with the model checked up front (one clear error, not one
    per worker)."""
    from detector import Detector
    from detector.model import ModelLoadError

    try:
        det = Detector(model, config=config, threads=1, warmup=0)
    except (ModelLoadError, FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    return str(det.info.path), det.model_key, det.backend.name


def _first_line(e: BaseException) -> str:
    return (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]


def _open_index(value: str) -> Any:
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from storage.archive import ArchiveIndex
    from storage.database import database_url, shown_url
    from storage.store import Store

    try:
        return ArchiveIndex(Store.from_url(database_url(value)))
    except ArgumentError as e:
        raise CLIError(f"--out {value}: not a database URL ({e})") from None
    except ModuleNotFoundError as e:
        raise CLIError(f"--out {shown_url(value)}: the database driver {e.name} is not installed") from None
    except (SQLAlchemyError, OSError) as e:
        raise CLIError(f"cannot open the result store {shown_url(value)}: {_first_line(e)}") from None


def _default_export_dir(url: str, model_key: str) -> Path:
    from sqlalchemy.engine import make_url

    name = "rescore-" + model_key.replace("@", "-").replace("/", "_")
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        return Path(u.database).parent / name
    return Path(name)


def progress_bar(total: int, *, desc: str, disable: bool = False) -> Any:
    """A tqdm bar on stderr with rate and ETA."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="img",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=disable,
        smoothing=0.1,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]",
    )


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from rescore.exports import FORMATS
    from rescore.scan import ArchiveError, scan_archives
    from storage.database import shown_url

    if args.workers is not None and args.workers < 1:
        raise CLIError("--workers must be at least 1")
    if args.threads is not None and args.threads < 0:
        raise CLIError("--threads must be 0 (automatic) or more")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = sorted(set(formats) - set(FORMATS))
    if bad:
        raise CLIError(f"--formats: unknown {', '.join(bad)} (choose from {', '.join(FORMATS)})")
    quiet = args.quiet
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))

    try:
        scan = scan_archives(args.archives)
    except ArchiveError as e:
        raise CLIError(str(e)) from None
    if not scan.items and not scan.problems:
        ignored = f" ({scan.ignored} other file(s) ignored: neither images nor .zip/.tar)" if scan.ignored else ""
        raise CLIError("no images found in " + ", ".join(args.archives) + ignored)
    model_path, key, backend = _model_key(args.model, args.config)
    index = _open_index(args.out)
    try:
        return _run(args, scan, model_path, key, index, formats, say, quiet, backend)
    except SQLAlchemyError as e:  # read-only, locked or lost store: one line, not a traceback
        raise CLIError(f"the result store {shown_url(index.url)} failed: {_first_line(e)}") from None
    finally:
        index.close()


def _run(args, scan, model_path, key, index, formats, say, quiet, backend) -> int:  # noqa: ANN001
    from rescore.local_runner import WorkerDied, run_local, split_threads
    from rescore.outcome import UNREADABLE, Outcome
    from rescore.plan import plan_run
    from rescore.report import write_report
    from rescore.worker import ScorerSpec, default_cores
    from rescore.writer import RunStats
    from storage.database import shown_url

    # unreadable archives found while scanning go into the file index like unreadable images
    problems = [
        Outcome(p.source, p.flight, p.fingerprint, UNREADABLE, error_reason=p.reason, error=p.message)
        for p in scan.problems
    ]
    index.write([o.file_record() for o in problems], [], key)
    abandoned = index.close_abandoned_runs()
    if abandoned:
        say(f"rescore: {abandoned} earlier run(s) ended without finishing (killed?): marked interrupted")
    p = plan_run(index, scan.items, key)
    say(
        f"rescore: {len(scan.items)} images ({p.skipped} already done, {len(p.todo)} to score"
        + (f", {p.n_copies} copies of them" if p.n_copies else "")
        + f") with {key} -> {shown_url(index.url)}"
        + (f"; {scan.ignored} other files ignored" if scan.ignored else "")
    )
    cores = default_cores()
    mode = "ray" if args.ray else "local"
    stats = RunStats(mode, 0, 0, key)  # filled in as outcomes are committed, also when interrupted
    stats.seconds["dedupe"] = p.dedupe_s
    archives = [str(Path(a).resolve()) for a in args.archives]
    run_id = index.start_run(key, mode, archives, len(scan.items), p.skipped)
    status = "failed"
    bar = progress_bar(p.to_process, desc="rescore", disable=quiet or not p.todo)
    try:
        if args.ray:
            _run_ray(args, p, model_path, key, index, bar, say, stats)
        else:
            # OpenVINO (backend auto on bf16 CPUs) runs parallel streams over every core in one process:
            # one worker beats one per core there (bench/rescore.py); ONNX Runtime: one per core
            default = 1 if backend == "openvino" else min(cores, MAX_DEFAULT_WORKERS)
            workers = args.workers or default
            workers = max(1, min(workers, len(p.todo))) if p.todo else 1
            threads = split_threads(workers, args.threads, cores)
            stats.workers, stats.threads = workers, threads
            spec = ScorerSpec(model_path, key, threads, args.config, args.batch_size, index.url)
            if p.todo:
                run_local(
                    p.todo,
                    spec,
                    index,
                    workers=workers,
                    chunk_size=args.chunk,
                    commit_every=args.commit_every,
                    on_progress=bar.update,
                    stats=stats,
                    copies=p.copies,
                )
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except WorkerDied as e:
        raise CLIError(f"{e}; the results so far are saved: run the same command again to continue") from None
    finally:
        bar.close()
        index.finish_run(run_id, status, stats.scored, stats.unreadable, stats.to_dict())
    if stats.processed:
        say(
            f"scored {stats.scored}, unreadable {stats.unreadable}, already known by content {stats.known} "
            f"in {stats.elapsed_s:.1f} s ({stats.images_per_s:.1f} img/s, {stats.workers} x {stats.threads} threads)"
        )
    if not args.no_history and status == "done":
        _record_flights(index, scan.items, key, say)
    if not args.no_export:
        export_dir = args.export_dir or _default_export_dir(index.url, key)
        compare = None if (args.compare or "").lower() == "none" else (args.compare or "auto")
        try:
            rep = write_report(index, scan.items, scan.problems, key, export_dir, formats=formats, compare=compare)
        except OSError as e:
            raise CLIError(f"cannot write the exports to {export_dir}: {e.strerror or e}") from None
        if not quiet:
            _print_report(rep)
    if len(p.done) + stats.scored + stats.known == 0:
        print(f"pvwind rescore: {_nothing_scored(index, scan, p)}", file=sys.stderr)
        return 1
    return 0


def _record_flights(index, items, key: str, say) -> None:  # noqa: ANN001
    """The archive's ``SITE/FLIGHT/`` folders as flights of their sites (the images with a
    result by ``key``), then each site's tracks brought up to date (history/)."""
    from history.config import HistoryConfigError
    from history.tracker import match_site
    from rescore.scan import split_flight
    from storage.flights import FlightLog

    rows = index.files(it.source for it in items)
    scored = index.store.scored({r.sha256 for r in rows.values() if r.sha256}, key)
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for it in items:
        r = rows.get(it.source)
        if r is None or r.sha256 not in scored:
            continue
        site, folder = split_flight(it.flight)
        name = folder.split("/", 1)[1] if "/" in folder else folder
        groups.setdefault((site, name), []).append((r.sha256, it.source))
    log = FlightLog(index.store)
    for (site, name), images in sorted(groups.items()):
        log.record(site, name, images, key, complete=True)
    try:
        for site in sorted({site for site, _ in groups}):
            rep = match_site(index.store, site)
            if rep.flights:
                say(f"history: site {site}: matched {', '.join(rep.flights)} ({_states(rep.states)})")
    except HistoryConfigError as e:
        raise CLIError(str(e)) from None


def _states(states: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(states.items())) or "no findings with a position"


def _nothing_scored(index, scan, p) -> str:  # noqa: ANN001
    """What was found when no image could be scored (every file unreadable)."""
    reasons: Counter[str] = Counter(pr.reason for pr in scan.problems)
    examples = [f"{pr.source}: {pr.message}" for pr in scan.problems]
    rows = index.files(it.source for it in scan.items)
    for it in scan.items:
        r = rows.get(it.source)
        reasons[r.error_reason if r is not None and r.error_reason else "not scored"] += 1
        if r is not None and r.error_reason:
            examples.append(f"{it.source}: {r.error}")
    found = len(scan.items) + len(scan.problems)
    what = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    first = f" ({examples[0]})" if len(examples) == 1 else f"; e.g. {examples[0]}" if examples else ""
    return f"no image could be scored: {found} file(s) found, {what}{first}"


def _run_ray(args, p, model_path, key, index, bar, say, stats) -> None:  # noqa: ANN001
    from rescore.local_runner import WorkerDied
    from rescore.ray_runner import RayUnavailable, cluster_cpus, connect, run_ray, shutdown
    from rescore.worker import ScorerSpec, default_cores

    try:
        started = connect(args.ray, num_cpus=default_cores())
    except RayUnavailable as e:
        raise CLIError(str(e)) from None
    try:
        threads = args.threads or 1
        fit = max(1, cluster_cpus() // threads)
        actors = args.workers or fit
        if actors > fit:
            say(f"rescore: the cluster has room for {fit} actors of {threads} CPU(s) now; using {fit}, not {actors}")
            actors = fit
        actors = max(1, min(actors, len(p.todo))) if p.todo else 1
        stats.workers, stats.threads = actors, threads
        spec = ScorerSpec(model_path, key, threads, args.config, args.batch_size, index.url)
        try:
            run_ray(
                p.todo,
                spec,
                index,
                actors=actors,
                chunk_size=args.chunk,
                commit_every=args.commit_every,
                on_progress=bar.update,
                stats=stats,
                copies=p.copies,
            )
        except Exception as e:  # noqa: BLE001 - Ray wraps worker failures in its own types
            if type(e).__module__.startswith("ray"):
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise WorkerDied(f"the Ray run failed ({type(e).__name__}: {first})") from e
            raise
    finally:
        if started:
            shutdown()


def _print_report(rep) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    from detector.priority import PRIORITIES

    console = Console(stderr=True)
    t = Table(title=f"{rep.images} images, {rep.with_result} scored by {rep.model_key}")
    for col in ("site", "flight", "images", "unreadable", "defects", "worst", *PRIORITIES):
        t.add_column(col, justify="left" if col in ("site", "flight") else "right")
    rows = sorted(rep.summaries.flights.items())
    for (site, flight), s in rows[:40]:
        t.add_row(
            site,
            flight,
            str(s.images),
            str(s.images_failed),
            str(s.defects),
            s.worst or "-",
            *(str(s.counts.get(p, 0)) for p in PRIORITIES),
        )
    if len(rows) > 40:
        t.add_row("...", f"{len(rows) - 40} more flights in summary.csv", *[""] * 7)
    console.print(t)
    if rep.unreadable:
        console.print(f"[red]{len(rep.unreadable)} unreadable file(s)[/red] (list: {rep.files['unreadable']}):")
        for u in rep.unreadable[:10]:
            console.print(f"  {u.reason:<12} {u.source}: {u.message}", highlight=False, markup=False)
        if len(rep.unreadable) > 10:
            console.print(f"  ... {len(rep.unreadable) - 10} more")
    if rep.missing:
        console.print(f"[yellow]{rep.missing} image(s) not scored yet[/yellow] (run again to continue)")
    c = rep.changes
    if c is not None:
        console.print(
            f"changes vs {c.previous}: {c.images_changed} of {c.images_compared} images changed; "
            f"{c.new} new, {c.vanished} vanished, {c.reprioritised} re-prioritised defects"
            + (f"; {c.not_in_previous} images not scored by {c.previous}" if c.not_in_previous else ""),
            highlight=False,
        )
    for note in rep.notes:
        console.print(f"[yellow]{note}[/yellow]")
    console.print(f"exports: {rep.out_dir}", highlight=False)
