"""Builds the report from a list of :class:`ImageResult`: the data (findings, images, counts,
thumbnails, previews), the HTML page around it and the PDF."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from detector.annotate import annotate
from detector.priority import PRIORITIES, PriorityConfig, load_priority_config, priority_rank
from detector.results import ImageResult, total_summary
from report.images import data_uri, fit, jpeg, load_pixels, rgb, thumbnail
from report.svgmap import MapPoint, svg_map

STATIC = Path(__file__).resolve().parent / "static"
Fetch = Callable[[ImageResult], "bytes | None"]


@dataclass
class ImageSource:
    """Where the report finds an image. ``original``: the image's own bytes (the report crops the
    thumbnails from them and draws the boxes itself); ``annotated``: the bytes of an annotated copy
    (used when the original is missing, and for the preview); ``link``: the href of the annotated
    image (e.g. ``annotated/x.jpg`` beside the report), shown with each finding. Each may be None
    or return None for an image."""

    original: Fetch | None = None
    annotated: Fetch | None = None
    link: Callable[[ImageResult], str | None] | None = None


@dataclass
class ReportOptions:
    """Size limits, so that a 2,000-image flight still opens quickly."""

    thumb_px: int = 112  # longer side of a finding's crop
    max_thumbnails: int = 4000  # findings with a crop, most urgent first (the rest: none)
    preview_px: int = 640  # longer side of an embedded annotated image
    preview_quality: int = 55
    max_previews: int = 100  # images with an embedded preview, most urgent first (0: none)
    page_size: int = 50  # table rows per page
    pdf_max_findings: int = 300  # table rows in the PDF, most urgent first
    max_pixels: int | None = None  # decoder pixel ceiling (None: the detector's)


@dataclass
class ReportData:
    title: str
    meta: list[tuple[str, str]]
    images: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    thumbs: dict[int, str] = field(default_factory=dict)
    previews: dict[int, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    by_asset: dict[str, dict[str, int]] = field(default_factory=dict)
    map_svg: str | None = None
    priorities: dict[str, dict[str, str]] = field(default_factory=dict)
    pending: int = 0


def _rounded(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(float(v), nd)


def report_data(
    results: Sequence[ImageResult],
    *,
    title: str = "Inspection report",
    source: ImageSource | None = None,
    meta: Sequence[tuple[str, str]] = (),
    options: ReportOptions | None = None,
    config: PriorityConfig | None = None,
) -> ReportData:
    """Everything the page shows, as plain data (the HTML and the PDF render it)."""
    opts = options or ReportOptions()
    cfg = config or load_priority_config()
    src = source or ImageSource()
    colors = {p: cfg.color(p) for p in PRIORITIES}
    data = ReportData(title=title, meta=list(meta))
    data.priorities = {
        p: {"color": colors[p], "label": cfg.priorities[p].label, "meaning": cfg.priorities[p].meaning}
        for p in PRIORITIES
    }
    names = [r.source or (r.sha256 or "")[:12] or f"image {i + 1}" for i, r in enumerate(results)]
    points: list[MapPoint] = []
    for i, r in enumerate(results):
        href = src.link(r) if src.link else None
        data.images.append(
            {
                "name": names[i],
                "site": r.site,
                "flight": r.flight,
                "status": r.status,
                "w": r.width,
                "h": r.height,
                "worst": r.priority,
                "n": len(r.findings),
                "err": (f"{r.error.message} ({r.error.code})" if r.error else None),
                "href": href,
                "warn": list(r.warnings),
            }
        )
        for f in r.findings:
            fid = len(data.findings)
            loc = f.location
            t = f.thermal
            data.findings.append(
                {
                    "id": fid,
                    "img": i,
                    "p": f.priority,
                    "cls": f.class_name,
                    "asset": f.asset,
                    "conf": f.confidence,
                    "action": f.action,
                    "tf": f.time_frame,
                    "level": f.level_label,
                    "reasons": list(f.reasons),
                    "by": f.found_by,
                    "box": [round(v) for v in f.box.xyxy],
                    "lat": loc.latitude if loc else None,
                    "lon": loc.longitude if loc else None,
                    "q": loc.quality if loc else None,
                    "t": (
                        {
                            "max": _rounded(t.t_max_c),
                            "mean": _rounded(t.t_mean_c),
                            "ref": _rounded(t.t_ref_c),
                            "dt": _rounded(t.delta_t_k),
                            "dtn": _rounded(t.delta_t_norm_k),
                        }
                        if t
                        else None
                    ),
                }
            )
            if loc:
                label = f"{f.priority} {f.class_name} {f.confidence:.2f} - {names[i]}"
                points.append(MapPoint(fid, i, loc.latitude, loc.longitude, f.priority, label))
            cls = data.by_class.setdefault(f.class_name, dict.fromkeys(PRIORITIES, 0))
            cls[f.priority] = cls.get(f.priority, 0) + 1
            asset = data.by_asset.setdefault(f.asset or "other", dict.fromkeys(PRIORITIES, 0))
            asset[f.priority] = asset.get(f.priority, 0) + 1
    data.by_class = dict(sorted(data.by_class.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])))
    data.summary = total_summary(results).to_dict()
    data.pending = sum(r.status == "pending" for r in results)
    data.map_svg = svg_map(results, points, colors, names)
    _pictures(results, data, src, opts, cfg)
    return data


def _pictures(
    results: Sequence[ImageResult], data: ReportData, src: ImageSource, opts: ReportOptions, cfg: PriorityConfig
) -> None:
    """Thumbnails of the most urgent findings and previews of the most urgent images, decoding
    each image at most once (and one at a time: a large flight never sits in memory)."""
    if src.original is None and src.annotated is None:
        return
    ranked = sorted(data.findings, key=lambda f: (priority_rank(f["p"]), -f["conf"], f["id"]))
    want_thumb = {f["id"] for f in ranked[: max(0, opts.max_thumbnails)]}
    with_findings = [i for i, im in enumerate(data.images) if im["n"]]
    with_findings.sort(key=lambda i: (priority_rank(data.images[i]["worst"]), -data.images[i]["n"], i))
    want_preview = set(with_findings[: max(0, opts.max_previews)])
    by_image: dict[int, list[dict[str, Any]]] = {}
    for f in data.findings:
        by_image.setdefault(f["img"], []).append(f)
    for i, r in enumerate(results):
        fs = [f for f in by_image.get(i, []) if f["id"] in want_thumb]
        if not fs and i not in want_preview:
            continue
        pixels = load_pixels(src.original(r), opts.max_pixels) if src.original else None
        drawn = None
        if pixels is None and src.annotated:
            pixels = drawn = load_pixels(src.annotated(r), opts.max_pixels)
        if pixels is None:
            continue
        h, w = pixels.shape[:2]
        sx, sy = (w / r.width if r.width else 1.0), (h / r.height if r.height else 1.0)
        for f in fs:
            x1, y1, x2, y2 = f["box"]
            box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
            data.thumbs[f["id"]] = data_uri(thumbnail(pixels, box, rgb(cfg.color(f["p"])), opts.thumb_px))
        if i in want_preview:
            if drawn is None and src.annotated and src.original:
                drawn = load_pixels(src.annotated(r), opts.max_pixels)
            if drawn is None and abs(sx - 1) < 0.01 and abs(sy - 1) < 0.01:
                drawn = annotate(pixels, r, cfg)
            if drawn is not None:
                data.previews[i] = data_uri(jpeg(fit(drawn, opts.preview_px), opts.preview_quality))


# ---------------------------------------------------------------------------------- HTML
def _json_script(element_id: str, value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _static(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


CSP = (
    "default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)


def _summary_html(d: ReportData) -> str:
    s = d.summary
    cards = []
    for p in PRIORITIES:
        info = d.priorities[p]
        n = s["counts"].get(p, 0)
        cards.append(
            f'<div class="card {p}{" zero" if not n else ""}" style="--c:{info["color"]}" data-priority="{p}">'
            f'<div class="n">{n}</div><div class="p">{p} <span>{escape(info["label"])}</span></div>'
            f'<div class="m">{escape(info["meaning"])}</div></div>'
        )
    head = "".join(f"<th>{p}</th>" for p in PRIORITIES)

    def table(caption: str, rows: dict[str, dict[str, int]], cls: str) -> str:
        if not rows:
            return ""
        body = "".join(
            f"<tr><th>{escape(k)}</th>"
            + "".join(f'<td class="{p}">{v.get(p, 0) or ""}</td>' for p in PRIORITIES)
            + f"<td>{sum(v.values())}</td></tr>"
            for k, v in rows.items()
        )
        return (
            f'<table class="counts {cls}"><caption>{caption}</caption><thead><tr><th></th>{head}<th>total</th>'
            f"</tr></thead><tbody>{body}</tbody></table>"
        )

    images = (
        f'<p class="facts"><b>{s["images"]}</b> images scored, <b>{s["images_with_defects"]}</b> with findings, '
        f"<b>{s['defects']}</b> findings, <b>{s['images_failed']}</b> failed"
        + (f', <b class="pending">{d.pending}</b> still pending (the job is running)' if d.pending else "")
        + "</p>"
    )
    return (
        f'<section id="summary"><h2>Summary</h2>{images}<div class="cards">{"".join(cards)}</div>'
        f'<div class="tables">{table("Findings by class", d.by_class, "by-class")}'
        f"{table('Findings by asset', d.by_asset, 'by-asset')}</div></section>"
    )


def _map_html(d: ReportData) -> str:
    legend = "".join(
        f'<span><i style="background:{d.priorities[p]["color"]}"></i>{p} {escape(d.priorities[p]["label"])}</span>'
        for p in PRIORITIES
    )
    located = sum(1 for f in d.findings if f["lat"] is not None)
    if d.map_svg is None:
        body = '<p class="none">No image in this set has a GPS position, so there is nothing to draw.</p>'
    else:
        body = (
            f'<div class="mapbox">{d.map_svg}</div><p class="legend">{legend}'
            '<span><i class="fp"></i>image footprint</span><span><i class="cam"></i>camera position</span></p>'
            f'<p class="note">{located} of {len(d.findings)} findings have a ground position. '
            "No base map: footprints and camera positions give the context."
            '<span class="html-only"> Click a dot to find it in the table.</span></p>'
        )
    return f'<section id="map"><h2>Map</h2>{body}</section>'


def _cell_temps(t: dict[str, Any] | None) -> str:
    if not t:
        return ""
    out = f"T<sub>max</sub> {t['max']} °C<br>T<sub>ref</sub> {t['ref']} °C<br><b>ΔT {t['dt']} K</b>"
    if t.get("dtn") is not None:
        out += f"<br>ΔT<sub>1000</sub> {t['dtn']} K"
    return out


def _base(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def _static_rows(d: ReportData, limit: int) -> tuple[str, int]:
    ranked = sorted(d.findings, key=lambda f: (priority_rank(f["p"]), -f["conf"], f["id"]))
    rows = []
    for f in ranked[:limit]:
        im = d.images[f["img"]]
        thumb = d.thumbs.get(f["id"])
        pos = f"{f['lat']:.6f}, {f['lon']:.6f}" if f["lat"] is not None else "—"
        rows.append(
            f'<tr class="{f["p"]}"><td>{f"<img src={json.dumps(thumb)} alt>" if thumb else ""}</td>'
            f'<td><span class="badge" style="--c:{d.priorities[f["p"]]["color"]}">{f["p"]}</span></td>'
            f"<td>{escape(f['cls'])}<br><small>{escape(f['by'])}</small></td><td>{f['conf']:.2f}</td>"
            f"<td>{escape(f['action'])}<br><small>{escape(f['tf'])}</small></td>"
            f'<td>{_cell_temps(f["t"])}</td><td>{pos}</td><td class="name">{escape(_base(im["name"]))}</td></tr>'
        )
    return "".join(rows), max(0, len(ranked) - limit)


HEADERS = (
    ("thumb", ""),
    ("p", "priority"),
    ("cls", "class"),
    ("conf", "confidence"),
    ("action", "action · time frame"),
    ("dt", "temperatures"),
    ("pos", "position"),
    ("img", "image"),
)


def _findings_html(d: ReportData, pdf: bool, opts: ReportOptions) -> str:
    sortable = ("p", "cls", "conf", "dt", "img")
    head = "".join(
        f'<th data-sort="{k}" class="sortable">{label}</th>' if (k in sortable and not pdf) else f"<th>{label}</th>"
        for k, label in HEADERS
    )
    if pdf:
        rows, rest = _static_rows(d, opts.pdf_max_findings)
        more = (
            f'<p class="note">{rest} less urgent findings are not listed here; the HTML report and the CSV '
            "have all of them.</p>"
            if rest
            else ""
        )
        return (
            f'<section id="findings"><h2>Findings ({len(d.findings)})</h2><table class="findings"><thead><tr>'
            f"{head}</tr></thead><tbody>{rows}</tbody></table>{more}</section>"
        )
    prio_boxes = "".join(
        f'<label class="chip" style="--c:{d.priorities[p]["color"]}"><input type="checkbox" name="priority" '
        f'value="{p}" checked> {p}</label>'
        for p in PRIORITIES
    )
    classes = "".join(f'<option value="{escape(c)}">{escape(c)}</option>' for c in d.by_class)
    assets = "".join(f'<option value="{escape(a)}">{escape(a)}</option>' for a in d.by_asset)
    sizes = "".join(
        f'<option value="{n}"{" selected" if n == opts.page_size else ""}>{n if n else "all"}</option>'
        for n in sorted({opts.page_size, 25, 100, 500}) + [0]
    )
    return (
        f'<section id="findings"><h2>Findings (<span id="count">{len(d.findings)}</span>)</h2>'
        f'<form class="filters" id="filters" onsubmit="return false">{prio_boxes}'
        f'<select id="f-class" aria-label="class"><option value="">all classes</option>{classes}</select>'
        f'<select id="f-asset" aria-label="asset"><option value="">all assets</option>{assets}</select>'
        '<input id="f-text" type="search" placeholder="image name" aria-label="image name">'
        f'<label>rows <select id="f-size">{sizes}</select></label></form>'
        f'<table class="findings" id="table"><thead><tr>{head}</tr></thead><tbody id="rows"></tbody></table>'
        '<noscript><p class="note">The table needs JavaScript; the PDF and the CSV list the findings without it.'
        "</p></noscript>"
        '<nav class="pager" id="pager"><button type="button" id="prev">‹ previous</button><span id="range"></span>'
        '<button type="button" id="next">next ›</button></nav></section>'
    )


def _failed_html(d: ReportData) -> str:
    bad = [im for im in d.images if im["status"] == "error"]
    warned = [im for im in d.images if im["warn"]]
    if not bad and not warned:
        return ""
    items = "".join(f"<li><b>{escape(im['name'])}</b>: {escape(im['err'] or 'failed')}</li>" for im in bad)
    items += "".join(f"<li><b>{escape(im['name'])}</b>: {escape('; '.join(im['warn']))}</li>" for im in warned)
    return f'<section id="failed"><h2>Images not scored or with warnings</h2><ul>{items}</ul></section>'


def render_html(d: ReportData, *, pdf: bool = False, options: ReportOptions | None = None) -> str:
    opts = options or ReportOptions()
    meta = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in d.meta)
    scripts = ""
    if not pdf:
        scripts = (
            _json_script("report-data", {"images": d.images, "findings": d.findings, "priorities": d.priorities,
                                         "pageSize": opts.page_size})
            + _json_script("report-thumbs", {str(k): v for k, v in d.thumbs.items()})
            + _json_script("report-previews", {str(k): v for k, v in d.previews.items()})
            + f"<script>{_static('report.js')}</script>"
        )  # fmt: skip
    lightbox = (
        ""
        if pdf
        else '<div id="lightbox" hidden><div class="lb"><button type="button" id="lb-close" aria-label="close">×'
        '</button><img id="lb-img" alt=""><p id="lb-caption"></p></div></div>'
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(d.title)}</title>'
        f"<style>{_static('report.css')}</style></head>"
        f'<body class="{"pdf" if pdf else "html"}"><header><h1>{escape(d.title)}</h1><dl class="meta">{meta}</dl>'
        f"</header><main>{_summary_html(d)}{_map_html(d)}{_findings_html(d, pdf, opts)}{_failed_html(d)}</main>"
        f"{lightbox}{scripts}</body></html>\n"
    )


def default_meta(results: Sequence[ImageResult], extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """Site, flight, model (when the results agree on them), the given items, and the time made."""
    out: list[tuple[str, str]] = []
    given = {k for k, _ in extra}
    for label, attr in (("Site", "site"), ("Flight", "flight"), ("Model", "model")):
        if label in given:
            continue
        vals = sorted({str(v) for r in results if (v := getattr(r, attr))})
        if vals:
            out.append(
                (
                    label,
                    vals[0] if len(vals) == 1 else f"{len(vals)} ({', '.join(vals[:3])}{', ...' * (len(vals) > 3)})",
                )
            )
    out.extend(extra)
    out.append(("Generated", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")))
    return out


def build_html(
    results: Sequence[ImageResult],
    *,
    title: str = "Inspection report",
    source: ImageSource | None = None,
    meta: Sequence[tuple[str, str]] = (),
    options: ReportOptions | None = None,
    config: PriorityConfig | None = None,
) -> str:
    """The self-contained HTML report of ``results``."""
    d = report_data(
        results, title=title, source=source, meta=default_meta(results, meta), options=options, config=config
    )
    return render_html(d, options=options)


def pdf_available() -> str | None:
    """None when PDFs can be made here, else why not (one line)."""
    try:
        import weasyprint  # noqa: F401
    except ImportError:
        return "PDF reports need WeasyPrint: pip install weasyprint (and Debian's libpango-1.0-0)"
    except OSError as e:  # the Python package is there, its system libraries are not
        return f"PDF reports need Pango (apt-get install libpango-1.0-0 libpangoft2-1.0-0): {e}"
    return None


def build_pdf(
    results: Sequence[ImageResult],
    *,
    title: str = "Inspection report",
    source: ImageSource | None = None,
    meta: Sequence[tuple[str, str]] = (),
    options: ReportOptions | None = None,
    config: PriorityConfig | None = None,
) -> bytes:
    """The same report as a PDF (summary, map, the most urgent findings with their crops)."""
    why = pdf_available()
    if why:
        raise RuntimeError(why)
    import weasyprint

    opts = options or ReportOptions()
    # only the rows the PDF lists need a crop
    opts = ReportOptions(**{**opts.__dict__, "max_thumbnails": min(opts.max_thumbnails, opts.pdf_max_findings),
                            "max_previews": 0})  # fmt: skip
    d = report_data(results, title=title, source=source, meta=default_meta(results, meta), options=opts, config=config)
    return weasyprint.HTML(string=render_html(d, pdf=True, options=opts)).write_pdf()
