// labhost's chart components, over uPlot (vendored at build time, MIT): one way to draw a
// run's metrics and a sweep, used by the dashboard (served at /static/labhost.js) and inlined
// into `labhost report` pages. No request leaves the page's server.
//
//   LH.metricChart(el, series, opts) -> chart   a metric over step or wall time: log y,
//                                              smoothing (debiased EMA), live appends
//   LH.parallel(el, report, opts)              parallel coordinates: log axes for log-scaled
//                                              parameters, categorical axes, brushing
//   LH.sweep(root, report)                     a sweep's charts from a report (objective per
//                                              trial with best so far, the trials' curves,
//                                              parallel coordinates)
"use strict";
window.LH = (function () {
  const hue = (i, a) => "hsla(" + ((i * 137) % 360) + ",65%,42%," + (a === undefined ? 1 : a) + ")";
  const fmt = v => {
    if (v === null || v === undefined || Number.isNaN(v)) return "";
    if (typeof v !== "number") return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    return String(Math.round(v * 1e4) / 1e4);
  };
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const width = node => Math.max(320, Math.min(900, (node.clientWidth || 760) - 8));
  // Steps and trial numbers are whole: their axis never ticks at 1.25.
  const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7];

  // TensorBoard's smoothing: an exponential moving average, debiased at the start.
  function smooth(ys, w) {
    if (!(w > 0)) return ys;
    let last = 0, n = 0;
    return ys.map(y => {
      if (y === null || !Number.isFinite(y)) return y;
      last = last * w + (1 - w) * y;
      n++;
      return last / (1 - Math.pow(w, n));
    });
  }

  // A metric chart: `series` is [{name, step: [], value: [], ts: []}]; opts: {title, height}.
  // Controls: x by step or wall time (seconds from the first point), log y, smoothing.
  function metricChart(node, series, opts) {
    opts = opts || {};
    const box = el("div", {class: "lh-chart"});
    const bar = el("div", {class: "lh-controls"});
    const xSel = el("select", {class: "lh-x"});
    for (const [v, t] of [["step", "step"], ["time", "wall time (s)"]]) xSel.appendChild(el("option", {value: v}, t));
    const logBox = el("input", {type: "checkbox", class: "lh-log"});
    const sm = el("input", {type: "range", min: "0", max: "0.99", step: "0.01", value: "0", class: "lh-smooth"});
    bar.append("x ", xSel, " ", el("label", {}, "log y "), logBox, " smoothing ", sm);
    if (opts.stepOnly) xSel.style.display = "none";
    const plot = el("div");
    box.append(bar, plot);
    node.appendChild(box);
    const state = {series: series.map(s => ({name: s.name, step: s.step.slice(), value: s.value.slice(), ts: s.ts.slice()})), u: null};
    const positive = () => state.series.every(s => s.value.every(v => !Number.isFinite(v) || v > 0));
    function data() {
      // One x for all series: the union of their x values, each series null where it has none.
      const byTime = xSel.value === "time";
      const t0 = Math.min(...state.series.map(s => (s.ts.length ? s.ts[0] : Infinity)));
      const xs = new Set();
      const cols = state.series.map(s => {
        const m = new Map();
        s.step.forEach((st, i) => { const x = byTime ? s.ts[i] - t0 : st; xs.add(x); m.set(x, s.value[i]); });
        return m;
      });
      const x = [...xs].sort((a, b) => a - b);
      const w = Number(sm.value);
      const ys = cols.map(m => x.map(v => (m.has(v) ? m.get(v) : null)));
      const out = [x];
      ys.forEach(y => { out.push(y); if (w > 0) out.push(smooth(y, w)); });
      return out;
    }
    function build() {
      if (state.u) state.u.destroy();
      const w = Number(sm.value), log = logBox.checked && positive();
      const ser = [{label: xSel.value === "time" ? "seconds" : "step", value: (u, v) => fmt(v)}];
      state.series.forEach((s, i) => {
        ser.push({label: s.name, stroke: hue(i, w > 0 ? 0.25 : 1), width: 1.5, spanGaps: true, value: (u, v) => fmt(v)});
        if (w > 0) ser.push({label: s.name + " (smoothed)", stroke: hue(i), width: 2, spanGaps: true, value: (u, v) => fmt(v)});
      });
      state.u = new uPlot({
        title: opts.title, width: width(node), height: opts.height || 260,
        scales: {x: {time: false}, y: log ? {distr: 3} : {}},
        axes: [xSel.value === "time" ? {label: "seconds"} : {label: "step", incrs: WHOLE}, {values: (u, vs) => vs.map(fmt), size: 60}],
        series: ser, legend: {live: true},
      }, data(), plot);
      box.dataset.log = log ? "1" : "0";
      box.dataset.series = String(state.series.length);
      box.dataset.points = String(state.series.reduce((n, s) => n + s.value.length, 0));
    }
    logBox.disabled = !positive();
    for (const c of [xSel, logBox, sm]) c.addEventListener("change", build);
    sm.addEventListener("input", build);
    build();
    return {
      box,
      // New points of series `name` (live): appended, and drawn.
      append(name, pts) {
        let s = state.series.find(s => s.name === name);
        if (!s) { s = {name, step: [], value: [], ts: []}; state.series.push(s); }
        for (const p of pts) { s.step.push(p[0]); s.value.push(p[1]); s.ts.push(p[2]); }
        logBox.disabled = !positive();
        if (state.series.length !== state.u.series.length - 1 || Number(sm.value) > 0) build();
        else { state.u.setData(data()); box.dataset.points = String(state.series.reduce((n, s) => n + s.value.length, 0)); }
      },
      last(name) { const s = state.series.find(s => s.name === name); return s && s.step.length ? s.step[s.step.length - 1] : null; },
      redraw: build,
    };
  }

  // Nice ticks: linear (1, 2, 5 × 10^k), log (powers of ten, or 1-2-5 when the range is short).
  function ticks(lo, hi, kind) {
    if (kind === "log") {
      const out = [], a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
      const mult = b - a <= 2 ? [1, 2, 5] : [1];
      for (let k = a; k <= b; k++) for (const m of mult) { const v = m * Math.pow(10, k); if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v); }
      return out.length >= 2 ? out : [lo, hi];
    }
    if (hi === lo) return [lo];
    const raw = (hi - lo) / 5, p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(m => m * p).find(s => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.round(v / step) * step);
    return out;
  }

  // Parallel coordinates of a report's rows: one axis per parameter (its scale from the
  // search space: `log` for log-scaled distributions, `category` for choices and strings)
  // and the objective last; lines coloured by the objective. Drag along an axis to brush a
  // range (several axes combine); a click on an axis clears its brush.
  function parallel(node, R) {
    const dims = R.parameters.map(p => ({name: p, get: r => r.params[p], scale: (R.scales || {})[p]}));
    if (R.objective) dims.push({name: R.objective, get: r => r.best, scale: "linear"});
    const rows = R.rows;
    const wrap = el("div", {class: "lh-parallel"});
    node.appendChild(wrap);
    if (dims.length < 2 || !rows.length) { wrap.appendChild(el("p", {}, "fewer than two axes or no trials")); return; }
    const W = width(node), H = 320, P = 48, top = 34, bottom = 30;
    const cv = el("canvas", {width: W, height: H});
    wrap.appendChild(cv);
    for (const d of dims) {
      const vs = rows.map(d.get).filter(v => v !== null && v !== undefined);
      const nums = vs.length > 0 && vs.every(v => typeof v === "number");
      if (!nums) d.scale = "category";
      else if (d.scale === "log" && !vs.every(v => v > 0)) d.scale = "linear";
      else if (d.scale !== "log") d.scale = d.scale === "category" ? "category" : "linear";
      if (d.scale === "category") {
        d.cats = [...new Set(vs.map(String))].sort((a, b) => a.localeCompare(b, undefined, {numeric: true}));
        d.t = v => (d.cats.length < 2 ? 0.5 : d.cats.indexOf(String(v)) / (d.cats.length - 1));
      } else {
        d.lo = Math.min(...vs); d.hi = Math.max(...vs);
        const f = d.scale === "log" ? Math.log10 : (v => v);
        const a = f(d.lo), b = f(d.hi);
        d.t = v => (b === a ? 0.5 : (f(v) - a) / (b - a));
      }
      d.brush = null;
    }
    const x = i => P + (i * (W - 2 * P)) / (dims.length - 1);
    const y = t => H - bottom - t * (H - top - bottom);
    const obj = R.objective ? dims[dims.length - 1] : null;
    const colour = r => {
      if (!obj || r.best === null || r.best === undefined) return "rgba(120,120,120,0.8)";
      let t = obj.t(r.best); if (R.goal === "minimize") t = 1 - t;
      return "hsla(" + Math.round(240 - 200 * t) + ",70%,45%,0.85)";
    };
    const inside = r => dims.every(d => { if (!d.brush) return true; const v = d.get(r); if (v === null || v === undefined) return false; const t = d.t(v); return t >= d.brush[0] && t <= d.brush[1]; });
    function draw() {
      const g = cv.getContext("2d");
      g.clearRect(0, 0, W, H);
      g.font = "11px system-ui, sans-serif";
      const shown = rows.filter(inside);
      for (const pass of [0, 1]) for (const r of rows) {
        const on = shown.includes(r);
        if ((pass === 1) !== on) continue;
        g.strokeStyle = on ? colour(r) : "rgba(190,190,190,0.35)";
        g.lineWidth = R.best !== null && rows[R.best] === r ? 3 : 1.3;
        g.beginPath();
        let started = false;
        dims.forEach((d, i) => { const v = d.get(r); if (v === null || v === undefined) { started = false; return; } const px = x(i), py = y(d.t(v)); if (started) g.lineTo(px, py); else g.moveTo(px, py); started = true; });
        g.stroke();
      }
      dims.forEach((d, i) => {
        g.strokeStyle = "#555"; g.lineWidth = 1; g.beginPath(); g.moveTo(x(i), y(0)); g.lineTo(x(i), y(1)); g.stroke();
        g.fillStyle = "#222"; g.textAlign = "center"; g.fillText(d.name + (d.scale === "log" ? " (log)" : ""), x(i), 14);
        g.textAlign = i === dims.length - 1 ? "right" : "left";
        const tx = i === dims.length - 1 ? x(i) - 4 : x(i) + 4;
        const marks = d.scale === "category" ? d.cats.map(c => [c, d.t(c)]) : ticks(d.lo, d.hi, d.scale).map(v => [fmt(v), d.t(v)]);
        for (const [label, t] of marks) { if (t < -0.01 || t > 1.01) continue; g.fillStyle = "#555"; g.fillText(label, tx, y(t) + 4); g.fillRect(x(i) - 3, y(t), 6, 1); }
        if (d.brush) { g.fillStyle = "rgba(9,105,218,0.18)"; g.fillRect(x(i) - 8, y(d.brush[1]), 16, y(d.brush[0]) - y(d.brush[1])); }
      });
      wrap.dataset.shown = String(shown.length);
    }
    // The axes as DOM too (what a test or a screen reader reads): name, scale, brush.
    const legend = el("div", {class: "lh-axes"});
    dims.forEach(d => legend.appendChild(el("span", {class: "lh-axis", "data-name": d.name, "data-scale": d.scale}, d.name + ": " + d.scale + "  ")));
    wrap.appendChild(legend);
    let drag = null;
    const axisAt = px => { let best = -1, dist = 20; dims.forEach((d, i) => { const dd = Math.abs(x(i) - px); if (dd < dist) { dist = dd; best = i; } }); return best; };
    const tAt = py => Math.max(0, Math.min(1, (H - bottom - py) / (H - top - bottom)));
    cv.addEventListener("mousedown", e => { const b = cv.getBoundingClientRect(); const i = axisAt(e.clientX - b.left); if (i < 0) return; drag = {i, t0: tAt(e.clientY - b.top), moved: false}; });
    cv.addEventListener("mousemove", e => { if (!drag) return; const b = cv.getBoundingClientRect(); const t = tAt(e.clientY - b.top); drag.moved = true; dims[drag.i].brush = [Math.min(drag.t0, t), Math.max(drag.t0, t)]; draw(); });
    window.addEventListener("mouseup", () => { if (drag && !drag.moved) { dims[drag.i].brush = null; draw(); } drag = null; });
    draw();
    return {brush(name, lo, hi) { const d = dims.find(d => d.name === name); d.brush = lo === null ? null : [d.t(lo), d.t(hi)].sort((a, b) => a - b); draw(); return Number(wrap.dataset.shown); }};
  }

  // A sweep's charts from a report (`labhost report`'s JSON): the objective per trial with
  // the best so far, every trial's objective curve, parallel coordinates.
  function sweep(root, R, opts) {
    root.textContent = "";
    const charts = {};
    const agg = Object.keys(R.aggregate || {});
    if ((opts || {}).aggregate && agg.length) {
      // A cross-validation: each metric across the folds.
      root.appendChild(el("h3", {}, "Across " + R.rows.length + " folds"));
      const t = el("table", {id: "lh-aggregate"});
      const hr = el("tr");
      for (const c of ["metric", "mean ± std", "min", "max"]) hr.appendChild(el("th", {}, c));
      t.appendChild(hr);
      for (const k of agg) {
        const [mean, std, min, max] = R.aggregate[k];
        const tr = el("tr", {"data-metric": k});
        for (const c of [k, fmt(mean) + " ± " + fmt(std), fmt(min), fmt(max)]) tr.appendChild(el("td", {}, c));
        t.appendChild(tr);
      }
      root.appendChild(t);
    }
    if (R.objective) {
      const h = el("h3", {}, R.objective + " per trial (" + R.goal + ") and the best so far");
      const div = el("div", {id: "lh-objective"});
      root.append(h, div);
      const done = R.rows.filter(r => r.best !== null && r.best !== undefined);
      const xs = done.map((_, i) => i + 1), ys = done.map(r => r.best);
      const best = []; let b = null;
      for (const v of ys) { b = b === null ? v : (R.goal === "maximize" ? Math.max(b, v) : Math.min(b, v)); best.push(b); }
      charts.objective = new uPlot({
        width: width(root), height: 240, scales: {x: {time: false}},
        axes: [{label: "trial (in order)", incrs: WHOLE}, {values: (u, vs) => vs.map(fmt), size: 60}],
        series: [{label: "trial", value: (u, v) => (v ? "#" + v + " run " + (done[v - 1] || {}).run_id : "")},
          {label: R.objective, stroke: "transparent", points: {show: true, size: 7, stroke: hue(0), fill: hue(0, 0.4)}, value: (u, v) => fmt(v)},
          {label: "best so far", stroke: hue(1), width: 2, value: (u, v) => fmt(v)}],
      }, [xs, ys, best], div);
      div.dataset.trials = String(done.length);
      const c = el("div", {id: "lh-curves"});
      root.append(el("h3", {}, R.objective + " of every trial"), c);
      const withCurve = R.rows.filter(r => r.curve && r.curve.length);
      if (withCurve.length) {
        charts.curves = metricChart(c, withCurve.map(r => ({name: "run " + r.run_id, step: r.curve.map(p => p[0]), value: r.curve.map(p => p[1]), ts: r.curve.map(p => p[0])})), {height: 260, stepOnly: true});
      } else c.appendChild(el("p", {}, "no trial reported " + R.objective + " yet"));
    }
    const p = el("div", {id: "lh-parallel"});
    root.append(el("h3", {}, "Parallel coordinates"), p);
    charts.parallel = parallel(p, R);
    return charts;
  }

  return {metricChart, parallel, sweep, ticks, smooth, fmt};
})();
