/* pvwind-inspect viewer: upload a flight as a job, follow it, browse the results. Public API only
   (/v1/jobs...), the API key from the page kept in sessionStorage. No library, no build step. */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const COLORS = { P1: "#d7191c", P2: "#f07c1b", P3: "#e6c229", P4: "#2c7bb6" };
  const KEY = "pvwind.key";
  const SVGNS = "http://www.w3.org/2000/svg";
  let picked = [], job = null, results = null, poll = null, imageUrl = null;

  function el(tag, attrs, ...children) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const badge = (p) => el("span", { class: "badge" + (p ? "" : " none"), style: p ? "background:" + COLORS[p] : null }, p || "–");

  function showError(msg) { const e = $("error"); e.textContent = msg; e.hidden = !msg; }

  // ------------------------------------------------------------------ API
  function headers() { const k = sessionStorage.getItem(KEY); return k ? { "X-API-Key": k } : {}; }
  async function problem(res) {
    let body = null;
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    const msg = body && body.detail ? body.detail + " (" + res.status + " " + body.code + ")" : res.status + " " + res.statusText;
    return new Error(msg);
  }
  async function call(path, as) {
    const res = await fetch(path, { headers: headers() });
    if (!res.ok) throw await problem(res);
    return as === "blob" ? res.blob() : as === "text" ? res.text() : res.json();
  }

  // ------------------------------------------------------------------ key
  function keyState() { $("key-state").textContent = sessionStorage.getItem(KEY) ? "key set for this session" : "no key"; }
  $("key").value = sessionStorage.getItem(KEY) || "";
  $("key-save").addEventListener("click", () => {
    const k = $("key").value.trim();
    if (k) sessionStorage.setItem(KEY, k); else sessionStorage.removeItem(KEY);
    keyState();
  });
  keyState();

  // ------------------------------------------------------------------ choosing images
  const IMAGE = /\.(jpe?g|png|tiff?|webp)$/i;
  function choose(files) {
    picked = files.filter((f) => IMAGE.test(f.name) && !f.name.startsWith("."));
    const mb = picked.reduce((s, f) => s + f.size, 0) / 1e6;
    $("picked").textContent = picked.length ? picked.length + " files, " + mb.toFixed(1) + " MB" +
      (files.length > picked.length ? " (" + (files.length - picked.length) + " other files left out)" : "") : "no images chosen";
    $("start").disabled = !picked.length;
  }
  $("files").addEventListener("change", (e) => choose([...e.target.files]));
  $("folder").addEventListener("change", (e) => choose([...e.target.files]));
  async function walk(entry, out) {
    if (entry.isFile) { out.push(await new Promise((ok, bad) => entry.file(ok, bad))); return; }
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
      if (!batch.length) break;
      for (const e of batch) await walk(e, out);
    }
  }
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault(); drop.classList.remove("over");
    const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
    const out = [];
    if (entries.length) for (const en of entries) await walk(en, out); else out.push(...e.dataTransfer.files);
    choose(out);
  });

  // ------------------------------------------------------------------ job
  $("start").addEventListener("click", () => {
    showError("");
    const form = new FormData();
    for (const f of picked) form.append("files", f, f.name);
    form.append("asset_type", $("asset_type").value);
    for (const k of ["site", "flight"]) if ($(k).value.trim()) form.append(k, $(k).value.trim());
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/jobs");
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    $("start").disabled = true;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) $("picked").textContent = "uploading " + Math.round(100 * e.loaded / e.total) + " %"; };
    xhr.onload = () => {
      $("start").disabled = false;
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status !== 202) {
        showError("The service refused the upload: " + (body && body.detail ? body.detail + " (" + xhr.status + " " + body.code + ")" : xhr.status));
        return;
      }
      $("picked").textContent = picked.length + " files uploaded";
      follow(body.id);
    };
    xhr.onerror = () => { $("start").disabled = false; showError("upload failed: the service cannot be reached"); };
    xhr.send(form);
  });
  $("open").addEventListener("click", () => { const id = $("jobid").value.trim(); if (id) follow(id); });
  $("cancel").addEventListener("click", async () => {
    const res = await fetch("/v1/jobs/" + job, { method: "DELETE", headers: headers() });
    if (!res.ok) showError((await problem(res)).message);
  });

  function follow(id) {
    job = id; results = null;
    history.replaceState(null, "", "#job=" + id);
    $("job").hidden = false; $("results").hidden = true; $("job-id").textContent = id;
    clearTimeout(poll);
    tick();
  }
  async function tick() {
    let j;
    try { j = await call("/v1/jobs/" + job); } catch (e) { showError(e.message); return; }
    showError("");
    $("progress").value = j.progress;
    $("job-state").textContent = j.status + ": " + (j.done + j.failed) + " of " + j.total + " images" +
      (j.failed ? " (" + j.failed + " failed)" : "") + (j.site ? " · site " + j.site : "") + (j.flight ? " · flight " + j.flight : "");
    $("job-state").dataset.status = j.status;
    $("cancel").hidden = !(j.status === "queued" || j.status === "running");
    if (j.status === "queued" || j.status === "running") { poll = setTimeout(tick, 700); return; }
    await load();
  }

  // ------------------------------------------------------------------ results
  async function load() {
    try { results = await call("/v1/jobs/" + job + "/results"); } catch (e) { showError(e.message); return; }
    const s = results.summary;
    $("totals").textContent = s.images + " images, " + s.images_with_defects + " with findings, " + s.defects +
      " findings (P1 " + s.counts.P1 + ", P2 " + s.counts.P2 + ", P3 " + s.counts.P3 + ", P4 " + s.counts.P4 + "), " + s.images_failed + " failed";
    $("results").hidden = false;
    list(); map();
    const first = results.images.find((im) => im.status === "ok" && im.findings.length) || results.images.find((im) => im.status === "ok");
    if (first) show(first.index);
  }

  function list() {
    $("list").replaceChildren(...results.images.map((im) => {
      if (im.status === "error") {
        return el("li", { class: "rejected", "data-index": im.index }, el("span", { class: "name" }, im.source),
          el("span", { class: "msg" }, im.error.message + " (" + im.error.code + ")"));
      }
      const li = el("li", { "data-index": im.index }, badge(im.priority), el("span", { class: "name" }, im.source),
        el("span", { class: "muted" }, im.status === "ok" ? im.findings.length + " finding(s)" : im.status));
      li.addEventListener("click", () => show(im.index));
      return li;
    }));
  }

  function map() {
    const pts = [];
    for (const im of results.images) {
      if (im.camera && im.camera.latitude != null) pts.push({ lat: im.camera.latitude, lon: im.camera.longitude, cam: true, im });
      for (const f of im.findings || []) if (f.location) pts.push({ lat: f.location.latitude, lon: f.location.longitude, f, im });
    }
    if (!pts.length) { $("map").replaceChildren(el("p", { class: "muted" }, "no GPS positions in these images: no map")); return; }
    const W = 480, H = 300, PAD = 16;
    const lat0 = pts.reduce((s, p) => s + p.lat, 0) / pts.length, k = Math.cos(lat0 * Math.PI / 180);
    const xs = pts.map((p) => p.lon * k), ys = pts.map((p) => p.lat);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const s = Math.min((W - 2 * PAD) / Math.max(x1 - x0, 2e-4), (H - 2 * PAD) / Math.max(y1 - y0, 2e-4));
    const X = (p) => W / 2 + (p.lon * k - (x0 + x1) / 2) * s, Y = (p) => H / 2 - (p.lat - (y0 + y1) / 2) * s;
    const svg = el("svg:svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "map" });
    const rank = (p) => (p.f ? 5 - Number(p.f.priority.slice(1)) : -1);
    for (const p of pts.sort((a, b) => rank(a) - rank(b))) {
      const title = el("svg:title", {}, p.f ? p.f.priority + " " + p.f.class_name + " · " + p.im.source : "camera · " + p.im.source);
      const shape = p.f
        ? el("svg:circle", { cx: X(p), cy: Y(p), r: 5, fill: COLORS[p.f.priority], stroke: "#222", "stroke-width": 0.8, class: "finding" }, title)
        : el("svg:rect", { x: X(p) - 3, y: Y(p) - 3, width: 6, height: 6, fill: "none", stroke: "#667", class: "camera" }, title);
      shape.addEventListener("click", () => show(p.im.index));
      svg.append(shape);
    }
    $("map").replaceChildren(svg);
  }

  async function show(index) {
    const im = results.images.find((x) => x.index === index);
    document.querySelectorAll("#list li").forEach((li) => li.classList.toggle("on", Number(li.dataset.index) === index));
    const stage = $("stage");
    stage.replaceChildren(el("p", { class: "muted" }, "loading " + im.source + " …"));
    let blob;
    try { blob = await call("/v1/jobs/" + job + "/images/" + index, "blob"); } catch (e) { stage.replaceChildren(el("p", { class: "error" }, e.message)); return; }
    if (imageUrl) URL.revokeObjectURL(imageUrl);
    imageUrl = URL.createObjectURL(blob);
    const svg = el("svg:svg", { viewBox: "0 0 " + im.width + " " + im.height, preserveAspectRatio: "none" });
    const lw = Math.max(2, Math.min(im.width, im.height) / 250);
    for (const f of [...im.findings].reverse()) {
      const b = f.box;
      svg.append(el("svg:rect", { x: b.x1, y: b.y1, width: b.x2 - b.x1, height: b.y2 - b.y1, fill: "none",
        stroke: COLORS[f.priority], "stroke-width": lw, class: "box", "data-class": f.class_name },
        el("svg:title", {}, f.priority + " " + f.class_name + " " + f.confidence.toFixed(2))));
    }
    stage.replaceChildren(el("img", { src: imageUrl, alt: im.source }), svg);
    const rows = im.findings.map((f) => el("tr", {},
      el("td", {}, badge(f.priority)), el("td", {}, f.class_name), el("td", {}, f.confidence.toFixed(2)),
      el("td", {}, f.action + " · " + f.time_frame),
      el("td", {}, f.thermal ? "Tmax " + f.thermal.t_max_c + " °C, ΔT " + f.thermal.delta_t_k + " K" : ""),
      el("td", {}, f.location ? f.location.latitude.toFixed(6) + ", " + f.location.longitude.toFixed(6) : "—")));
    $("detail").replaceChildren(el("caption", {}, im.source + ": " + im.findings.length + " finding(s)"),
      el("tr", {}, ...["priority", "class", "confidence", "action · time frame", "thermal", "position"].map((h) => el("th", {}, h))), ...rows);
  }

  // ------------------------------------------------------------------ reports
  $("report-html").addEventListener("click", async () => {
    showError("");
    let html;
    try { html = await call("/v1/jobs/" + job + "/report?format=html", "text"); } catch (e) { showError(e.message); return; }
    const url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
    const frame = $("report-frame");
    frame.src = url; frame.hidden = false;
    const a = $("report-link"); a.href = url; a.download = "job-" + job + "-report.html"; a.hidden = false;
  });
  $("report-pdf").addEventListener("click", async () => {
    showError("");
    let blob;
    try { blob = await call("/v1/jobs/" + job + "/report?format=pdf", "blob"); } catch (e) { showError(e.message); return; }
    const a = $("pdf-link"); a.href = URL.createObjectURL(blob); a.download = "job-" + job + "-report.pdf"; a.hidden = false;
  });

  const m = /^#job=([0-9a-f]{32})$/.exec(location.hash);
  if (m) follow(m[1]);
})();
