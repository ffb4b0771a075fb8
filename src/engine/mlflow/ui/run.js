// The run page, live: its charts (drawn from /runs/<id>/series, then appended to), the latest
// metrics table, the logs, the status, a sweep's charts — all pushed by the server over
// /runs/<id>/events. The page never polls. (RUN and LOGS are set by the page.)
"use strict";
(async function () {
  const charts = {};
  window.lhCharts = charts;
  const holder = document.getElementById("charts");
  const num = v => (v === null || v === undefined) ? "NaN" : Number.isInteger(v) ? String(v) : v.toFixed(6).replace(/0+$/, "").replace(/\.$/, "");
  const chart = (name, s) => {
    if (holder.dataset.empty) { holder.textContent = ""; delete holder.dataset.empty; }
    charts[name] = LH.metricChart(holder, [s || {name, step: [], value: [], ts: []}], {title: name});
    charts[name].box.dataset.name = name;
  };
  let after = 0;
  try {
    const d = await (await fetch("/runs/" + RUN + "/series")).json();
    after = d.upto;
    for (const s of d.series) chart(s.name, s);
    if (!d.series.length) { holder.textContent = "no metrics yet"; holder.dataset.empty = "1"; }
  } catch (e) {
    holder.textContent = "charts: " + e;
  }
  const sweepBox = document.getElementById("sweep");
  let sweepAt = 0, sweepTimer = null;
  async function drawSweep() {
    sweepAt = Date.now();
    try {
      const R = await (await fetch("/runs/" + RUN + "/report.json")).json();
      window.lhSweep = LH.sweep(sweepBox, R, {aggregate: true});
      sweepBox.dataset.trials = String(R.rows.length);
    } catch (e) {
      sweepBox.textContent = "sweep charts: " + e;
    }
  }
  // At most one redraw a second, the last change always drawn.
  const sweepChanged = () => {
    if (sweepTimer) return;
    sweepTimer = setTimeout(() => { sweepTimer = null; drawSweep(); }, Math.max(0, 1000 - (Date.now() - sweepAt)));
  };
  if (sweepBox) await drawSweep();
  const es = new EventSource("/runs/" + RUN + "/events?out=" + LOGS.out + "&err=" + LOGS.err + "&after=" + after);
  es.addEventListener("status", e => {
    const d = JSON.parse(e.data), s = document.getElementById("status");
    s.textContent = d.status; s.className = d.status;
    document.getElementById("took").textContent = d.took;
    if (d.finished) { const c = document.getElementById("cancel"); if (c) c.remove(); }
  });
  es.addEventListener("points", e => {
    const d = JSON.parse(e.data), t = document.getElementById("metrics");
    for (const name in d) {
      const pts = d[name];
      if (!charts[name]) chart(name);
      charts[name].append(name, pts);
      let row = [...t.rows].find(r => r.dataset.name === name);
      if (!row) {
        row = t.insertRow(); row.dataset.name = name;
        row.insertCell().textContent = name; row.insertCell().className = "v"; row.insertCell().className = "s";
        row.dataset.step = "-Infinity";
      }
      // The latest point: the highest step, then the newest.
      for (const p of pts) {
        const step = Number(row.dataset.step ?? row.cells[2].textContent);
        if (p[0] >= step) { row.cells[1].textContent = num(p[1]); row.cells[2].textContent = p[0]; row.dataset.step = String(p[0]); }
      }
    }
  });
  es.addEventListener("log", e => {
    const d = JSON.parse(e.data), p = document.getElementById(d.stream);
    const end = p.scrollTop + p.clientHeight >= p.scrollHeight - 4;
    p.append(d.text);
    if (end) p.scrollTop = p.scrollHeight;
  });
  es.addEventListener("progress", e => {
    const d = JSON.parse(e.data), p = document.getElementById("progress");
    if (p) p.textContent = d.progress;
    const l = document.getElementById("limits");
    if (l) l.textContent = d.limits;
    const t = document.getElementById("children");
    if (t) for (const c of d.children) {
      let row = [...t.tBodies[0].rows].find(r => r.cells[0].textContent == c.id);
      if (!row) {
        // A new child: its row on top (its params and metrics come with the next load).
        row = t.tBodies[0].insertRow(0);
        const a = document.createElement("a"); a.href = "/runs/" + c.id; a.textContent = c.id;
        row.insertCell().appendChild(a); row.insertCell(); row.insertCell().textContent = c.name;
        for (let i = 3; i < t.tHead.rows[0].cells.length; i++) row.insertCell();
      }
      row.cells[1].textContent = c.status; row.cells[1].className = c.status;
    }
    if (sweepBox) sweepChanged();
  });
  es.addEventListener("end", () => { es.close(); if (sweepBox) sweepChanged(); });
})();
