"""The flight report (report/): built from real ``pvwind inspect`` results on mirror images, it holds
every finding with its crop and nothing from the network; names are escaped; the PDF has the same
content; a 2,000-image flight stays small. The browser side is in tests/test_browser.py."""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from detector_fixtures import REPO, XT2_FRAMES, need_xt2
from serving_fixtures import mirror_images

from detector.results import ImageResult
from report import ImageSource, ReportOptions, build_html, build_pdf, pdf_available


def embedded(html: str, element_id: str):
    m = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert m, f"no {element_id} in the page"
    return json.loads(m.group(1))


@functools.lru_cache(maxsize=1)
def inspected() -> Path:
    """``pvwind inspect`` + ``pvwind report`` on the XT2 frames (GPS, temperatures) and a few RGB PV
    and blade photos: an output folder as an operator has it (shared with tests/test_browser.py)."""
    need_xt2()
    out = Path(tempfile.mkdtemp(prefix="pvwind-report-")) / "out"
    images = list(XT2_FRAMES) + mirror_images(8)[2:]
    subprocess.run(
        [str(Path(sys.executable).parent / "pvwind"), "inspect", *map(str, images), "--out", str(out), "--quiet",
         "--site", "plant-7", "--flight", "2025-06-01-a"],
        check=True, timeout=180, cwd=REPO, env={**os.environ, "PVWIND_INFERENCE_THREADS": "1"},
    )  # fmt: skip
    from pvwind.commands import report

    p = argparse.ArgumentParser()
    report.add_arguments(p)
    assert report.run(p.parse_args([str(out)])) == 0
    return out


def load_results(out: Path) -> list[ImageResult]:
    return [ImageResult.model_validate(im) for im in json.loads((out / "results.json").read_text())["images"]]


def test_html_report_holds_every_finding_with_its_crop_and_nothing_external():
    out = inspected()
    results = load_results(out)
    html = (out / "report.html").read_text(encoding="utf-8")
    data = embedded(html, "report-data")
    got = sorted((Path(data["images"][f["img"]]["name"]).name, f["cls"], f["conf"], f["p"]) for f in data["findings"])
    want = sorted((Path(r.source).name, f.class_name, f.confidence, f.priority) for r in results for f in r.findings)
    assert got == want and len(want) >= 5
    thermal = [f for f in data["findings"] if f["t"]]
    assert thermal, "the XT2 frames' hotspots carry temperatures"
    assert all(f["t"]["dt"] is not None and f["t"]["max"] > f["t"]["ref"] for f in thermal)
    # one crop per finding, a small JPEG
    thumbs = embedded(html, "report-thumbs")
    assert sorted(map(int, thumbs)) == [f["id"] for f in data["findings"]]
    for uri in thumbs.values():
        assert uri.startswith("data:image/jpeg;base64,")
        img = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and max(img.shape[:2]) <= ReportOptions().thumb_px
    # every image with findings: an embedded annotated preview and the link to its annotated file
    previews = embedded(html, "report-previews")
    with_findings = {i for i, im in enumerate(data["images"]) if im["n"]}
    assert set(map(int, previews)) == with_findings
    for i in with_findings:
        assert (out / data["images"][i]["href"]).is_file()
    # the summary cards show the roll-up
    total = {p: sum(f.priority == p for r in results for f in r.findings) for p in ("P1", "P2", "P3", "P4")}
    for p, n in total.items():
        assert re.search(rf'class="card {p}[^"]*"[^>]*><div class="n">{n}</div>', html), p
    # the map draws the XT2 frames' footprints and the located findings
    located = sum(1 for f in data["findings"] if f["lat"] is not None)
    assert html.count('<polygon class="fp"') == len(XT2_FRAMES)
    assert html.count('<circle class="f"') == located > 0
    # self-contained: nothing loaded from elsewhere, and the page forbids it
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html, re.I)
    assert "url(" not in html.split("<script", 1)[0] and "@import" not in html
    assert "default-src 'none'" in html


def test_names_are_escaped():
    bad = '<img src=x onerror="alert(1)"></script><script>alert(2)</script>'
    r = load_results(inspected())
    hit = next(x for x in r if x.findings)
    html = build_html([hit.in_context(source=bad + ".jpg", site=bad, flight=bad)], title=bad)
    assert "<img src=x" not in html and "<script>alert(2)" not in html
    assert embedded(html, "report-data")["images"][0]["name"] == bad + ".jpg"


def test_pdf_has_the_same_content():
    if why := pdf_available():
        pytest.skip(why)
    pypdf = pytest.importorskip("pypdf", reason="pypdf reads the PDF back (pip install pypdf)")
    import io

    out = inspected()
    results = load_results(out)
    pdf = build_pdf(results, title="Flight report: plant-7", source=ImageSource(annotated=lambda r: None))
    assert pdf.startswith(b"%PDF-")
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    text = re.sub(r"\s+", " ", text)
    assert "Flight report: plant-7" in text
    for r in results:
        for f in r.findings:
            assert f.class_name in text
    n = sum(len(r.findings) for r in results)
    assert f"Findings ({n})" in text


@functools.lru_cache(maxsize=1)
def large_flight() -> tuple[Path, float, int]:
    """A 2,000-image flight (the real results repeated under distinct names, real image bytes):
    the report file, the seconds it took and the findings in it."""
    base = load_results(inspected())
    data = {r.source: Path(r.source).read_bytes() for r in base}
    results = [
        base[i % len(base)].in_context(source=f"flight/{i:04d}_{Path(base[i % len(base)].source).name}", index=i)
        for i in range(2000)
    ]
    t0 = time.perf_counter()
    html = build_html(results, source=ImageSource(original=lambda r: data[base[r.index % len(base)].source]))
    took = time.perf_counter() - t0
    path = Path(tempfile.mkdtemp(prefix="pvwind-large-")) / "report.html"
    path.write_text(html, encoding="utf-8")
    return path, took, sum(len(r.findings) for r in results)


def test_large_flight_report_stays_small():
    path, took, n = large_flight()
    html = path.read_text(encoding="utf-8")
    opts = ReportOptions()
    assert len(embedded(html, "report-data")["findings"]) == n > 500
    assert len(embedded(html, "report-thumbs")) == min(n, opts.max_thumbnails)
    assert len(embedded(html, "report-previews")) == opts.max_previews
    assert path.stat().st_size < 25e6, f"{path.stat().st_size / 1e6:.1f} MB"
    assert took < 60, f"{took:.1f} s"
