// Guild View's pages, over the JSON API under /api/ (docs/view.md).
// A page is a function of the address after '#': #/runs, #/deleted,
// #/run/ID, #/batch/ID, #/compare?runs=ID,ID. Plain DOM, no framework:
// `h` builds elements, and each page redraws what changed.
"use strict";

const TOKEN = document.querySelector('meta[name="guild-token"]').content;
const main = document.getElementById("main");
const fmt = GuildCharts.fmt;

// -- helpers -----------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Guild-Token": TOKEN},
    body: JSON.stringify(body),
  };
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new ApiError("cannot reach the server: is guild view still running?");
  }
  const data = await resp.json().catch(() => ({error: `HTTP ${resp.status}`}));
  if (!resp.ok) throw new ApiError(data.error || `HTTP ${resp.status}`);
  return data;
}

function say(text, kind = "info") {
  const m = document.getElementById("message");
  m.textContent = text || "";
  m.className = text ? kind : "";
}

function failed(e) {
  say(e instanceof ApiError ? e.message : `unexpected error: ${e}`, "error");
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "") continue;
    q.set(k, typeof v === "boolean" ? (v ? "1" : "0") : String(v));
  }
  return q.toString();
}

function duration(run) {
  if (!run.started) return "";
  const end = run.stopped || (run.status === "running" ? Date.now() * 1000 : null);
  if (!end) return "";
  let s = Math.max(0, Math.round((end - run.started) / 1e6));
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  return `${hh}:${String(mm).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
}

function runLink(run) {
  const id = typeof run === "string" ? run : run.id;
  const text = typeof run === "string" ? run.slice(0, 8) : run.short_id;
  return h("a", {href: `#/run/${id}`, class: "run-link"}, text);
}

function statusCell(status) {
  return h("td", {class: `status status-${status}`}, status);
}

function valueCell(v) {
  return h("td", {class: typeof v === "number" ? "num" : ""}, fmt(v));
}

function kvTable(entries, cls = "") {
  return h("table", {class: `grid kv ${cls}`},
    h("tbody", {}, entries.map(([k, v]) => h("tr", {}, h("th", {}, k), v instanceof Node ? h("td", {}, v) : valueCell(v)))));
}

function section(title, ...children) {
  return h("section", {}, h("h2", {}, title), ...children);
}

// Polls `fn` every `ms` while the page is the one shown.
function poll(fn, ms) {
  const page = currentPage;
  const tick = async () => {
    if (page !== currentPage) return;
    const again = await fn();
    if (again !== false && page === currentPage) setTimeout(tick, ms);
  };
  setTimeout(tick, ms);
}

// -- runs table ----------------------------------------------------------

const BASE_COLUMNS = [
  ["run", "id"], ["operation", "operation"], ["started", "started"], ["time", null],
  ["status", "status"], ["label", "label"], ["tags", null], ["marked", "marked"],
];

const runsState = {filter: "", status: "", offset: 0, limit: 50, sort: "started", desc: true};
const selected = new Set();

async function runsPage(deleted) {
  const page = currentPage;
  const st = runsState;
  if (st.deleted !== deleted) {
    st.deleted = deleted; st.offset = 0; selected.clear();
  }
  const filterInput = h("input", {type: "text", id: "filter", size: 44, value: st.filter,
                                  placeholder: "filter, e.g. loss < 0.5 and lr = 0.01",
                                  onkeydown: e => { if (e.key === "Enter") apply(); }});
  const statusSel = h("select", {id: "status-filter", onchange: () => apply()},
    ["", "running", "completed", "error", "terminated", "pending", "staged"].map(s =>
      h("option", {value: s, selected: s === st.status}, s || "any status")));
  const apply = () => { st.filter = filterInput.value.trim(); st.status = statusSel.value; st.offset = 0; load(); };
  const range = h("span", {id: "range"});
  const table = h("table", {class: "grid runs", id: "runs-table"});
  const count = h("span", {id: "selected-count", class: "muted"});
  const labelInput = h("input", {type: "text", id: "label-input", size: 18, placeholder: "label"});
  const tagInput = h("input", {type: "text", id: "tag-input", size: 12, placeholder: "tag"});
  const ids = () => Array.from(selected);

  async function change(fn, done) {
    if (!selected.size) { say("select runs first", "error"); return; }
    try {
      for (const id of ids()) await fn(id);
      say(done);
      load();
    } catch (e) { failed(e); }
  }

  const actions = deleted ? [
    h("button", {id: "restore", onclick: async () => {
      if (!selected.size) { say("select runs first", "error"); return; }
      try {
        const out = await api("/api/runs/restore", {runs: ids()});
        selected.clear();
        say(`restored ${out.done.length} run(s)`);
        load();
      } catch (e) { failed(e); }
    }}, "Restore"),
  ] : [
    h("button", {id: "compare", onclick: () => {
      if (!selected.size) { say("select runs to compare", "error"); return; }
      location.hash = `#/compare?runs=${ids().join(",")}`;
    }}, "Compare"),
    h("span", {class: "sep"}),
    labelInput,
    h("button", {id: "set-label", onclick: () => change(
      id => api(`/api/runs/${id}/label`, {label: labelInput.value}), "label set")}, "Set label"),
    tagInput,
    h("button", {id: "add-tag", onclick: () => change(
      id => api(`/api/runs/${id}/tags`, {add: [tagInput.value.trim()].filter(Boolean)}), "tag added")}, "Tag"),
    h("button", {id: "remove-tag", onclick: () => change(
      id => api(`/api/runs/${id}/tags`, {remove: [tagInput.value.trim()].filter(Boolean)}), "tag removed")}, "Untag"),
    h("button", {id: "mark", onclick: () => change(id => api(`/api/runs/${id}/mark`, {marked: true}), "marked")}, "Mark"),
    h("button", {id: "unmark", onclick: () => change(id => api(`/api/runs/${id}/mark`, {marked: false}), "unmarked")}, "Unmark"),
    h("span", {class: "sep"}),
    h("button", {id: "delete", onclick: async () => {
      if (!selected.size) { say("select runs first", "error"); return; }
      if (!confirm(`Delete ${selected.size} run(s)? They can be restored from Deleted.`)) return;
      try {
        const out = await api("/api/runs/delete", {runs: ids()});
        selected.clear();
        say(`deleted ${out.done.length} run(s)`);
        load();
      } catch (e) { failed(e); }
    }}, "Delete"),
  ];

  main.replaceChildren(
    h("h1", {}, deleted ? "Deleted runs" : "Runs"),
    h("div", {class: "toolbar"}, filterInput, statusSel, h("button", {id: "apply", onclick: apply}, "Filter"),
      h("button", {id: "refresh", onclick: () => load()}, "Refresh"),
      h("span", {class: "sep"}),
      h("button", {id: "prev", onclick: () => { st.offset = Math.max(0, st.offset - st.limit); load(); }}, "‹"),
      range,
      h("button", {id: "next", onclick: () => { st.offset += st.limit; load(); }}, "›"),
      h("select", {id: "page-size", onchange: e => { st.limit = +e.target.value; st.offset = 0; load(); }},
        [25, 50, 100, 250, 1000].map(n => h("option", {value: n, selected: n === st.limit}, `${n} a page`)))),
    h("div", {class: "toolbar"}, count, ...actions),
    h("div", {class: "wide"}, table));

  let loading = 0;
  async function load() {
    const mine = ++loading;
    let data;
    try {
      data = await api("/api/runs?" + query({filter: st.filter, status: st.status, offset: st.offset,
                                              limit: st.limit, sort: st.sort, desc: st.desc, deleted}));
    } catch (e) { failed(e); return; }
    if (mine !== loading || page !== currentPage) return;
    if (data.offset >= data.total && data.total > 0 && st.offset > 0) {
      st.offset = Math.max(0, Math.floor((data.total - 1) / st.limit) * st.limit);
      load();
      return;
    }
    drawTable(data);
    return data.runs.some(r => r.status === "running");
  }

  function header(label, sortKey, cls) {
    const active = sortKey && st.sort === sortKey;
    return h("th", {class: `${cls || ""} ${sortKey ? "sortable" : ""}`, dataset: sortKey ? {sort: sortKey} : {},
                    title: sortKey ? "sort" : null,
                    onclick: sortKey ? () => {
                      st.desc = st.sort === sortKey ? !st.desc : sortKey === "started" || sortKey === "stopped";
                      st.sort = sortKey; st.offset = 0; load();
                    } : null},
      label, active ? (st.desc ? " ▼" : " ▲") : "");
  }

  function drawTable(data) {
    const flags = Array.from(new Set(data.runs.flatMap(r => Object.keys(r.flags)))).sort();
    const scalars = Array.from(new Set(data.runs.flatMap(r => Object.keys(r.scalars)))).sort();
    const pageIds = data.runs.map(r => r.id);
    const all = h("input", {type: "checkbox", id: "select-page", title: "select the runs of this page",
                            checked: pageIds.length > 0 && pageIds.every(id => selected.has(id)),
                            onchange: e => {
                              for (const id of pageIds) e.target.checked ? selected.add(id) : selected.delete(id);
                              drawTable(data);
                            }});
    const head = h("tr", {}, h("th", {}, all),
      BASE_COLUMNS.map(([label, key]) => header(label, key)),
      flags.map(f => header(f, `flag:${f}`, "flag")),
      scalars.map(s => header(s, `scalar:${s}`, "scalar")));
    const rows = data.runs.map(run => {
      const box = h("input", {type: "checkbox", class: "select-run", checked: selected.has(run.id),
                              onchange: e => {
                                e.target.checked ? selected.add(run.id) : selected.delete(run.id);
                                tr.classList.toggle("selected", e.target.checked);
                                showCount();
                              }});
      const tr = h("tr", {class: selected.has(run.id) ? "selected" : "", dataset: {run: run.id}},
        h("td", {}, box),
        h("td", {}, deleted ? run.short_id : runLink(run), run.batch ? h("span", {class: "muted"}, " batch") : null),
        h("td", {}, run.operation),
        h("td", {}, run.started_text),
        h("td", {class: "num"}, duration(run)),
        statusCell(run.status),
        h("td", {class: "label"}, run.label),
        h("td", {}, run.tags.map(t => h("span", {class: "tag"}, t))),
        h("td", {}, run.marked ? "yes" : ""),
        flags.map(f => valueCell(run.flags[f])),
        scalars.map(s => valueCell(run.scalars[s])));
      return tr;
    });
    table.replaceChildren(h("thead", {}, head), h("tbody", {id: "runs"}, rows));
    const end = Math.min(data.offset + data.runs.length, data.total);
    range.textContent = `${data.total ? data.offset + 1 : 0}–${end} of ${data.total}`;
    range.dataset.total = String(data.total);
    showCount();
  }

  function showCount() {
    count.textContent = selected.size ? `${selected.size} selected` : "";
  }

  const running = await load();
  // A page with running runs is read again every few seconds.
  poll(async () => (document.hidden ? true : (await load(), true)), running ? 3000 : 10000);
}

// -- a run ----------------------------------------------------------------

async function runPage(id) {
  const page = currentPage;
  let run;
  try {
    run = await api(`/api/runs/${id}`);
  } catch (e) {
    failed(e);
    main.replaceChildren(h("p", {}, "No such run."));
    return;
  }
  if (page !== currentPage) return;
  const labelInput = h("input", {type: "text", id: "run-label", size: 30, value: run.label});
  const tagInput = h("input", {type: "text", id: "run-tag", size: 12, placeholder: "new tag"});
  const refresh = () => { if (page === currentPage) route(true); };
  const post = async (path, body, done) => {
    try { await api(path, body); say(done); refresh(); } catch (e) { failed(e); }
  };
  const tags = h("span", {id: "run-tags"}, run.tags.map(t => h("span", {class: "tag"}, t,
    h("button", {title: `remove ${t}`, onclick: () => post(`/api/runs/${run.id}/tags`, {remove: [t]}, "tag removed")}, "×"))));

  const head = h("div", {},
    h("h1", {}, `${run.operation} `, h("span", {class: "muted"}, run.short_id), " ",
      h("span", {class: `status-${run.status}`, id: "run-status"}, run.status)),
    h("div", {class: "toolbar"},
      labelInput,
      h("button", {id: "save-label", onclick: () => post(`/api/runs/${run.id}/label`, {label: labelInput.value}, "label set")}, "Set label"),
      h("span", {class: "sep"}), tags, tagInput,
      h("button", {id: "add-run-tag", onclick: () => {
        const t = tagInput.value.trim();
        if (t) post(`/api/runs/${run.id}/tags`, {add: [t]}, "tag added");
      }}, "Tag"),
      h("span", {class: "sep"}),
      h("button", {id: "toggle-mark", onclick: () => post(`/api/runs/${run.id}/mark`, {marked: !run.marked}, run.marked ? "unmarked" : "marked")},
        run.marked ? "Unmark" : "Mark"),
      h("button", {id: "compare-run", onclick: () => { location.hash = `#/compare?runs=${run.id}`; }}, "Compare"),
      run.trials ? h("a", {href: `#/batch/${run.id}`, id: "batch-link"}, "Batch page") : null,
      h("button", {id: "delete-run", onclick: async () => {
        if (!confirm(`Delete run ${run.short_id}? It can be restored from Deleted.`)) return;
        try { await api("/api/runs/delete", {runs: [run.id]}); say(`deleted ${run.short_id}`); location.hash = "#/runs"; }
        catch (e) { failed(e); }
      }}, "Delete")));

  const attrs = [
    ["id", run.id], ["operation", run.operation], ["from", run.from], ["status", run.status],
    ["started", run.started_text], ["stopped", run.stopped_text], ["time", duration(run)],
    ["exit status", run.exit_status], ["pid", run.pid], ["label", run.label],
    ["tags", run.tags.join(", ")], ["marked", run.marked ? "yes" : "no"],
    ["command", run.command.join(" ")], ["sourcecode digest", run.sourcecode_digest],
    ...Object.entries(run.attributes).filter(([k]) => !["id", "label", "tags", "marked", "started", "stopped",
      "exit_status", "sourcecode_digest", "initialized"].includes(k))
      .map(([k, v]) => [k, typeof v === "object" && v !== null ? JSON.stringify(v) : v]),
  ];

  const scalarNames = Object.keys(run.scalars).sort();
  const chartBox = h("div", {id: "run-chart"});
  const tagSel = h("select", {id: "run-chart-tag"}, scalarNames.map(t => h("option", {value: t}, t)));
  const drawRunChart = async () => {
    if (!tagSel.value) return;
    try {
      const s = await api("/api/scalars?" + query({runs: run.id, tag: tagSel.value, max_points: 1000}));
      GuildCharts.lines(chartBox, s.runs.map(r => ({id: r.run, label: tagSel.value, points: r.points})),
                        {yLabel: tagSel.value});
    } catch (e) { failed(e); }
  };
  tagSel.addEventListener("change", drawRunChart);

  const output = h("pre", {class: "output", id: "output"});
  const viewer = h("div", {class: "file-viewer", id: "file-viewer"});
  const files = h("table", {class: "grid", id: "files"}, h("tbody", {}, run.files.map(f =>
    h("tr", {}, h("td", {}, f.link ? h("span", {}, f.path, h("span", {class: "muted"}, " (link)"))
                              : h("a", {href: "#", class: "file-link",
                                        onclick: e => { e.preventDefault(); showFile(viewer, run.id, f); }}, f.path)),
      h("td", {class: "num"}, f.size === null ? "" : f.size),
      h("td", {class: "muted"}, new Date(f.mtime * 1000).toLocaleString())))));

  main.replaceChildren(head,
    section("Attributes", kvTable(attrs, "attributes")),
    section("Flags", Object.keys(run.flags).length ? kvTable(Object.entries(run.flags), "flags") : h("p", {class: "muted"}, "No flags.")),
    section("Scalars", scalarNames.length ? h("div", {},
      kvTable(scalarNames.map(t => [t, run.scalars[t]]), "scalars"),
      h("div", {class: "toolbar"}, "chart of ", tagSel), chartBox) : h("p", {class: "muted"}, "No scalars.")),
    section("Dependencies", deps(run.deps)),
    run.trials ? section("Trials", trialsTable(run.trials)) : null,
    section("Output", output),
    section("Files", run.files.length ? files : h("p", {class: "muted"}, "No files."), viewer));
  drawRunChart();

  // The output, then what is added while the run runs.
  let offset = 0;
  const more = async () => {
    try {
      const out = await api(`/api/runs/${run.id}/output?offset=${offset}`);
      if (out.text) {
        const atEnd = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
        output.append(out.text);
        if (atEnd) output.scrollTop = output.scrollHeight;
      }
      offset = out.next_offset;
      output.dataset.running = String(out.running);
      if (out.text.length && out.next_offset > out.offset) return more();
      if (!out.running && run.status === "running") refresh();
      return out.running;
    } catch (e) { failed(e); return false; }
  };
  if (await more()) {
    poll(async () => {
      const running = await more();
      if (running) drawRunChart();
      return running;
    }, 1000);
  }
}

function deps(d) {
  const rows = [];
  for (const [name, sources] of Object.entries(d || {})) {
    for (const [uri, source] of Object.entries(sources || {})) {
      const runId = source && typeof source.config === "string" && /^[0-9a-f]{32}$/.test(source.config) ? source.config : null;
      rows.push(h("tr", {}, h("td", {}, name), h("td", {}, uri),
        h("td", {}, runId ? runLink(runId) : ""),
        h("td", {}, ((source && source.paths) || []).join(", "))));
    }
  }
  if (!rows.length) return h("p", {class: "muted"}, "No dependencies.");
  return h("table", {class: "grid", id: "deps"},
    h("thead", {}, h("tr", {}, ["name", "source", "run", "paths"].map(c => h("th", {}, c)))), h("tbody", {}, rows));
}

function trialsTable(trials) {
  return h("table", {class: "grid trials"},
    h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "trial"), h("th", {}, "status"),
      h("th", {}, trials.objective), h("th", {}, "best so far"))),
    h("tbody", {}, trials.trials.map((t, i) => h("tr", {dataset: {run: t.id}},
      h("td", {class: "num"}, i + 1), h("td", {}, runLink(t.id)), statusCell(t.status),
      valueCell(t.objective), valueCell(t.best)))));
}

async function showFile(viewer, runId, f) {
  const url = `/api/runs/${runId}/files/${f.path.split("/").map(encodeURIComponent).join("/")}`;
  const title = h("h3", {}, f.path, " ", h("a", {href: url, download: f.path.split("/").pop()}, "download"));
  if (/\.(png|jpe?g|gif|webp|bmp|svg)$/i.test(f.path)) {
    viewer.replaceChildren(title, h("img", {src: url, alt: f.path}));
    return;
  }
  let resp;
  try { resp = await fetch(url); } catch (e) { failed(e); return; }
  if (!resp.ok) {
    const err = await resp.json().catch(() => ({error: `HTTP ${resp.status}`}));
    say(err.error, "error");
    return;
  }
  const ctype = resp.headers.get("Content-Type") || "";
  if (ctype.startsWith("application/octet-stream")) {
    viewer.replaceChildren(title, h("p", {class: "muted"}, `binary file, ${f.size} bytes`));
    return;
  }
  const text = await resp.text();
  if (ctype.startsWith("text/csv")) {
    const rows = parseCsv(text).slice(0, 1001);
    viewer.replaceChildren(title, h("div", {class: "wide"}, h("table", {class: "grid csv"},
      h("thead", {}, h("tr", {}, (rows[0] || []).map(c => h("th", {}, c)))),
      h("tbody", {}, rows.slice(1).map(r => h("tr", {}, r.map(c => h("td", {}, c))))))),
      rows.length > 1000 ? h("p", {class: "muted"}, "first 1,000 rows") : null);
    return;
  }
  viewer.replaceChildren(title, h("pre", {class: "file"}, text.length > 2e6 ? text.slice(0, 2e6) + "\n…" : text));
}

// CSV as RFC 4180 writes it: quoted fields, doubled quotes.
function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  return rows;
}

// -- compare --------------------------------------------------------------

// The rows the SVG charts draw: a run's flags and last scalars by name.
function plotRows(runs) {
  return runs.map(r => ({id: r.id, label: `${r.short_id} ${r.operation}${r.label ? " " + r.label : ""}`,
                         values: {...r.flags, ...r.scalars}}));
}

function varying(runs, names, get) {
  return names.filter(n => new Set(runs.map(r => JSON.stringify(get(r)[n] ?? null))).size > 1);
}

// Curves, parallel coordinates, scatter and the table of `runs` (rows
// of /api/runs), into `into`. `objective`: the scalar that colours and
// ends the parallel coordinates.
function analysis(into, runs, opts = {}) {
  const flags = Array.from(new Set(runs.flatMap(r => Object.keys(r.flags)))).sort();
  const scalars = Array.from(new Set(runs.flatMap(r => Object.keys(r.scalars)))).sort();
  const rows = plotRows(runs);
  const objective = opts.objective && scalars.includes(opts.objective) ? opts.objective
    : scalars.includes("loss") ? "loss" : scalars[0];
  const maximize = !!opts.maximize;

  // Scalar curves over steps.
  const curveBox = h("div", {id: "curves"});
  const tagSel = h("select", {id: "curve-tag"}, scalars.map(t => h("option", {value: t, selected: t === objective}, t)));
  const smooth = h("input", {type: "range", id: "smoothing", min: 0, max: 0.99, step: 0.01, value: 0.6});
  const smoothText = h("span", {id: "smoothing-value"}, "0.6");
  const legend = h("div", {id: "curve-legend"});
  const colors = new Map(runs.map((r, i) => [r.id, GuildCharts.color(i)]));
  const drawCurves = async () => {
    if (!tagSel.value) { curveBox.textContent = "No scalars."; return; }
    smoothText.textContent = smooth.value;
    const sm = +smooth.value;
    try {
      const s = await api("/api/scalars?" + query({runs: runs.map(r => r.id).join(","), tag: tagSel.value,
                                                   max_points: 1000, smoothing: sm || null}));
      const byId = new Map(runs.map(r => [r.id, r]));
      const drawn = s.runs.filter(r => r.points.length);
      GuildCharts.lines(curveBox, drawn.map(r => ({
        id: r.run, label: byId.get(r.run).short_id, color: colors.get(r.run),
        points: sm ? r.points.map((p, i) => [p[0], r.smoothed[i]]) : r.points,
      })), {yLabel: tagSel.value, empty: `No run logged ${tagSel.value}.`});
      legend.replaceChildren(...drawn.map(r => h("span", {class: "muted", style: "margin-right:1em"},
        h("span", {class: "legend-swatch", style: `background:${colors.get(r.run)}`}),
        `${byId.get(r.run).short_id} (${r.count} points${r.count > r.points.length ? `, ${r.points.length} drawn` : ""})`)));
    } catch (e) { failed(e); }
  };
  tagSel.addEventListener("change", drawCurves);
  smooth.addEventListener("input", drawCurves);

  // Parallel coordinates: the flags that differ (all, if none does),
  // then the objective.
  const pcBox = h("div", {id: "parallel"});
  const pcFlags = varying(runs, flags, r => r.flags);
  const dims = [...(pcFlags.length ? pcFlags : flags), ...(objective ? [objective] : [])];
  const objSel = h("select", {id: "pc-objective"}, scalars.map(t => h("option", {value: t, selected: t === objective}, t)));
  const drawParallel = () => {
    const obj = objSel.value;
    const d = [...(pcFlags.length ? pcFlags : flags), ...(obj ? [obj] : [])];
    GuildCharts.parallel(pcBox, rows, d, {objective: obj, maximize, onClick: row => { location.hash = `#/run/${row.id}`; }});
  };
  objSel.addEventListener("change", drawParallel);

  // Scatter of one flag or scalar against another.
  const names = [...flags, ...scalars];
  const xSel = h("select", {id: "scatter-x"}, names.map(n => h("option", {value: n, selected: n === (pcFlags[0] || flags[0])}, n)));
  const ySel = h("select", {id: "scatter-y"}, names.map(n => h("option", {value: n, selected: n === objective}, n)));
  const scBox = h("div", {id: "scatter"});
  const drawScatter = () => {
    const colorOf = objective ? GuildCharts.objectiveColors(rows, objective, maximize) : undefined;
    GuildCharts.scatter(scBox, rows, xSel.value, ySel.value, {colorOf, onClick: row => { location.hash = `#/run/${row.id}`; }});
  };
  xSel.addEventListener("change", drawScatter);
  ySel.addEventListener("change", drawScatter);

  into.append(
    section("Scalars over steps", h("div", {class: "toolbar"}, "scalar ", tagSel, " smoothing ", smooth, smoothText), curveBox, legend),
    section("Parallel coordinates", h("div", {class: "toolbar"}, "objective ", objSel,
      h("span", {class: "muted"}, " one line per run; blue is best")), pcBox),
    section("Scatter", h("div", {class: "toolbar"}, "x ", xSel, " y ", ySel), scBox));
  drawCurves();
  if (dims.length) drawParallel(); else pcBox.textContent = "No flags or scalars to plot.";
  if (names.length) drawScatter();
}

async function runsById(ids) {
  const out = [];
  for (let i = 0; i < ids.length; i += 1000) {
    const data = await api("/api/runs?" + query({runs: ids.slice(i, i + 1000).join(","), limit: 1000,
                                                 sort: "started", desc: false}));
    out.push(...data.runs);
  }
  return out;
}

async function comparePage(params) {
  const ids = (params.get("runs") || "").split(",").filter(Boolean);
  const page = currentPage;
  if (!ids.length) {
    main.replaceChildren(h("h1", {}, "Compare"),
      h("p", {}, "Select runs in the ", h("a", {href: "#/runs"}, "runs table"), " and press Compare."));
    return;
  }
  let runs, table;
  try {
    runs = await runsById(ids);
    table = await api("/api/compare?" + query({runs: ids.join(","), include_batch: true}));
  } catch (e) { failed(e); return; }
  if (page !== currentPage) return;
  const body = h("div", {});
  main.replaceChildren(h("h1", {}, `Compare ${runs.length} run(s)`), body);
  analysis(body, runs);
  body.append(section("Table", compareTable(table)));
}

function compareTable(table) {
  return h("div", {class: "wide"}, h("table", {class: "grid", id: "compare-table"},
    h("thead", {}, h("tr", {}, table.columns.map(c => h("th", {}, c)))),
    h("tbody", {}, table.rows.map((row, i) => h("tr", {dataset: {run: table.runs[i]}},
      row.map((v, j) => (j === 0 ? h("td", {}, runLink(table.runs[i])) : valueCell(v))))))));
}

// -- a batch --------------------------------------------------------------

async function batchPage(id) {
  const page = currentPage;
  let batch, trials;
  try {
    batch = await api(`/api/runs/${id}`);
    if (!batch.trials) { location.hash = `#/run/${id}`; return; }
    trials = await runsById(batch.trials.trials.map(t => t.id));
  } catch (e) { failed(e); return; }
  if (page !== currentPage) return;
  const t = batch.trials;
  const flags = Array.from(new Set(trials.flatMap(r => Object.keys(r.flags)))).sort();
  const byId = new Map(trials.map(r => [r.id, r]));
  const bestTrial = t.trials.find(x => x.objective !== null && x.objective === t.best);
  const history = h("div", {id: "history"});
  const body = h("div", {});
  main.replaceChildren(
    h("h1", {}, `Batch ${batch.short_id} `, h("span", {class: "muted"}, batch.operation), " ",
      h("span", {class: `status-${batch.status}`}, batch.status)),
    kvTable([["trials", t.trials.length],
             ["objective", `${t.objective} (${t.maximize ? "maximized" : "minimized"})`],
             ["best", bestTrial ? h("span", {id: "best"}, fmt(t.best), " in ", runLink(bestTrial.id)) : "none yet"],
             ["batch run", runLink(batch.id)]]),
    section("Optimization history", history),
    section("Trials", h("div", {class: "wide"}, h("table", {class: "grid trials", id: "trials-table"},
      h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "trial"), h("th", {}, "status"),
        flags.map(f => h("th", {class: "flag"}, f)), h("th", {class: "scalar"}, t.objective), h("th", {}, "best so far"))),
      h("tbody", {}, t.trials.map((x, i) => {
        const r = byId.get(x.id) || {flags: {}};
        return h("tr", {dataset: {run: x.id}, class: x === bestTrial ? "selected" : ""},
          h("td", {class: "num"}, i + 1), h("td", {}, runLink(x.id)), statusCell(x.status),
          flags.map(f => valueCell(r.flags[f])), valueCell(x.objective), valueCell(x.best));
      }))))),
    body);
  GuildCharts.history(history, t.trials, {objective: t.objective});
  analysis(body, trials, {objective: t.objective, maximize: t.maximize});
  if (batch.status === "running" || t.trials.some(x => x.status === "running")) {
    poll(() => { route(true); return false; }, 3000);
  }
}

// -- routing ----------------------------------------------------------------

let currentPage = 0;

// `keep`: the message line stays (a page redrawn after a change).
function route(keep) {
  currentPage++;
  if (keep !== true) say("");
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, q] = hash.split("?");
  const params = new URLSearchParams(q || "");
  const parts = path.split("/");
  document.getElementById("nav-compare").href = selected.size ? `#/compare?runs=${Array.from(selected).join(",")}` : "#/compare";
  if (parts[0] === "run" && parts[1]) return runPage(parts[1]);
  if (parts[0] === "batch" && parts[1]) return batchPage(parts[1]);
  if (parts[0] === "compare") return comparePage(params);
  if (parts[0] === "deleted") return runsPage(true);
  return runsPage(false);
}

window.addEventListener("hashchange", () => route());
route();
