// npgpt report: draws the run's numbers (the JSON in #data) on canvases. No library, no request.
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const tip = document.getElementById("tip");
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e4) ? v.toExponential(2) : (+v.toPrecision(4)).toString();
}
function finite(v) { return typeof v === "number" && Number.isFinite(v); }
function missing(parent, text) { parent.appendChild(el("p", {class: "missing"}, text)); }

function showTip(ev, text) {
  tip.textContent = text; tip.style.display = "block";
  tip.style.left = (ev.clientX + 12) + "px"; tip.style.top = (ev.clientY + 12) + "px";
}
function hideTip() { tip.style.display = "none"; }

function makeCanvas(parent, w, h, caption) {
  const box = el("div");
  if (caption) box.appendChild(el("div", {class: "cap"}, caption));
  const c = el("canvas", {width: w, height: h});
  c.style.width = w + "px"; c.style.height = h + "px";
  box.appendChild(c); parent.appendChild(box);
  c.dataset.drawn = "1";
  return c;
}

// viridis, by a few stops
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function colour(t) {
  if (!finite(t)) return "#ddd";
  t = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(t)), f = t - i;
  const c = STOPS[i].map((a, j) => Math.round(a + f * (STOPS[i + 1][j] - a)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
function range(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (finite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) return [0, 1];
  return lo === hi ? [lo - 1, hi + 1] : [lo, hi];
}

// --- line charts ----------------------------------------------------------------------------
function lineChart(parent, title, series, opts) {
  opts = opts || {};
  const W = opts.width || 420, H = opts.height || 240, L = 56, R = 10, T = 24, B = 30;
  const c = makeCanvas(parent, W, H), g = c.getContext("2d");
  const tx = v => opts.logY ? (v > 0 ? Math.log10(v) : NaN) : v;
  const xs = series.flatMap(s => s.x), ys = series.flatMap(s => s.y.map(tx));
  const refs = (opts.refs || []).map(tx);
  const [x0, x1] = range(xs), [y0, y1] = range(ys.concat(refs));
  const px = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const py = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
  g.fillStyle = "#222"; g.font = "12px sans-serif"; g.fillText(title, L, 15);
  g.strokeStyle = "#999"; g.beginPath(); g.moveTo(L, T); g.lineTo(L, H - B); g.lineTo(W - R, H - B); g.stroke();
  g.fillStyle = "#555"; g.font = "10px sans-serif";
  for (let k = 0; k <= 4; k++) {
    const y = y0 + (y1 - y0) * k / 4, x = x0 + (x1 - x0) * k / 4;
    g.fillText(opts.logY ? "1e" + y.toFixed(1) : fmt(y), 2, py(y) + 3);
    g.fillText(fmt(Math.round(x)), px(x) - 8, H - B + 14);
  }
  g.setLineDash([4, 4]); g.strokeStyle = "#c00";
  for (const r of refs) { g.beginPath(); g.moveTo(L, py(r)); g.lineTo(W - R, py(r)); g.stroke(); }
  g.setLineDash([]);
  series.forEach((s, k) => {
    g.strokeStyle = s.colour || COLOURS[k % COLOURS.length]; g.lineWidth = 1.5; g.beginPath();
    let pen = false;
    s.x.forEach((x, i) => {
      const y = tx(s.y[i]);
      if (!finite(y)) { pen = false; return; }
      if (pen) g.lineTo(px(x), py(y)); else g.moveTo(px(x), py(y));
      pen = true;
    });
    g.stroke();
    if (series.length > 1 && k < 12) {
      g.fillStyle = g.strokeStyle; g.font = "10px sans-serif";
      g.fillText(s.name, W - R - 150, T + 10 + 11 * k);
    }
  });
  c.addEventListener("mousemove", ev => {
    const x = x0 + (ev.offsetX - L) / (W - L - R) * (x1 - x0);
    const lines = series.map(s => {
      let best = 0;
      s.x.forEach((v, i) => { if (Math.abs(v - x) < Math.abs(s.x[best] - x)) best = i; });
      return s.x.length ? `${s.name}: step ${s.x[best]}  ${fmt(s.y[best])}` : "";
    });
    showTip(ev, lines.filter(Boolean).slice(0, 12).join("\n"));
  });
  c.addEventListener("mouseleave", hideTip);
  return c;
}

// --- heatmaps -------------------------------------------------------------------------------
function heatmap(parent, rows, cols, values, opts) {
  opts = opts || {};
  const cw = Math.max(2, Math.min(30, Math.floor(900 / Math.max(1, cols.length))));
  const ch = opts.cellHeight || 18, L = opts.left || 70;
  const W = L + cw * cols.length + 60, H = ch * rows.length + 24;
  const c = makeCanvas(parent, W, H), g = c.getContext("2d");
  const [lo, hi] = opts.range || range(values.flat());
  g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
  g.font = "10px sans-serif";
  rows.forEach((r, i) => {
    g.fillStyle = "#333"; g.fillText(String(r).slice(-Math.floor(L / 5.5)), 2, i * ch + ch - 3);
    cols.forEach((_, j) => {
      g.fillStyle = colour((values[i][j] - lo) / (hi - lo));
      g.fillRect(L + j * cw, i * ch, cw, ch - 1);
    });
  });
  g.fillStyle = "#333";
  g.fillText("step " + cols[0], L, H - 6);
  if (cols.length > 1) g.fillText(String(cols[cols.length - 1]), Math.max(L + 60, L + cw * cols.length - 20), H - 6);
  for (let k = 0; k < 5; k++) {            // the colour scale
    g.fillStyle = colour(k / 4); g.fillRect(W - 52, k * 12, 10, 12);
    g.fillStyle = "#333"; g.fillText(fmt(lo + (hi - lo) * k / 4), W - 40, k * 12 + 10);
  }
  c.addEventListener("mousemove", ev => {
    const i = Math.floor(ev.offsetY / ch), j = Math.floor((ev.offsetX - L) / cw);
    if (i < 0 || i >= rows.length || j < 0 || j >= cols.length) return hideTip();
    showTip(ev, `${rows[i]}, step ${cols[j]}: ${fmt(values[i][j])}`);
  });
  c.addEventListener("mouseleave", hideTip);
  return c;
}

// --- the run's summary and curves -----------------------------------------------------------
function summary() {
  const cfg = D.config || {}, cv = D.curves;
  const parts = [`Run ${D.run}.`];
  if (cfg.n_layer) parts.push(`Model: ${cfg.n_layer} layers, ${cfg.n_head} heads, n_embd ${cfg.n_embd}, vocabulary ${cfg.vocab_size}, block ${cfg.block_size}.`);
  if (cv.step.length) parts.push(`${cv.step[cv.step.length - 1]} steps; last training loss ${fmt(cv.loss[cv.loss.length - 1])}.`);
  const ev = cv.eval;
  if (ev.step.length && ev.val) parts.push(`Validation loss ${fmt(ev.val[ev.val.length - 1])} at step ${ev.step[ev.step.length - 1]}.`);
  document.getElementById("summary").textContent = parts.join(" ");
  const notes = document.getElementById("notes");
  for (const n of D.notes) notes.appendChild(el("li", {}, n));
}

function drawCurves() {
  const box = document.getElementById("curves"), cv = D.curves;
  if (!cv.step.length && !cv.eval.step.length) return missing(box, "metrics.jsonl has no training records.");
  const loss = [{name: "train (logged)", x: cv.step, y: cv.loss}];
  for (const [k, v] of Object.entries(cv.eval)) if (k !== "step") loss.push({name: k + " (evaluation)", x: cv.eval.step, y: v});
  lineChart(box, "loss", loss);
  if (cv.step.length) {
    lineChart(box, "learning rate", [{name: "lr", x: cv.step, y: cv.lr}]);
    lineChart(box, "gradient norm (before clipping)", [{name: "grad norm", x: cv.step, y: cv.grad_norm}], {logY: true});
  }
}

// --- statistics -----------------------------------------------------------------------------
function drawStats() {
  const S = D.stats;
  const ids = ["stat-heatmap", "update-heatmap", "lecture"];
  if (!S) {
    for (const id of ids) missing(document.getElementById(id), "No training statistics in this run (train with --stats-interval N).");
    document.getElementById("stat-select").disabled = true;
    document.getElementById("lecture-slider").disabled = true;
    return;
  }
  const select = document.getElementById("stat-select"), box = document.getElementById("stat-heatmap");
  for (const name of Object.keys(S.layer_metrics)) select.appendChild(el("option", {value: name}, name));
  const show = () => { box.textContent = ""; heatmap(box, S.layers, S.step, S.layer_metrics[select.value]); };
  select.addEventListener("change", show); show();
  const upd = document.getElementById("update-heatmap");
  heatmap(upd, S.params, S.step, S.param_metrics.update_data, {cellHeight: 12, left: 160, range: [-5, -1]});
  const slider = document.getElementById("lecture-slider");
  slider.max = S.step.length - 1; slider.value = S.step.length - 1;
  slider.addEventListener("input", drawLecture); drawLecture();
}

function histogram(parent, title, edges, hists, names, note) {
  const W = 420, H = 240, L = 40, B = 26, T = 24;
  const c = makeCanvas(parent, W, H), g = c.getContext("2d");
  g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
  g.fillStyle = "#222"; g.font = "12px sans-serif"; g.fillText(title, L, 15);
  if (!edges) { g.fillText("no histogram edges in stats.jsonl", L, 60); return; }
  const centres = edges.slice(0, -1).map((e, i) => (e + edges[i + 1]) / 2);
  const peak = Math.max(1e-9, ...hists.flat().filter(finite));
  const px = x => L + (x - edges[0]) / (edges[edges.length - 1] - edges[0]) * (W - L - 10);
  const py = y => H - B - y / peak * (H - T - B);
  g.strokeStyle = "#999"; g.beginPath(); g.moveTo(L, H - B); g.lineTo(W - 10, H - B); g.stroke();
  g.fillStyle = "#555"; g.font = "10px sans-serif";
  for (const x of [edges[0], 0, edges[edges.length - 1]]) g.fillText(fmt(x), px(x) - 6, H - B + 13);
  hists.forEach((h, k) => {
    if (!h) return;
    g.strokeStyle = COLOURS[k % COLOURS.length]; g.beginPath();
    centres.forEach((x, i) => { if (i) g.lineTo(px(x), py(h[i])); else g.moveTo(px(x), py(h[i])); });
    g.stroke();
    g.fillStyle = g.strokeStyle; g.fillText(names[k] + (note ? note(k) : ""), W - 190, T + 10 + 11 * k);
  });
}

function bars(parent, title, names, values, refs) {
  const W = 420, H = 240, L = 150, T = 24;
  const c = makeCanvas(parent, W, H), g = c.getContext("2d");
  const bh = Math.max(2, Math.min(14, Math.floor((H - T - 6) / Math.max(1, names.length))));
  const hi = Math.max(1e-12, ...values.filter(finite), ...refs);
  g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
  g.fillStyle = "#222"; g.font = "12px sans-serif"; g.fillText(title, 4, 15);
  g.font = "9px sans-serif";
  names.forEach((n, i) => {
    g.fillStyle = "#333"; if (bh >= 8) g.fillText(n.slice(-24), 2, T + i * bh + bh - 2);
    g.fillStyle = COLOURS[0];
    if (finite(values[i])) g.fillRect(L, T + i * bh, values[i] / hi * (W - L - 40), bh - 1);
  });
  c.addEventListener("mousemove", ev => {
    const i = Math.floor((ev.offsetY - T) / bh);
    if (i < 0 || i >= names.length) return hideTip();
    showTip(ev, `${names[i]}: ${fmt(values[i])}`);
  });
  c.addEventListener("mouseleave", hideTip);
}

function drawLecture() {
  const S = D.stats, box = document.getElementById("lecture");
  const s = +document.getElementById("lecture-slider").value;
  document.getElementById("lecture-step").textContent = S.step[s];
  box.textContent = "";
  const sat = S.layer_metrics["saturated fraction"];
  histogram(box, "1. activations (mlp.post), distribution per layer", S.hist_edges, S.act_hist[s], S.layers,
            k => `  std ${fmt(S.layer_metrics["activation std (mlp.post)"][k][s])}`);
  histogram(box, `2. pre-activations (mlp.pre): saturated where flat`, S.hist_edges, S.pre_hist[s], S.layers,
            k => `  saturated ${fmt(100 * sat[k][s])}%`);
  const weights = S.params.map((p, i) => i).filter(i => (S.shapes[i] || []).length === 2);
  bars(box, "3. gradient : data ratio, std(g) / std(w), of the weight matrices",
       weights.map(i => S.params[i]), weights.map(i => S.param_metrics.grad_data[i][s]), []);
  lineChart(box, "4. update : data ratio, log10, of the weight matrices (red: -3)",
            weights.map(i => ({name: S.params[i], x: S.step, y: S.param_metrics.update_data[i].map(v => finite(v) ? Math.pow(10, v) : null)})),
            {logY: true, refs: [1e-3]});
}

// --- attention and the logit lens -----------------------------------------------------------
function drawProbe() {
  const P = D.probes, slider = document.getElementById("probe-slider");
  if (!P.length) {
    missing(document.getElementById("attention"), "No probe records (stats.jsonl, written at each evaluation with --stats-interval).");
    missing(document.getElementById("lens"), "No logit lens for this run.");
    slider.disabled = true;
    return;
  }
  slider.max = P.length - 1; slider.value = P.length - 1;
  slider.addEventListener("input", () => { drawAttention(); drawLens(); });
  for (const r of document.querySelectorAll("input[name=lens-mode]")) r.addEventListener("change", drawLens);
  drawAttention(); drawLens();
}

function current() {
  const p = D.probes[+document.getElementById("probe-slider").value];
  document.getElementById("probe-step").textContent = p.step;
  return p;
}

let focus = null;          // the query position whose row is outlined (hover a token)

function drawAttention() {
  const p = current(), box = document.getElementById("attention"), A = p.attention;
  box.textContent = "";
  if (!A.length) return missing(box, "This probe record has no attention patterns.");
  const H = A[0].length, T = p.tokens.length, cell = Math.max(3, Math.min(10, Math.floor(180 / Math.max(1, T))));
  const strip = el("div", {class: "tokens"});
  strip.appendChild(el("span", {class: "hint"}, "hover a token to outline what it attends to: "));
  p.tokens.forEach((t, q) => {
    const span = el("span", {class: "token"}, JSON.stringify(t).slice(1, -1) || "\u00a0");
    if (q === focus) span.classList.add("focus");
    span.addEventListener("mouseenter", () => { focus = q; drawAttention(); });
    strip.appendChild(span);
  });
  strip.addEventListener("mouseleave", () => { if (focus !== null) { focus = null; drawAttention(); } });
  box.appendChild(strip);
  const grid = el("div", {class: "grid"});
  grid.style.gridTemplateColumns = `repeat(${H}, max-content)`;
  box.appendChild(grid);
  A.forEach((layer, l) => layer.forEach((pattern, h) => {
    let caption = `layer ${l} head ${h}`;
    if (focus !== null) {
      const best = pattern[focus].indexOf(Math.max(...pattern[focus]));
      caption += `: ${JSON.stringify(p.tokens[focus])} -> ${JSON.stringify(p.tokens[best])}@${best}`;
    }
    const c = makeCanvas(grid, cell * T, cell * T, caption), g = c.getContext("2d");
    c.classList.add("attn");
    pattern.forEach((row, q) => row.forEach((w, k) => {
      g.fillStyle = k > q ? "#fafafa" : colour(w);
      g.fillRect(k * cell, q * cell, cell, cell);
    }));
    if (focus !== null) {
      g.strokeStyle = "#e00"; g.lineWidth = 1;
      g.strokeRect(0.5, focus * cell + 0.5, (focus + 1) * cell - 1, cell - 1);
    }
    c.addEventListener("mousemove", ev => {
      const q = Math.floor(ev.offsetY / cell), k = Math.floor(ev.offsetX / cell);
      if (q >= T || k >= T) return hideTip();
      const top = pattern[q].map((w, i) => [w, i]).sort((a, b) => b[0] - a[0]).slice(0, 3)
        .map(([w, i]) => `${JSON.stringify(p.tokens[i])}@${i} ${fmt(w)}`).join(", ");
      showTip(ev, `query ${JSON.stringify(p.tokens[q])}@${q} -> key ${JSON.stringify(p.tokens[k])}@${k}: ${fmt(pattern[q][k])}\nmost attended: ${top}`);
    });
    c.addEventListener("mouseleave", hideTip);
  }));
}

function drawLens() {
  const p = current(), box = document.getElementById("lens"), Lz = p.lens;
  box.textContent = "";
  if (!Lz || !Lz.labels) return missing(box, "This probe record has no logit lens.");
  const mode = document.querySelector("input[name=lens-mode]:checked").value;
  const table = el("table", {class: "lens"}), head = el("tr");
  head.appendChild(el("th", {}, "layer \\ input"));
  p.tokens.forEach(t => head.appendChild(el("th", {}, t)));
  table.appendChild(head);
  const maxRank = Math.log10(Math.max(2, D.config.vocab_size || 100));
  const maxKL = Math.max(1e-6, ...Lz.kl.flat().filter(finite));
  Lz.labels.forEach((label, r) => {
    const tr = el("tr");
    tr.appendChild(el("th", {}, label));
    p.tokens.forEach((_, t) => {
      const tokens = Lz.top_tokens ? Lz.top_tokens[r][t] : Lz.top_ids[r][t].map(String);
      const prob = Lz.top_probs[r][t][0], rank = Lz.pred_rank[r][t], kl = Lz.kl[r][t];
      const v = mode === "prob" ? prob : mode === "rank" ? 1 - Math.log10(rank) / maxRank : 1 - kl / maxKL;
      const td = el("td", {}, tokens[0]);
      td.style.background = colour(v);
      td.style.color = v > 0.6 ? "#000" : "#fff";
      const truth = Lz.true && Lz.true_rank ? `\ntrue next token rank ${Lz.true_rank[r][t]}, p ${fmt(Lz.true_prob[r][t])}` : "";
      td.title = tokens.map((s, i) => `${JSON.stringify(s)} ${fmt(Lz.top_probs[r][t][i])}`).join("\n") +
        `\nfinal prediction: rank ${rank}, p ${fmt(Lz.pred_prob[r][t])}\nKL(final || ${label}) ${fmt(kl)} nats` + truth;
      tr.appendChild(td);
    });
    table.appendChild(tr);
  });
  box.appendChild(table);
}

// --- the token embedding --------------------------------------------------------------------
function drawEmbedding() {
  const E = D.embedding, plot = document.getElementById("embedding-plot"), nb = document.getElementById("neighbours");
  if (!E || E.note) return missing(plot, E ? E.note : "No token embedding.");
  const W = 620, H = 460, M = 20;
  const c = makeCanvas(plot, W, H, `PCA of the token embedding: ${E.shown} of ${E.vocab_size} rows; the two components explain ${fmt(100 * E.explained[0])}% and ${fmt(100 * E.explained[1])}% of the variance`);
  const g = c.getContext("2d");
  const [x0, x1] = range(E.xy.map(p => p[0])), [y0, y1] = range(E.xy.map(p => p[1]));
  const px = x => M + (x - x0) / (x1 - x0) * (W - 2 * M), py = y => H - M - (y - y0) / (y1 - y0) * (H - 2 * M);
  g.fillStyle = "#fff"; g.fillRect(0, 0, W, H);
  g.font = "11px monospace";
  const labelled = E.xy.length <= 300;
  E.xy.forEach(([x, y], i) => {
    g.fillStyle = "rgba(31,119,180,0.6)"; g.fillRect(px(x) - 1.5, py(y) - 1.5, 3, 3);
    if (labelled) { g.fillStyle = "#333"; g.fillText(JSON.stringify(E.labels[i]).slice(1, -1), px(x) + 3, py(y) - 2); }
  });
  c.addEventListener("mousemove", ev => {
    let best = -1, d = 64;
    E.xy.forEach(([x, y], i) => { const e = (px(x) - ev.offsetX) ** 2 + (py(y) - ev.offsetY) ** 2; if (e < d) { d = e; best = i; } });
    if (best < 0) return hideTip();
    showTip(ev, `id ${best}: ${JSON.stringify(E.labels[best])}`);
  });
  c.addEventListener("mouseleave", hideTip);
  nb.appendChild(el("h3", {}, "Nearest rows (cosine similarity)"));
  const table = el("table", {class: "nb"});
  for (const q of E.neighbours) {
    const tr = el("tr");
    tr.appendChild(el("td", {}, JSON.stringify(q.token)));
    tr.appendChild(el("td", {}, q.near.map(([t, s]) => `${JSON.stringify(t)} ${s.toFixed(2)}`).join("  ")));
    table.appendChild(tr);
  }
  nb.appendChild(table);
}

for (const draw of [summary, drawCurves, drawStats, drawProbe, drawEmbedding]) {
  try { draw(); } catch (e) { console.error(`report: ${draw.name} failed: ${e && e.stack || e}`); }
}
document.body.dataset.ready = "1";
