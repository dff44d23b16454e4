// Guild View's charts: scalar curves and optimization history drawn by
// uPlot (canvas, fast with many points), parallel coordinates and
// scatter plots as SVG (one element per run, so a run can be pointed
// at, and tests can count them). Each chart's container says what it
// drew in data- attributes.
"use strict";

const GuildCharts = (() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                   "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function color(i) {
    if (i < PALETTE.length) return PALETTE[i];
    // Past the palette: hues spread by the golden angle.
    return `hsl(${(i * 137.508) % 360}, 60%, 45%)`;
  }

  function svg(tag, attrs, parent) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    if (parent) parent.appendChild(el);
    return el;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") {
      if (Number.isInteger(v)) return String(v);
      const a = Math.abs(v);
      return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : String(+v.toPrecision(5));
    }
    return String(v);
  }

  // -- curves ------------------------------------------------------

  // series: [{id, label, points: [[x, y], ...]}]; the x values of all
  // series merged, each series null where it has no point.
  function align(series) {
    const xs = new Set();
    for (const s of series) for (const p of s.points) xs.add(p[0]);
    const x = Array.from(xs).sort((a, b) => a - b);
    const at = new Map(x.map((v, i) => [v, i]));
    const ys = series.map(s => {
      const y = new Array(x.length).fill(null);
      for (const [px, py] of s.points) y[at.get(px)] = typeof py === "number" ? py : null;
      return y;
    });
    return [x, ...ys];
  }

  function lines(el, series, opts = {}) {
    el.replaceChildren();
    el.classList.add("chart");
    el.dataset.series = String(series.length);
    el.dataset.runs = series.map(s => s.id).join(",");
    if (!series.length) {
      el.textContent = opts.empty || "No points.";
      return null;
    }
    const width = opts.width || Math.max(400, Math.min(1100, (el.parentElement || document.body).clientWidth - 20));
    const plot = new uPlot({
      width,
      height: opts.height || 320,
      title: opts.title || "",
      scales: {x: {time: false}},
      axes: [{label: opts.xLabel || "step"}, {label: opts.yLabel || ""}],
      series: [
        {label: opts.xLabel || "step"},
        ...series.map((s, i) => ({
          label: s.label, stroke: s.color || color(i), width: 1.5, spanGaps: true,
          points: {show: s.points.length < 60},
        })),
      ],
    }, align(series), el);
    el.guildPlot = plot;
    return plot;
  }

  // A batch's optimization history: each trial's objective (points)
  // and the best so far (a stepped line).
  function history(el, trials, opts = {}) {
    el.replaceChildren();
    el.classList.add("chart");
    const rows = trials.filter(t => typeof t.objective === "number");
    el.dataset.points = String(rows.length);
    if (!rows.length) {
      el.textContent = "No trial has logged the objective yet.";
      return null;
    }
    const x = trials.map((t, i) => i + 1);
    const obj = trials.map(t => (typeof t.objective === "number" ? t.objective : null));
    const best = trials.map(t => (typeof t.best === "number" ? t.best : null));
    const plot = new uPlot({
      width: opts.width || 700,
      height: opts.height || 300,
      scales: {x: {time: false}},
      axes: [{label: "trial"}, {label: opts.objective || "objective"}],
      series: [
        {label: "trial"},
        {label: opts.objective || "objective", stroke: color(0), paths: () => null,
         points: {show: true, size: 7, fill: color(0)}},
        {label: "best so far", stroke: color(3), width: 2, spanGaps: true,
         paths: uPlot.paths.stepped({align: 1}), points: {show: false}},
      ],
    }, [x, obj, best], el);
    el.guildPlot = plot;
    return plot;
  }

  // -- scales for the SVG charts ----------------------------------

  function isNum(v) { return typeof v === "number" && Number.isFinite(v); }

  // A scale mapping a dimension's values onto [lo, hi] pixels: linear
  // for numbers, evenly spaced sorted values for anything else.
  function scale(values, lo, hi) {
    const present = values.filter(v => v !== null && v !== undefined && v !== "");
    if (present.length && present.every(isNum)) {
      let min = Math.min(...present), max = Math.max(...present);
      // Values over two decades or more (learning rates): a log scale,
      // so 0.001 and 0.01 do not sit on top of each other.
      if (min > 0 && max / min >= 100) {
        const a = Math.log10(min), b = Math.log10(max);
        const f = v => (isNum(v) && v > 0 ? lo + ((Math.log10(v) - a) / (b - a)) * (hi - lo) : null);
        const ticks = [];
        for (let e = Math.ceil(a - 1e-9); e <= Math.floor(b + 1e-9); e++) ticks.push(10 ** e);
        f.ticks = (ticks.length >= 2 ? ticks : [min, max]).map(v => [v, fmt(v)]);
        f.numeric = true; f.log = true; f.min = min; f.max = max;
        return f;
      }
      if (min === max) { min -= 1; max += 1; }
      const f = v => (isNum(v) ? lo + ((v - min) / (max - min)) * (hi - lo) : null);
      f.ticks = [min, (min + max) / 2, max].map(v => [v, fmt(v)]);
      f.numeric = true; f.min = min; f.max = max;
      return f;
    }
    const cats = Array.from(new Set(present.map(String))).sort();
    const step = cats.length > 1 ? (hi - lo) / (cats.length - 1) : 0;
    const pos = new Map(cats.map((c, i) => [c, cats.length > 1 ? lo + i * step : (lo + hi) / 2]));
    const f = v => (v === null || v === undefined || v === "" ? null : pos.get(String(v)) ?? null);
    f.ticks = cats.map(c => [c, c]);
    f.numeric = false;
    return f;
  }

  // Blue for the best end of the objective, red for the worst.
  function ramp(t) {
    const a = [44, 123, 182], b = [215, 48, 39];
    const c = a.map((x, i) => Math.round(x + (b[i] - x) * t));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function objectiveColors(rows, objective, maximize) {
    const vals = rows.map(r => r.values[objective]).filter(isNum);
    const min = Math.min(...vals), max = Math.max(...vals);
    return row => {
      const v = row.values[objective];
      if (!isNum(v)) return "#999";
      const t = max === min ? 0 : (v - min) / (max - min);
      return ramp(maximize ? 1 - t : t);
    };
  }

  // -- parallel coordinates ---------------------------------------

  // rows: [{id, label, values: {dim: value}}]; dims: names, the last
  // usually the objective. One <path class="pc-line"> per row.
  function parallel(el, rows, dims, opts = {}) {
    el.replaceChildren();
    el.dataset.lines = "0";
    if (!rows.length || !dims.length) {
      el.textContent = opts.empty || "Nothing to plot.";
      return;
    }
    const width = opts.width || Math.max(500, Math.min(1100, 150 * dims.length));
    const height = opts.height || 320;
    const top = 30, bottom = height - 30, left = 60, right = width - 60;
    const root = svg("svg", {class: "parallel", width, height, viewBox: `0 0 ${width} ${height}`}, el);
    const gap = dims.length > 1 ? (right - left) / (dims.length - 1) : 0;
    const xs = dims.map((d, i) => (dims.length > 1 ? left + i * gap : (left + right) / 2));
    const scales = dims.map(d => scale(rows.map(r => r.values[d]), bottom, top));
    const colorOf = opts.objective ? objectiveColors(rows, opts.objective, opts.maximize) : () => color(0);
    const linesG = svg("g", {class: "lines"}, root);
    for (const row of rows) {
      let d = "", pen = "M";
      dims.forEach((dim, i) => {
        const y = scales[i](row.values[dim]);
        if (y === null) { pen = "M"; return; }
        d += `${pen}${xs[i].toFixed(1)},${y.toFixed(1)} `;
        pen = "L";
      });
      const path = svg("path", {class: "pc-line", d: d.trim() || "M0,0", stroke: colorOf(row), "data-run": row.id}, linesG);
      const title = svg("title", {}, path);
      title.textContent = `${row.label}\n` + dims.map(dim => `${dim}: ${fmt(row.values[dim])}`).join("\n");
      if (opts.onClick) path.addEventListener("click", () => opts.onClick(row));
    }
    dims.forEach((dim, i) => {
      const g = svg("g", {class: "axis", "data-dim": dim}, root);
      svg("line", {x1: xs[i], x2: xs[i], y1: top, y2: bottom}, g);
      const label = svg("text", {x: xs[i], y: top - 12, "text-anchor": "middle", "font-weight": "bold"}, g);
      label.textContent = dim;
      const ticks = scales[i].ticks;
      const every = Math.max(1, Math.ceil(ticks.length / 8));
      ticks.forEach(([v, text], j) => {
        if (j % every) return;
        const y = scales[i](v);
        svg("line", {x1: xs[i] - 4, x2: xs[i], y1: y, y2: y}, g);
        const t = svg("text", {x: xs[i] - 6, y: y + 4, "text-anchor": "end"}, g);
        t.textContent = text;
      });
    });
    el.dataset.lines = String(rows.length);
  }

  // -- scatter -----------------------------------------------------

  function scatter(el, rows, xDim, yDim, opts = {}) {
    el.replaceChildren();
    el.dataset.points = "0";
    const shown = rows.filter(r => r.values[xDim] != null && r.values[yDim] != null);
    if (!shown.length) {
      el.textContent = `No run has both ${xDim} and ${yDim}.`;
      return;
    }
    const width = opts.width || 520, height = opts.height || 360;
    const left = 70, right = width - 20, top = 20, bottom = height - 45;
    const root = svg("svg", {class: "scatter", width, height, viewBox: `0 0 ${width} ${height}`}, el);
    const sx = scale(shown.map(r => r.values[xDim]), left, right);
    const sy = scale(shown.map(r => r.values[yDim]), bottom, top);
    const axes = svg("g", {class: "axis"}, root);
    svg("line", {x1: left, x2: right, y1: bottom, y2: bottom}, axes);
    svg("line", {x1: left, x2: left, y1: top, y2: bottom}, axes);
    for (const [v, text] of sx.ticks.slice(0, 12)) {
      const x = sx(v);
      svg("line", {x1: x, x2: x, y1: bottom, y2: bottom + 4}, axes);
      svg("text", {x, y: bottom + 16, "text-anchor": "middle"}, axes).textContent = text;
    }
    for (const [v, text] of sy.ticks.slice(0, 12)) {
      const y = sy(v);
      svg("line", {x1: left - 4, x2: left, y1: y, y2: y}, axes);
      svg("text", {x: left - 6, y: y + 4, "text-anchor": "end"}, axes).textContent = text;
    }
    svg("text", {x: (left + right) / 2, y: height - 8, "text-anchor": "middle", "font-weight": "bold"}, axes).textContent = xDim;
    svg("text", {x: 14, y: (top + bottom) / 2, "text-anchor": "middle", "font-weight": "bold",
                 transform: `rotate(-90 14 ${(top + bottom) / 2})`}, axes).textContent = yDim;
    const colorOf = opts.colorOf || (() => color(0));
    for (const row of shown) {
      const c = svg("circle", {class: "sc-point", cx: sx(row.values[xDim]), cy: sy(row.values[yDim]), r: 5,
                               fill: colorOf(row), "data-run": row.id}, root);
      svg("title", {}, c).textContent = `${row.label}\n${xDim}: ${fmt(row.values[xDim])}\n${yDim}: ${fmt(row.values[yDim])}`;
      if (opts.onClick) c.addEventListener("click", () => opts.onClick(row));
    }
    el.dataset.points = String(shown.length);
  }

  return {color, fmt, lines, history, parallel, scatter, objectiveColors};
})();
