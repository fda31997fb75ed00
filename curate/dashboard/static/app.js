// curate dashboard: one page, a tab per view. Every value from the run (document text, URLs, reasons,
// attribute names) reaches the page through textContent or Chart.js's canvas, never as markup.
// Data comes from the server's /api/<view> (live), or, in a `curate report` file, from the JSON embedded in
// the page (no network at all).
"use strict";

const EMBEDDED = (() => {
  const node = document.getElementById("curate-data");
  return node ? JSON.parse(node.textContent) : null;
})();
const COLORS = { kept: "#2f7d4f", drop: "#c0573e", error: "#8e44ad" };
const PALETTE = ["#2a62b8", "#e39b2d", "#2f7d4f", "#c0573e", "#8e44ad", "#17a2b8", "#6c757d", "#b8860b"];
const state = { view: "funnel", runs: [], charts: [], lastUpdated: null, status: null, attr: null, docs: {} };

function key(view, params) {
  const p = Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== null && v !== "")
    .sort(([a], [b]) => (a < b ? -1 : 1));
  return view + "?" + p.map(([k, v]) => `${k}=${v}`).join("&");
}

async function api(view, params) {
  const full = { run: 0 };
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") full[k] = v;
  if (EMBEDDED) {
    const got = EMBEDDED.views[key(view, full)];
    return got !== undefined ? got : { error: "not included in this static report (open the live dashboard)" };
  }
  const qs = new URLSearchParams(full).toString();
  try {
    const r = await fetch(`/api/${view}?${qs}`, { cache: "no-store" });
    return await r.json();
  } catch (e) {
    return { error: `the dashboard server did not answer (${e.message}); is \`curate dashboard\` still running?` };
  }
}

// ---- DOM helpers (text only) ----
function el(tag, attrs, ...kids) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") n.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) n.addEventListener(ev, fn);
    else n.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined) continue;
    n.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return n;
}
const fmt = (x, d = 0) => (x === null || x === undefined ? "–" : typeof x === "number"
  ? x.toLocaleString("en-US", { maximumFractionDigits: d }) : String(x));
const secs = (s) => (s === null || s === undefined ? "–" : s < 120 ? `${fmt(s, 1)} s` : s < 7200
  ? `${fmt(s / 60, 1)} min` : `${fmt(s / 3600, 1)} h`);
function card(k, v, id) { return el("div", { class: "card" }, el("div", { class: "v", ...(id ? { "data-k": id } : {}) }, v), el("div", { class: "k" }, k)); }
function msg(text, error) { return el("div", { class: "msg" + (error ? " error" : "") }, text); }
function table(headers, rows, opts) {
  const numeric = (opts && opts.numeric) || [], classes = (opts && opts.classes) || {};
  const cls = (i) => (numeric.includes(i) ? { class: "n" } : classes[i] ? { class: classes[i] } : {});
  const t = el("table", opts && opts.id ? { "data-table": opts.id } : {});
  if (headers.some((h) => h)) t.appendChild(el("tr", {}, headers.map((h, i) => el("th", cls(i), h))));
  for (const r of rows) {
    const cells = r.cells || r;
    const tr = el("tr", r.onclick ? { class: "click", on: { click: r.onclick } } : {},
      cells.map((c, i) => el("td", cls(i), c instanceof Node ? c : fmt(c, 4))));
    t.appendChild(tr);
  }
  return t;
}
function chartBox(cls) { const c = el("canvas"); return [el("div", { class: "chart " + (cls || "") }, c), c]; }
function chart(canvas, config) {
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
  const c = new Chart(canvas, config);
  state.charts.push(c);
  return c;
}
// vertical lines at threshold values on a category histogram (bin edges known): drawn by our own plugin
const thresholdLines = {
  id: "thresholds",
  afterDatasetsDraw(ch, _, opts) {
    const lines = opts.lines || [], edges = opts.edges || [];
    if (!lines.length || edges.length < 2) return;
    const x = ch.scales.x, ctx = ch.ctx, n = edges.length - 1, w = (edges[n] - edges[0]) / n || 1;
    for (const t of lines) {
      const pos = (t.value - edges[0]) / w - 0.5;  // category i is centred on bin i
      const left = x.getPixelForValue(0), step = n > 1 ? x.getPixelForValue(1) - left : 0;
      const px = left + pos * step;
      ctx.save();
      ctx.strokeStyle = "#111"; ctx.setLineDash([5, 4]); ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(px, ch.chartArea.top); ctx.lineTo(px, ch.chartArea.bottom); ctx.stroke();
      ctx.setLineDash([]); ctx.fillStyle = "#111"; ctx.font = "11px system-ui";
      ctx.fillText(`${t.reason || t.step}: ${t.rule} ${t.op} ${t.value}`, px + 4, ch.chartArea.top + 12);
      ctx.restore();
    }
  },
};

// ---- header and live refresh ----
async function header() {
  const s = await api("summary");
  const line = document.getElementById("run-line"), flags = document.getElementById("flags");
  line.replaceChildren(); flags.replaceChildren();
  if (s.error) { line.appendChild(el("span", { "data-k": "status" }, "unavailable")); flags.appendChild(el("div", { class: "flag", "data-k": "error" }, s.error)); return s; }
  const t = s.totals || {};
  line.append(el("span", { class: `status ${s.status}`, "data-k": "status" }, s.status), " ",
    el("span", { "data-k": "root" }, s.root), ` · started ${s.started || "–"} · elapsed ${secs(s.elapsed_s)} · `,
    el("span", {}, "documents in "), el("b", { "data-k": "documents_in" }, fmt(t.documents_in)),
    " → out ", el("b", { "data-k": "documents_out" }, fmt(t.documents_out)),
    s.current_step ? ` · now: ${s.current_step}` : "", s.eta_s !== null && s.eta_s !== undefined ? ` · about ${secs(s.eta_s)} left (by ${s.eta_basis})` : "",
    s.index && s.index.files_indexed < s.index.files_total ? ` · indexing ${fmt(s.index.files_indexed)}/${fmt(s.index.files_total)} files` : "");
  for (const f of s.flags || []) flags.appendChild(el("div", { class: "flag" }, f));
  if (s.index && s.index.error) flags.appendChild(el("div", { class: "flag" }, s.index.error));
  return s;
}

async function tick() {
  const s = await header();
  const changed = s.updated !== state.lastUpdated || s.status !== state.status ||
    (s.index && s.index.rows !== state.indexedRows);
  const live = s.error || s.status === "running" || (s.index && s.index.files_indexed < s.index.files_total);
  if (changed && state.lastUpdated !== null && state.view !== "documents") render();
  state.lastUpdated = s.updated; state.status = s.status; state.indexedRows = s.index && s.index.rows;
  if (!EMBEDDED) setTimeout(tick, live ? 2000 : 10000);
}

// ---- views ----
const VIEWS = {
  funnel: { title: "Funnel", async draw(main) {
    const f = await api("funnel");
    if (f.error) return main.appendChild(msg(f.error, true));
    const t = f.totals;
    main.append(el("div", { class: "cards" }, card("documents in", fmt(t.documents_in), "in"), card("kept", fmt(t.documents_out), "out"),
      card("dropped", fmt(t.dropped), "dropped"), card("errors", fmt(t.errors), "errors"),
      card("characters kept", fmt(f.characters_out), "chars"), card("tokens kept", fmt(f.tokens_out), "tokens")));
    const [box, cv] = chartBox();
    main.appendChild(box);
    chart(cv, { type: "bar", data: { labels: f.steps.map((s) => s.step), datasets: [
      { label: "in", data: f.steps.map((s) => s.in), backgroundColor: "#9fb7de" },
      { label: "out", data: f.steps.map((s) => s.out), backgroundColor: COLORS.kept }] },
      options: { plugins: { title: { display: true, text: "documents per step" } } } });
    const reasons = (o) => Object.entries(o || {}).map(([k, v]) => `${k}=${fmt(v)}`).join(", ");
    main.appendChild(table(["step", "in", "out", "dropped", "errors", "created", "seconds"],
      f.steps.map((s) => [s.step, s.in, s.out, reasons(s.dropped), reasons(s.errors), s.created || "", s.seconds]),
      { numeric: [1, 2, 5, 6], id: "funnel" }));
    if (f.by_fate.length) {
      main.appendChild(el("h2", {}, "Documents and characters by fate"));
      main.appendChild(table(["fate", "step", "reason", "documents", "characters"],
        f.by_fate.map((r) => ({ cells: [el("span", { class: `fate-${r.fate}` }, r.fate), r.step || "", r.reason || "", r.documents, r.chars],
          onclick: () => browse({ fate: r.fate, step: r.step, reason: r.reason }) })), { numeric: [3, 4], id: "by-fate" }));
    }
  } },
  progress: { title: "Progress", async draw(main) {
    const p = await api("progress");
    if (p.error) return main.appendChild(msg(p.error, true));
    const s = p.summary;
    main.append(el("div", { class: "cards" }, card("status", s.status), card("elapsed", secs(s.elapsed_s)),
      card("current step", s.current_step || "–"), card("time left", s.eta_s !== null ? secs(s.eta_s) : "–"),
      card("input files read", `${fmt(s.inputs.files_read)} / ${fmt(s.inputs.files)}`)));
    for (const f of s.flags) main.appendChild(msg(f, true));
    const [box, cv] = chartBox();
    main.appendChild(box);
    chart(cv, { type: "line", data: { labels: p.series.map((x) => x.t), datasets: [
      { label: "read docs/s", data: p.series.map((x) => x.read_per_s), borderColor: PALETTE[0], pointRadius: 0 },
      { label: "written docs/s", data: p.series.map((x) => x.written_per_s), borderColor: PALETTE[2], pointRadius: 0 }] },
      options: { plugins: { title: { display: true, text: "documents per second over elapsed seconds" } } } });
    const [box2, cv2] = chartBox("small");
    main.appendChild(box2);
    chart(cv2, { type: "bar", data: { labels: p.steps.map((x) => x.step), datasets: [
      { label: "seconds (summed over workers)", data: p.steps.map((x) => x.seconds), backgroundColor: PALETTE[1] },
      { label: "wall seconds", data: p.steps.map((x) => x.wall_s), backgroundColor: PALETTE[0] }] },
      options: { plugins: { title: { display: true, text: "seconds per step" } } } });
    main.appendChild(table(["step", "seconds", "wall s", "workers", "parallelism", "stages"],
      p.steps.map((x) => [x.step, x.seconds, x.wall_s, x.workers, x.parallelism,
        Object.entries(x.stages || {}).map(([k, v]) => `${k} ${fmt(v, 2)} s`).join(", ")]), { numeric: [1, 2, 3, 4], id: "steps" }));
  } },
  languages: { title: "Languages", async draw(main) {
    const l = await api("languages");
    if (l.error) return main.appendChild(msg(l.error, true));
    if (!l.languages.length) return main.appendChild(msg("no per-document stats yet"));
    const top = l.languages.slice(0, 25);
    const [box, cv] = chartBox();
    main.appendChild(box);
    chart(cv, { type: "bar", data: { labels: top.map((x) => x.language), datasets: [
      { label: "kept", data: top.map((x) => x.kept_documents), backgroundColor: COLORS.kept },
      { label: "dropped or failed", data: top.map((x) => x.dropped_documents), backgroundColor: COLORS.drop }] },
      options: { scales: { x: { stacked: true }, y: { stacked: true } }, plugins: { title: { display: true, text: "documents per language" } } } });
    main.appendChild(table(["language", "kept docs", "dropped docs", "kept chars", "dropped chars"],
      l.languages.map((x) => ({ cells: [x.language, x.kept_documents, x.dropped_documents, x.kept_chars, x.dropped_chars],
        onclick: () => browse({ language: x.language }) })), { numeric: [1, 2, 3, 4], id: "languages" }));
  } },
  scores: { title: "Scores", async draw(main) {
    const a = await api("attributes");
    if (a.error) return main.appendChild(msg(a.error, true));
    if (!a.attributes.length) return main.appendChild(msg("no numeric attributes in this run"));
    state.attr = state.attr && a.attributes.includes(state.attr) ? state.attr : a.default;
    const pick = el("select", { id: "attr", on: { change: (e) => { state.attr = e.target.value; render(); } } },
      a.attributes.map((x) => { const o = el("option", { value: x }, x + (a.thresholds[x] ? "  (ruled)" : "")); if (x === state.attr) o.selected = true; return o; }));
    main.appendChild(el("div", { class: "controls" }, "attribute ", pick));
    main.appendChild(await histogramBox(0, state.attr));
  } },
  dedup: { title: "Dedup", async draw(main) {
    const d = await api("dedup");
    if (d.error) return main.appendChild(msg(d.error, true));
    if (!d.steps.length) return main.appendChild(msg("no dedup step in this run"));
    main.appendChild(table(["step", "documents", "clusters", "duplicates", "removed", "removed share", "by rules"],
      d.steps.map((s) => [s.step, s.documents, s.clusters, s.duplicates, s.removed,
        s.removed_share === null ? "–" : `${fmt(100 * s.removed_share, 1)} %`, s.drop_reasons.join(", ")]), { numeric: [1, 2, 3, 4, 5], id: "dedup" }));
    const row = el("div", { class: "row" });
    main.appendChild(row);
    for (const s of d.steps) {
      const order = Object.keys(s.clusters_by_size).sort((a, b) => parseInt(a) - parseInt(b));
      const [box, cv] = chartBox("small");
      row.appendChild(box);
      chart(cv, { type: "bar", data: { labels: order, datasets: [{ label: "clusters", data: order.map((k) => s.clusters_by_size[k]), backgroundColor: PALETTE[0] }] },
        options: { plugins: { title: { display: true, text: `${s.step}: clusters by size (documents per cluster)` } } } });
    }
  } },
  shards: { title: "Shards", async draw(main) {
    const s = await api("shards");
    if (s.error) return main.appendChild(msg(s.error, true));
    if (!s.shards.length) return main.appendChild(msg("no manifest.json: this run wrote no shards (yet)"));
    main.appendChild(el("div", { class: "cards" }, card("shards", fmt(s.shards.length)), card("target tokens/shard", fmt(s.target)), card("tokenizer", s.tokenizer || "–")));
    const [box, cv] = chartBox();
    main.appendChild(box);
    chart(cv, { type: "bar", data: { labels: s.shards.map((x) => x.shard), datasets: [
      { type: "line", label: "target", data: s.shards.map(() => s.target), borderColor: "#111", borderDash: [5, 4], pointRadius: 0 },
      { label: "text tokens", data: s.shards.map((x) => x.text_tokens), backgroundColor: PALETTE[0] }] },
      options: { plugins: { title: { display: true, text: "text tokens per shard" } } } });
    if (s.metrics) {
      main.appendChild(el("h2", {}, "Tokenizer metrics per language"));
      const langs = Object.keys(s.metrics).sort();
      main.appendChild(table(["language", "documents", "tokens", "chars/token", "fertility", "whole-word share", "unique tokens"],
        langs.map((k) => { const m = s.metrics[k]; return [k, m.documents, m.tokens, m.chars_per_token, m.fertility, m.whole_word_share, m.unique_tokens]; }),
        { numeric: [1, 2, 3, 4, 5, 6], id: "tokmetrics" }));
    }
  } },
  rephrase: { title: "Rephrase", async draw(main) {
    const r = await api("rephrase");
    if (r.error) return main.appendChild(msg(r.error, true));
    if (!r.rows.length) return main.appendChild(msg("no step created documents in this run (add a rephrase step)"));
    const styles = [...new Set(r.rows.map((x) => x.style || "(none)"))];
    const fates = [...new Set(r.rows.map((x) => (x.reason ? x.reason : x.fate)))];
    const [box, cv] = chartBox("small");
    main.appendChild(box);
    chart(cv, { type: "bar", data: { labels: styles, datasets: fates.map((f, i) => ({ label: f, backgroundColor: f === "kept" ? COLORS.kept : PALETTE[i % PALETTE.length],
      data: styles.map((st) => r.rows.filter((x) => (x.style || "(none)") === st && (x.reason ? x.reason : x.fate) === f).reduce((a, x) => a + x.documents, 0)) })) },
      options: { scales: { x: { stacked: true }, y: { stacked: true } }, plugins: { title: { display: true, text: "synthetic documents by style and outcome" } } } });
    main.appendChild(table(["step", "style", "fate", "reason", "documents", "characters"],
      r.rows.map((x) => ({ cells: [x.step, x.style || "", x.fate, x.reason || "", x.documents, x.chars], onclick: () => browse({ fate: x.fate, reason: x.reason }) })),
      { numeric: [4, 5], id: "rephrase" }));
  } },
  documents: { title: "Documents", async draw(main) { await drawDocuments(main); } },
  compare: { title: "Compare", async draw(main) { await drawCompare(main); } },
};

async function histogramBox(run, attr, compareWith, given) {
  const wrap = el("div");
  const h = given || await api("histogram", { run, attr });
  if (h.error) { wrap.appendChild(msg(h.error, true)); return wrap; }
  if (!h.edges.length) { wrap.appendChild(msg(`${attr}: no values`)); return wrap; }
  const labels = h.edges.slice(0, -1).map((e) => fmt(e, 3));
  const datasets = Object.entries(h.counts).map(([fate, c]) => ({ label: compareWith ? `${compareWith}: ${fate}` : fate, data: c, backgroundColor: COLORS[fate] || PALETTE[0] }));
  const [box, cv] = chartBox();
  wrap.appendChild(box);
  chart(cv, { type: "bar", data: { labels, datasets }, plugins: [thresholdLines],
    options: { scales: { x: { stacked: true }, y: { stacked: true } }, plugins: {
      thresholds: { lines: h.thresholds, edges: h.edges },
      title: { display: true, text: `${compareWith ? compareWith + ": " : ""}${attr} by fate${h.missing ? ` (${fmt(h.missing)} documents without a value)` : ""}` } } } });
  if (h.thresholds.length) wrap.appendChild(table(["step", "reason", "rule", "threshold"], h.thresholds.map((t) => [t.step, t.reason || "", t.rule, `${t.op} ${t.value}`]), { id: "thresholds" }));
  return wrap;
}

function browse(filters) { state.docs = Object.assign({}, filters, { offset: 0 }); state.detail = null; show("documents"); }

async function drawDocuments(main) {
  const f = state.docs;
  const d = await api("documents", { fate: f.fate, step: f.step, reason: f.reason, language: f.language, q: f.q, offset: f.offset || 0 });
  if (d.error) return main.appendChild(msg(d.error, true));
  const facet = el("select", { id: "facet", on: { change: (e) => { const v = JSON.parse(e.target.value); browse(v); } } },
    el("option", { value: "{}" }, `all documents`),
    d.facets.map((x) => { const v = { fate: x.fate, step: x.step || undefined, reason: x.reason || undefined };
      const o = el("option", { value: JSON.stringify(v) }, `${x.fate}${x.reason ? ` · ${x.step} · ${x.reason}` : ""} (${fmt(x.documents)})`);
      if (x.fate === f.fate && (x.reason || undefined) === f.reason && (x.step || undefined) === (f.step || undefined)) o.selected = true; return o; }));
  const search = el("input", { id: "search", placeholder: "id or part of a URL", value: f.q || "" });
  const go = el("button", { on: { click: () => browse({ q: search.value }) } }, "find");  // over all documents
  main.appendChild(el("div", { class: "controls" }, "show ", facet, f.language ? ` language ${f.language}` : "", search, go,
    el("span", { class: "muted", "data-k": "total" }, `${fmt(d.total)} documents`)));
  const pager = el("div", { class: "controls" },
    el("button", { on: { click: () => { f.offset = Math.max(0, (f.offset || 0) - d.limit); render(); } } }, "‹ previous"),
    el("span", {}, `${fmt((f.offset || 0) + 1)}–${fmt(Math.min(d.total, (f.offset || 0) + d.limit))}`),
    el("button", { on: { click: () => { if ((f.offset || 0) + d.limit < d.total) { f.offset = (f.offset || 0) + d.limit; render(); } } } }, "next ›"));
  const row = el("div", { class: "row" });
  const detail = el("div", { id: "detail" });
  const list = el("div", {}, table(["id", "fate", "step", "reason", "language", "chars", "url"],
    d.documents.map((x) => ({ cells: [x.id, el("span", { class: `fate-${x.fate}` }, x.fate), x.step || "", x.reason || "", x.language || "", x.chars, x.url || ""],
      onclick: () => showDoc(detail, x.id) })), { numeric: [5], id: "documents", classes: { 0: "clip", 6: "clip" } }), pager);
  row.append(list, detail);
  main.appendChild(row);
  if (state.detail) showDoc(detail, state.detail);
}

async function showDoc(box, id) {
  state.detail = id;
  box.replaceChildren(msg("loading…"));
  const d = await api("document", { id });
  box.replaceChildren();
  if (d.error) return box.appendChild(msg(d.error, true));
  box.appendChild(el("h2", { "data-k": "doc-id" }, d.id));
  box.appendChild(table(["", ""], [["fate", el("span", { class: `fate-${d.fate}`, "data-k": "doc-fate" }, d.fate)],
    ["step", d.step || ""], ["reason", el("span", { "data-k": "doc-reason" }, d.reason || "")], ["detail", d.detail || ""],
    ["language", d.language || ""], ["characters", d.chars],
    ...Object.entries(d.provenance).map(([k, v]) => [k, el("span", { "data-k": `prov-${k}` }, fmt(v))])], { id: "doc-head" }));
  for (const dup of d.duplicate_of) {
    box.appendChild(el("div", { class: "msg", "data-k": "dup" }, `${dup.step}: duplicate of `,
      el("a", { class: "link", on: { click: () => showDoc(box, dup.id) } }, dup.id), ` (${dup.fate || "?"}${dup.url ? ", " + dup.url : ""})`));
  }
  if (d.text) {
    const t = d.text;
    box.appendChild(el("h2", {}, "Text"));
    if (!t.found) box.appendChild(msg(`text not found in documents/ (${t.files_scanned} files scanned)`));
    else box.appendChild(el("pre", { class: "text", "data-k": "doc-text" }, t.text));
    if (t.found && !t.complete) box.appendChild(el("div", { class: "muted" }, `${t.pieces} piece(s) found; the scan stopped before every piece was seen`));
  } else if (d.rejected_text !== undefined) {
    box.appendChild(el("h2", {}, `Rejected text (rejects/${d.step}/)`));
    box.appendChild(el("pre", { class: "text", "data-k": "doc-rejected-text" }, d.rejected_text));
  } else if (d.fate !== "kept") {
    box.appendChild(el("div", { class: "muted" }, "dropped documents' text is not kept in the output"));
  }
  if (d.edits && d.edits.length) {  // what edit steps cut or replaced, with the first pieces that went
    box.appendChild(el("h2", {}, "Edits"));
    box.appendChild(table(["step", "rule", "spans", "chars", "first pieces (offset: text)"], d.edits.map((e) =>
      [e.step, e.rule, e.spans, e.chars, e.removed.map(([at, t]) => `${at}: ${JSON.stringify(t)}`).join("  ")]),
      { numeric: [2, 3], id: "doc-edits" }));
  }
  box.appendChild(el("h2", {}, "Attributes"));
  box.appendChild(table(["attribute", "value"], Object.entries(d.attributes).map(([k, v]) => [k, v]), { numeric: [1], id: "doc-attrs" }));
}

async function drawCompare(main) {
  if (state.runs.length < 2) return main.appendChild(msg("give two outputs to compare: curate dashboard OUT OUT2"));
  const [a, b] = await Promise.all([api("funnel", { run: 0 }), api("funnel", { run: 1 })]);
  if (a.error || b.error) return main.appendChild(msg(a.error || b.error, true));
  main.appendChild(el("div", { class: "muted" }, `A: ${state.runs[0]}   B: ${state.runs[1]}`));
  const steps = [...new Set([...a.steps.map((s) => s.step), ...b.steps.map((s) => s.step)])];
  const get = (f, st) => f.steps.find((s) => s.step === st) || {};
  const dropped = (s) => Object.values(s.dropped || {}).reduce((x, y) => x + y, 0);
  main.appendChild(table(["step", "A in", "A out", "A dropped", "B in", "B out", "B dropped", "out B−A"],
    steps.map((st) => { const x = get(a, st), y = get(b, st), both = x.step && y.step;  // "–": a step one run lacks
      return [st, x.in, x.out, x.step ? dropped(x) : null, y.in, y.out, y.step ? dropped(y) : null, both ? y.out - x.out : null]; }),
    { numeric: [1, 2, 3, 4, 5, 6, 7], id: "compare" }));
  main.appendChild(table(["", "A", "B"], [["documents out", a.totals.documents_out, b.totals.documents_out],
    ["characters out", a.characters_out, b.characters_out], ["tokens out", a.tokens_out, b.tokens_out]], { numeric: [1, 2], id: "compare-totals" }));
  const attrsA = await api("attributes", { run: 0 });
  if (attrsA.error || !attrsA.attributes.length) return;
  state.attr = state.attr && attrsA.attributes.includes(state.attr) ? state.attr : attrsA.default;
  const pick = el("select", { id: "cmp-attr", on: { change: (e) => { state.attr = e.target.value; render(); } } },
    attrsA.attributes.map((x) => { const o = el("option", { value: x }, x); if (x === state.attr) o.selected = true; return o; }));
  main.appendChild(el("div", { class: "controls" }, "attribute ", pick));
  const row = el("div", { class: "row" });
  main.appendChild(row);
  const both = await api("compare_histogram", { attr: state.attr });  // both runs over the same bins
  if (both.error) return main.appendChild(msg(both.error, true));
  row.append(await histogramBox(0, state.attr, "A", both.runs[0]), await histogramBox(1, state.attr, "B", both.runs[1]));
}

// ---- tabs ----
function show(view) { state.view = view; if (!EMBEDDED) history.replaceState(null, "", `#${view}`); render(); }
let rendering = Promise.resolve();
function render() {
  rendering = rendering.then(async () => {
    for (const c of state.charts) c.destroy();
    state.charts = [];
    for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.view === state.view);
    const main = document.getElementById("view");
    const fresh = el("div", { "data-view": state.view });
    try { await VIEWS[state.view].draw(fresh); } catch (e) { fresh.appendChild(msg(`this view failed: ${e.message}`, true)); }
    main.replaceChildren(fresh);
    main.dataset.ready = state.view;
  });
  return rendering;
}

async function start() {
  const r = await api("runs");
  state.runs = r.runs || [];
  const tabs = document.getElementById("tabs");
  for (const [name, v] of Object.entries(VIEWS)) {
    if (name === "compare" && state.runs.length < 2) continue;
    tabs.appendChild(el("button", { "data-view": name, on: { click: () => show(name) } }, v.title));
  }
  const want = location.hash.slice(1);
  if (VIEWS[want]) state.view = want;
  if (EMBEDDED) document.title = `curate report: ${state.runs[0] || ""}`;
  window.addEventListener("hashchange", () => { const v = location.hash.slice(1); if (VIEWS[v] && v !== state.view) show(v); });
  await tick();
  await render();
}
start();
