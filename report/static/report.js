/* The flight report's table: filter, sort and page the findings embedded in the page, link them
   to the map and show each image with its boxes. No network, no library. */
(function () {
  "use strict";
  const json = (id) => JSON.parse(document.getElementById(id).textContent);
  const D = json("report-data"), THUMBS = json("report-thumbs"), PREVIEWS = json("report-previews");
  const RANK = { P1: 1, P2: 2, P3: 3, P4: 4 };
  const $ = (id) => document.getElementById(id);
  const state = { key: "p", dir: 1, page: 0, size: D.pageSize, prio: new Set(["P1", "P2", "P3", "P4"]),
                  cls: "", asset: "", text: "" };
  const circles = new Map();
  document.querySelectorAll("svg.map circle.f").forEach((c) => circles.set(Number(c.dataset.f), c));

  const byPriority = (a, b) => RANK[a.p] - RANK[b.p] || b.conf - a.conf || a.id - b.id;
  const KEYS = {
    p: byPriority,
    cls: (a, b) => a.cls.localeCompare(b.cls) || byPriority(a, b),
    conf: (a, b) => a.conf - b.conf || a.id - b.id,
    dt: (a, b) => (a.t ? a.t.dt : -1e9) - (b.t ? b.t.dt : -1e9) || a.id - b.id,
    img: (a, b) => D.images[a.img].name.localeCompare(D.images[b.img].name) || a.id - b.id,
  };

  function selected() {
    const text = state.text.toLowerCase();
    const out = D.findings.filter((f) => state.prio.has(f.p) && (!state.cls || f.cls === state.cls) &&
      (!state.asset || (f.asset || "other") === state.asset) &&
      (!text || D.images[f.img].name.toLowerCase().includes(text)));
    const cmp = KEYS[state.key];
    out.sort((a, b) => state.dir * cmp(a, b));
    return out;
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function imageLink(f, content) {
    const im = D.images[f.img];
    const a = el("a", { href: im.href || "#image-" + f.img, class: "imglink", "data-img": String(f.img),
                        title: "annotated image" }, content);
    if (im.href) a.target = "_blank";
    if (!PREVIEWS[f.img] && !im.href) { a.removeAttribute("href"); a.title = "no preview embedded (size limit)"; }
    return a;
  }

  function row(f) {
    const im = D.images[f.img], color = D.priorities[f.p].color;
    const thumb = THUMBS[f.id] ? imageLink(f, el("img", { src: THUMBS[f.id], alt: f.cls })) : "";
    let temps = null;
    if (f.t) {
      temps = el("span", {}, "Tmax " + f.t.max + " °C", el("br"), "Tref " + f.t.ref + " °C", el("br"),
                 el("b", {}, "ΔT " + f.t.dt + " K"));
      if (f.t.dtn !== null) temps.append(el("br"), "ΔT1000 " + f.t.dtn + " K");
    }
    const pos = f.lat === null ? "—" : f.lat.toFixed(6) + ", " + f.lon.toFixed(6);
    const reasons = f.reasons.length ? el("small", { title: f.reasons.join("\n") }, " · " + f.reasons.length + " note(s)") : null;
    return el("tr", { class: f.p, "data-finding": String(f.id), "data-image": im.name },
      el("td", {}, thumb),
      el("td", {}, el("span", { class: "badge", style: "--c:" + color }, f.p)),
      el("td", { class: "cls" }, f.cls, el("br"), el("small", {}, f.by + (f.asset ? " · " + f.asset : ""))),
      el("td", { class: "conf" }, f.conf.toFixed(2)),
      el("td", {}, f.action, el("br"), el("small", {}, f.tf), reasons),
      el("td", {}, temps),
      el("td", { class: "pos" }, pos, f.q === "coarse" ? el("small", {}, " (camera)") : null),
      el("td", { class: "name", title: im.name }, imageLink(f, im.name.split(/[\\/]/).pop())));
  }

  let current = [];
  function render() {
    current = selected();
    const size = state.size || current.length || 1;
    const pages = Math.max(1, Math.ceil(current.length / size));
    state.page = Math.min(state.page, pages - 1);
    const start = state.page * size, shown = current.slice(start, start + size);
    $("rows").replaceChildren(...shown.map(row));
    $("count").textContent = current.length === D.findings.length ? String(current.length)
      : current.length + " of " + D.findings.length;
    $("range").textContent = current.length ? (start + 1) + "–" + (start + shown.length) + " of " + current.length
      : "no findings match";
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    const visible = new Set(current.map((f) => f.id));
    circles.forEach((c, id) => { c.style.display = visible.has(id) ? "" : "none"; });
    document.querySelectorAll("#table th.sortable").forEach((th) => {
      if (th.dataset.sort === state.key) th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
  }

  function show(id) {
    const i = current.findIndex((f) => f.id === id);
    if (i < 0) return;
    if (state.size) state.page = Math.floor(i / state.size);
    render();
    const tr = document.querySelector('tr[data-finding="' + id + '"]');
    if (tr) { tr.scrollIntoView({ block: "center" }); tr.classList.remove("flash"); void tr.offsetWidth; tr.classList.add("flash"); }
  }

  document.querySelectorAll('#filters input[name="priority"]').forEach((box) => box.addEventListener("change", () => {
    if (box.checked) state.prio.add(box.value); else state.prio.delete(box.value);
    state.page = 0; render();
  }));
  $("f-class").addEventListener("change", (e) => { state.cls = e.target.value; state.page = 0; render(); });
  $("f-asset").addEventListener("change", (e) => { state.asset = e.target.value; state.page = 0; render(); });
  $("f-text").addEventListener("input", (e) => { state.text = e.target.value; state.page = 0; render(); });
  $("f-size").addEventListener("change", (e) => { state.size = Number(e.target.value); state.page = 0; render(); });
  $("prev").addEventListener("click", () => { state.page -= 1; render(); });
  $("next").addEventListener("click", () => { state.page += 1; render(); });
  document.querySelectorAll("#table th.sortable").forEach((th) => th.addEventListener("click", () => {
    const k = th.dataset.sort;
    state.dir = state.key === k ? -state.dir : (k === "conf" || k === "dt" ? -1 : 1);
    state.key = k; state.page = 0; render();
  }));
  circles.forEach((c, id) => c.addEventListener("click", () => show(id)));
  document.querySelectorAll(".card[data-priority]").forEach((card) => card.addEventListener("click", () => {
    const p = card.dataset.priority;
    document.querySelectorAll('#filters input[name="priority"]').forEach((b) => { b.checked = b.value === p; });
    state.prio = new Set([p]); state.page = 0; render();
    $("findings").scrollIntoView();
  }));

  const lightbox = $("lightbox");
  function openImage(i) {
    const im = D.images[i];
    $("lb-img").src = PREVIEWS[i];
    const cap = $("lb-caption");
    cap.replaceChildren(im.name + " — " + im.n + " finding(s)" + (im.worst ? ", worst " + im.worst : ""));
    if (im.href) cap.append(" · ", el("a", { href: im.href, target: "_blank" }, "full-size annotated image"));
    lightbox.hidden = false;
  }
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a.imglink");
    if (a && PREVIEWS[a.dataset.img]) { e.preventDefault(); openImage(Number(a.dataset.img)); }
  });
  $("lb-close").addEventListener("click", () => { lightbox.hidden = true; });
  lightbox.addEventListener("click", (e) => { if (e.target === lightbox) lightbox.hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") lightbox.hidden = true; });
  render();
})();
