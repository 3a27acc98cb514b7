"""``pvwind history [SITE] [--db STORE] [--from FLIGHT] [--to FLIGHT] [--format table|json|geojson|csv]``.

A site's flights, what changed between two of them (default: the last two) with early
warnings and the estimated energy loss, or (``--findings``) its open findings with their
history; without SITE, the sites of the store. The site's tracks are brought up to date
first (``--rematch``: rebuilt from its first flight). See docs/history.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pvwind.cli import CLIError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Findings across flights: a site's flights, the changes between two flights (new, persistent, worsened, "
        "resolved, reappeared), early warnings and the estimated energy loss."
    )
    parser.add_argument("site", nargs="?", help="the site (without: list the sites of the store)")
    parser.add_argument(
        "--db",
        default="results.db",
        metavar="STORE",
        help="result store: a SQLite file or a SQLAlchemy URL (default: results.db, as pvwind rescore --out)",
    )
    parser.add_argument(
        "--from", dest="from_", metavar="FLIGHT", help="flight name or date YYYY-MM-DD (default: the one before --to)"
    )
    parser.add_argument("--to", metavar="FLIGHT", help="flight name or date (default: the latest)")
    parser.add_argument(
        "--findings", action="store_true", help="the open findings with their history instead of changes"
    )
    parser.add_argument("--status", choices=["open", "resolved", "all"], default="open", help="with --findings")
    parser.add_argument("--format", choices=["table", "json", "geojson", "csv"], default="table")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write there instead of standard output")
    parser.add_argument("--rematch", action="store_true", help="rebuild the site's tracks from its first flight")
    parser.add_argument("--config", type=Path, help="history settings (default: configs/history.yaml)")
    parser.add_argument("--sites", type=Path, help="plant data per site (default: $PVWIND_SITES or configs/sites.yaml)")


def _open(value: str) -> Any:
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from storage.database import database_url, shown_url
    from storage.store import Store

    url = database_url(value)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise CLIError(f"--db {value}: no such store")
    try:
        return Store.from_url(url)
    except ArgumentError as e:
        raise CLIError(f"--db {value}: not a database URL ({e})") from None
    except ModuleNotFoundError as e:
        raise CLIError(f"--db {shown_url(value)}: the database driver {e.name} is not installed") from None
    except (SQLAlchemyError, OSError) as e:
        first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
        raise CLIError(f"cannot open the result store {shown_url(value)}: {first}") from None


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise CLIError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"pvwind history: wrote {out}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from history import queries
    from history.config import HistoryConfigError, load_history_config, load_sites_config
    from history.tracker import match_site

    try:
        cfg = load_history_config(args.config)
        sites = load_sites_config(args.sites)
    except HistoryConfigError as e:
        raise CLIError(str(e)) from None
    store = _open(args.db)
    try:
        if not args.site:
            rows = queries.list_sites(store)
            if args.format == "table":
                _print_sites(rows)
            else:
                _emit(json.dumps(rows, indent=2, default=str), args.out)
            return 0
        try:
            match_site(store, args.site, cfg=cfg, sites=sites, rematch=args.rematch)
            if args.findings:
                res = queries.list_findings(store, args.site, status=args.status, limit=100_000)
            else:
                res = queries.changes(store, args.site, args.from_, args.to)
        except queries.NotFound as e:
            raise CLIError(str(e)) from None
        if args.format == "json":
            _emit(json.dumps(res, indent=2, default=str), args.out)
        elif args.format == "geojson":
            if args.findings:
                raise CLIError("--format geojson is for changes (without --findings)")
            _emit(json.dumps(queries.changes_geojson(res), default=str), args.out)
        elif args.format == "csv":
            if args.findings:
                raise CLIError("--format csv is for changes (without --findings)")
            _emit(queries.changes_csv(res), args.out)
        elif args.findings:
            _print_findings(res)
        else:
            _print_changes(queries.list_flights(store, args.site), res)
        return 0
    finally:
        store.close()


def _print_sites(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{len(rows)} site(s)")
    for col in ("site", "flights", "last flight", "date", "open findings", "warnings", "est. loss W", "kWh/year"):
        t.add_column(col, justify="left" if col in ("site", "last flight", "date") else "right")
    for r in rows:
        last = r["last_flight"] or {}
        t.add_row(
            r["site"], str(r["flights"]), last.get("name") or "-", last.get("date") or "-", str(r["open_findings"]),
            str(r["warnings"]), f"{r['estimated_loss_w']:.0f}", f"{r['estimated_loss_kwh_year']:.0f}",
        )  # fmt: skip
    Console().print(t)


def _print_changes(flights: dict[str, Any], res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"site {res['site']}: {len(flights['flights'])} flight(s)")
    for col in ("flight", "date", "images", "findings", "new", "worsened", "resolved", "reappeared", "warnings",
                "est. loss W", "recovered W"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("flight", "date") else "right")
    for f in flights["flights"]:
        st = f["states"]
        t.add_row(
            f["name"], f["date"] or "-", str(f["images"]), str(f["findings"]), str(st["new"]), str(st["worsened"]),
            str(st["resolved"]), str(st["reappeared"]), str(f["warnings"]), f"{f['loss_w']:.1f}",
            f"{f['recovered_w']:.1f}",
        )  # fmt: skip
    console.print(t)
    c, loss = res["counts"], res["estimated_loss"]
    console.print(
        f"{res['from']['name']} -> {res['to']['name']}: "
        + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in c.items() if v)
        + f"; estimated loss {loss['from_w']:.1f} -> {loss['to_w']:.1f} W ({loss['to_kwh_year']:.0f} kWh/year), "
        f"recovered {loss['recovered_w']:.1f} W ({loss['recovered_kwh_year']:.0f} kWh/year) [estimate]",
        highlight=False,
    )
    ct = Table()
    for col in ("track", "state", "class", "priority", "lat", "lon", "growth", "warning"):
        ct.add_column(col)
    shown = [x for x in res["changes"] if x["state"] != "persistent" or x["warnings"]]
    for x in shown[:40]:
        g = x.get("growth") or {}
        grow = []
        if g.get("area_growth_pct") is not None:
            grow.append(f"{g['area_growth_pct']:+.0f} %")
        if g.get("delta_t_rise_k") is not None:
            grow.append(f"ΔT {g['delta_t_rise_k']:+.1f} K")
        base = x["base_priority"]
        prio = x["priority"] or "-"
        if base and base != x["priority"]:
            prio = f"{base}->{prio}"
        ct.add_row(
            str(x["track"]), x["state"], x["class_name"], prio,
            f"{x['latitude']:.6f}" if x["latitude"] is not None else "-",
            f"{x['longitude']:.6f}" if x["longitude"] is not None else "-",
            ", ".join(grow), "; ".join(w["reason"] for w in x["warnings"]),
        )  # fmt: skip
    if shown:
        console.print(ct)
    if len(shown) > 40:
        console.print(f"... {len(shown) - 40} more (--format csv / json for all)")


def _print_findings(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"site {res['site']}: {res['total']} {res['status']} finding(s)")
    for col in ("track", "class", "priority", "state", "seen", "first", "last", "history", "warning"):
        t.add_column(col)
    for x in res["findings"][:200]:
        hist = " ".join(f"{h['flight']}:{h['state'][:4]}" for h in x["history"])
        t.add_row(
            str(x["track"]), x["class_name"], x["priority"] or "-", x["state"], str(x["seen"]),
            x["first_flight"] or "-", x["last_flight"] or "-", hist, "; ".join(w["reason"] for w in x["warnings"]),
        )  # fmt: skip
    Console().print(t)
