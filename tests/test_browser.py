"""The viewer and the flight report in a real headless Chromium (Debian's ``chromium``, driven by
Playwright's Python client; Playwright's own browser download is not needed): a person uploads a
flight through the page served by a real ``pvwind serve``, waits for the job, browses the
results, opens the report and sees the API's findings; the HTML report opens from disk with the
network blocked. Screenshots go to $PVWIND_SCREENSHOTS (``PVWIND_SCREENSHOTS=docs/img`` refreshes the
README's), else to a temporary folder: a test run never changes the checkout.

Skips with a message when Playwright or a Chromium binary is missing (``make test`` installs
both: ``apt-get install chromium`` as root)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
from serving_fixtures import API_KEY, REPO, Server, mirror_images
from test_report import inspected, large_flight

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright's Python client is not installed (pip install playwright)"
)

SHOTS = Path(os.environ.get("PVWIND_SCREENSHOTS") or Path(tempfile.gettempdir()) / "pvwind-screenshots")


def chromium_path() -> str | None:
    for cand in (os.environ.get("PVWIND_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if cand and (p := shutil.which(cand)):
            return p
    return None


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium installed (apt-get install chromium, or set PVWIND_CHROMIUM to a Chrome binary)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


# Until serving/app.py includes the report and viewer routers, add them to the app that
# ``pvwind serve`` builds (nothing is added once they are there).
LAUNCH = """
import sys
import serving.app as app_mod
from serving.routers import reports, ui
_create = app_mod.create_app
def create_app(*a, **k):
    app = _create(*a, **k)
    paths = {getattr(r, "path", None) for r in app.routes}
    if "/ui/" not in paths:
        app.include_router(ui.router)
    if "/v1/jobs/{job_id}/report" not in paths:
        app.include_router(reports.router)
    return app
app_mod.create_app = create_app
from pvwind.cli import main
sys.exit(main(sys.argv[1:]))
"""


class ViewerServer(Server):
    def __init__(self, workdir: Path, **kw) -> None:
        super().__init__(workdir, **kw)
        # the checkout's packages first (as pytest sees them), also those not yet in the install
        self.env["PYTHONPATH"] = os.pathsep.join(x for x in (str(REPO), self.env.get("PYTHONPATH")) if x)
        self.cmd = [sys.executable, "-c", LAUNCH, *self.cmd[1:]]


def _shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    png = page.screenshot()
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.std() > 10, "the screenshot is blank"
    img = cv2.resize(img, (img.shape[1] * 3 // 4, img.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])  # small enough for the README
    return path


def _report_rows(frame) -> list[tuple[str, str, str, str]]:
    """(image, class, confidence, priority) of every table row, the page size set to "all"."""
    frame.select_option("#f-size", "0")
    return sorted(
        tuple(r)
        for r in frame.eval_on_selector_all(
            "#rows tr",
            """rows => rows.map(r => [r.dataset.image.split('/').pop(),
                                     r.querySelector('td.cls').firstChild.textContent,
                                     r.querySelector('td.conf').textContent,
                                     r.querySelector('.badge').textContent])""",
        )
    )


def _api_rows(images: list[dict]) -> list[tuple[str, str, str, str]]:
    return sorted(
        (im["source"], f["class_name"], f"{f['confidence']:.2f}", f["priority"])
        for im in images
        for f in im.get("findings", [])
    )


def test_viewer_upload_job_browse_and_report(browser, tmp_path):
    """Upload real mirror images (and one text file named .jpg) through the page, with and without
    the key; follow the job; the list, the image with boxes and the report show the API's results."""
    images = mirror_images(6)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image\n")
    with ViewerServer(tmp_path) as server:
        ctx = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        assert page.url.endswith("/ui/")
        page.set_input_files("#files", [str(p) for p in images] + [str(bad)])
        page.fill("#site", "plant-7")
        page.fill("#flight", "2025-06-01-a")
        page.select_option("#asset_type", "auto")
        # no key yet: the API's refusal is shown as it is
        page.click("#start")
        page.wait_for_selector("#error:not([hidden])")
        assert "missing_api_key" in page.inner_text("#error")
        page.fill("#key", API_KEY)
        page.click("#key-save")
        assert page.evaluate("sessionStorage.getItem('pvwind.key')") == API_KEY
        page.click("#start")
        page.wait_for_selector("#job-state[data-status=done]", timeout=90_000)
        page.wait_for_selector("#results:not([hidden]) #list li")
        job_id = page.inner_text("#job-id")

        with server.client() as c:
            api = c.get(f"/v1/jobs/{job_id}/results").json()
        assert len(api["images"]) == len(images) + 1
        assert api["summary"]["defects"] > 0, "the chosen images should have findings"
        assert api["job"]["site"] == "plant-7" and api["job"]["flight"] == "2025-06-01-a"

        # the list: one entry per upload, the rejected file with the API's message
        items = page.query_selector_all("#list li")
        assert len(items) == len(api["images"])
        rejected = [im for im in api["images"] if im["status"] == "error"]
        assert [im["source"] for im in rejected] == ["notes.jpg"]
        err_li = page.query_selector("#list li.rejected")
        assert rejected[0]["error"]["message"] in err_li.inner_text()
        assert rejected[0]["error"]["code"] in err_li.inner_text()

        # image with boxes: as many boxes as the API has findings for it
        worst = max(
            api["images"],
            key=lambda im: (
                len(im.get("findings", [])),
                max((f["area_frac"] for f in im.get("findings", [])), default=0),
            ),
        )
        page.click(f'#list li[data-index="{worst["index"]}"]')
        page.wait_for_function(
            "n => document.querySelectorAll('#stage svg rect.box').length === n && "
            "document.querySelector('#stage img').naturalWidth > 0",
            arg=len(worst["findings"]),
        )
        assert page.locator("#detail tr").count() == len(worst["findings"]) + 1
        located = sum(1 for im in api["images"] for f in im.get("findings", []) if f.get("location"))
        assert page.locator("#map circle.finding").count() == located

        # the report, fetched by the page with the key and shown in the page
        page.click("#report-html")
        frame_el = page.wait_for_selector("#report-frame:not([hidden])")
        frame = frame_el.content_frame()
        frame.wait_for_selector("#rows tr")
        assert _report_rows(frame) == _api_rows(api["images"])
        for p in ("P1", "P2", "P3", "P4"):
            shown = frame.inner_text(f".card.{p} .n")
            assert int(shown) == api["summary"]["counts"][p], p
        assert frame.locator("#failed li").filter(has_text="notes.jpg").count() == 1
        page.click(f'#list li[data-index="{worst["index"]}"]')
        page.wait_for_function("document.querySelector('#stage img') && document.querySelector('#stage img').complete")
        page.evaluate("document.getElementById('results').scrollIntoView()")
        _shot(page, "viewer.png")
        # the PDF of the same job, through the page
        page.click("#report-pdf")
        page.wait_for_selector("#pdf-link:not([hidden])")
        with page.expect_download() as dl:
            page.click("#pdf-link")
        pdf = Path(dl.value.path()).read_bytes()
        assert pdf.startswith(b"%PDF-")
        assert not errors, errors
        ctx.close()


@pytest.fixture(scope="module")
def inspect_out() -> Path:
    return inspected()


def test_report_from_disk_offline(browser, inspect_out):
    """The HTML report opened as a file with every network request blocked: it loads nothing but
    itself, shows every finding of results.json, filters, sorts, pages, maps and previews."""
    doc = json.loads((inspect_out / "results.json").read_text())
    expected = _api_rows([{**im, "source": Path(im["source"]).name} for im in doc["images"]])
    assert expected, "the mirror images should have findings"
    ctx = browser.new_context(viewport={"width": 1280, "height": 1500}, offline=True)
    requests: list[str] = []
    ctx.route(
        "**/*",
        lambda route: (
            requests.append(route.request.url),
            route.continue_() if route.request.url.startswith("file:") else route.abort(),
        ),
    )  # noqa: E501
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    url = (inspect_out / "report.html").as_uri()
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("#rows tr")
    load_s = time.perf_counter() - t0
    assert requests == [url], f"the report asked for more than itself: {requests}"
    assert not errors, errors
    assert load_s < 10
    # thumbnails decoded (they are data: URIs, so no request was needed)
    assert page.eval_on_selector_all("#rows img", "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#rows img").count() > 0
    _shot(page, "report.png")
    assert _report_rows(page) == expected
    # filter by priority: only that priority left
    worst = min(r[3] for r in expected)
    for box in page.query_selector_all('#filters input[name="priority"]'):
        if box.get_attribute("value") != worst:
            box.uncheck()
    shown = page.eval_on_selector_all("#rows .badge", "bs => bs.map(b => b.textContent)")
    assert shown and set(shown) == {worst} and len(shown) == sum(r[3] == worst for r in expected)
    # sort by confidence (descending on first click)
    for box in page.query_selector_all('#filters input[name="priority"]'):
        box.check()
    page.click('th[data-sort="conf"]')
    confs = [float(c) for c in page.eval_on_selector_all("#rows td.conf", "cs => cs.map(c => c.textContent)")]
    assert confs == sorted(confs, reverse=True) and len(confs) == len(expected)
    # a dot on the map points at its row
    dot = page.query_selector("svg.map circle.f")
    assert dot is not None, "the XT2 frames have positions: the map should have dots"
    fid = dot.get_attribute("data-f")
    dot.click()
    page.wait_for_selector(f'tr[data-finding="{fid}"].flash')
    # each finding links to its annotated image: the embedded preview, and the file beside the report
    link = page.query_selector(f'tr[data-finding="{fid}"] td.name a')
    href = link.get_attribute("href")
    assert (inspect_out / href).is_file() and href.startswith("annotated/")
    link.click()
    page.wait_for_selector("#lightbox:not([hidden])")
    assert page.eval_on_selector("#lb-img", "i => i.complete && i.naturalWidth > 0")
    ctx.close()


def test_large_flight_report_opens_quickly(browser):
    """2,000 images: the page shows its first rows fast and keeps only one page of rows in the DOM."""
    path, _, n = large_flight()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    t0 = time.perf_counter()
    page.goto(path.as_uri())
    page.wait_for_selector("#rows tr")
    took = time.perf_counter() - t0
    assert took < 8, f"{took:.1f} s to the first rows"
    assert page.locator("#rows tr").count() == 50
    assert page.inner_text("#range") == f"1–50 of {n}"
    page.click("#next")
    assert page.inner_text("#range") == f"51–100 of {n}"
    page.close()
