// What a succeeded job learned (GET /v1/jobs/{id}/learned, the worker's summary): penalties
// as sorted bars (feature names when the data set has them), example weights as a histogram
// split clean / corrupted, layer decays, and each small hyperparameter over the iterations.
// Bars and histograms are SVG drawn here (attributes only: the CSP allows no inline style);
// the paths are uPlot line charts like the trace's.
import { getJSON } from "./api.js";
import { PALETTE, TraceChart } from "./chart.js";
import { h } from "./dom.js";
import * as fmt from "./fmt.js";

const NS = "http://www.w3.org/2000/svg";
const BARS_SHOWN = 40; // the largest; the rest are counted in the caption
const W = 640;

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Horizontal bars, largest first; a log scale when the values span over two decades. */
export function barChart(labels, values, { unit = "" } = {}) {
  const n = Math.min(values.length, BARS_SHOWN);
  const positive = values.slice(0, n).filter((v) => v > 0);
  const hi = Math.max(...positive, 1e-300);
  const lo = Math.min(...positive, hi);
  const log = hi / lo > 100;
  const floor = log ? lo / 2 : 0;
  const scale = (v) => (log ? Math.log(Math.max(v, floor) / floor) / Math.log(hi / floor) : v / hi);
  const row = 18;
  const left = 150;
  const width = W - left - 70;
  const svg = s("svg", { viewBox: `0 0 ${W} ${n * row + 22}`, width: "100%", class: "bars",
    role: "img", "aria-label": `${n} bars${log ? ", log scale" : ""}`, "data-bars": n,
    "data-log": log ? "1" : "0" });
  for (let i = 0; i < n; i++) {
    const y = i * row + 2;
    const len = Math.max(1, scale(values[i]) * width);
    svg.append(
      s("text", { x: left - 6, y: y + 12, class: "bar-label", "text-anchor": "end" },
        labels[i].length > 24 ? `${labels[i].slice(0, 23)}…` : labels[i]),
      s("rect", { x: left, y, width: len, height: row - 5, fill: PALETTE[0], class: "bar" },
        s("title", {}, `${labels[i]}: ${fmt.num(values[i], 5)}${unit}`)),
      s("text", { x: left + len + 4, y: y + 12, class: "bar-value" }, fmt.num(values[i], 3)),
    );
  }
  svg.append(s("text", { x: left, y: n * row + 16, class: "axis-note" },
    log ? "log scale" : "linear scale, from 0"));
  return svg;
}

/** Counts per bin on [0, 1]: stacked clean (green) and corrupted (red), or all (blue). */
export function histogram(w) {
  const split = Array.isArray(w.clean) && Array.isArray(w.corrupted);
  const parts = split ? [["clean", w.clean, PALETTE[2]], ["corrupted", w.corrupted, PALETTE[1]]]
    : [["all", w.all, PALETTE[0]]];
  const bins = w.all.length;
  const top = Math.max(...w.all, 1);
  const H = 180;
  const left = 40;
  const plotW = W - left - 10;
  const bw = plotW / bins;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H + 40}`, width: "100%", class: "histogram",
    role: "img", "aria-label": `histogram of ${w.count} example weights`, "data-bins": bins,
    "data-split": split ? "1" : "0" });
  const base = Array(bins).fill(0);
  for (const [name, counts, color] of parts) {
    for (let i = 0; i < bins; i++) {
      if (!counts[i]) continue;
      const hgt = (counts[i] / top) * H;
      const y = H - ((base[i] / top) * H) - hgt + 4;
      base[i] += counts[i];
      svg.append(s("rect", { x: left + i * bw + 1, y, width: Math.max(1, bw - 2), height: hgt,
        fill: color, class: `bin bin-${name}` },
      s("title", {}, `${name}: ${counts[i]} in [${w.edges[i].toFixed(2)}, ${w.edges[i + 1].toFixed(2)})`)));
    }
  }
  svg.append(
    s("line", { x1: left, y1: H + 4, x2: left + plotW, y2: H + 4, class: "axis" }),
    s("text", { x: left, y: H + 20, class: "axis-note" }, "0"),
    s("text", { x: left + plotW / 2, y: H + 20, class: "axis-note", "text-anchor": "middle" },
      "example weight σ(λ)"),
    s("text", { x: left + plotW, y: H + 20, class: "axis-note", "text-anchor": "end" }, "1"),
    s("text", { x: left - 6, y: 14, class: "axis-note", "text-anchor": "end" }, String(top)),
  );
  let x = left;
  for (const [name, , color] of parts) {
    svg.append(s("rect", { x, y: H + 28, width: 10, height: 10, fill: color }),
      s("text", { x: x + 14, y: H + 37, class: "axis-note" }, name));
    x += 90;
  }
  return svg;
}

function box(id, title, ...children) {
  return h("div", { id, class: "learned-chart" }, h("h3", {}, title), ...children);
}

/**
 * Draws what the job learned into `container` (hidden while there is nothing to show).
 * Returns the line charts, for the caller to destroy.
 */
export async function mountLearned(container, jobId) {
  const l = await getJSON(`/v1/jobs/${jobId}/learned`);
  const parts = [];
  const charts = [];
  if (l.penalties) {
    const p = l.penalties;
    const shown = Math.min(p.values.length, BARS_SHOWN);
    parts.push(box("learned-penalties", `Learned penalties exp(λ), per ${p.per}, largest first`,
      barChart(p.labels, p.values),
      h("p", { class: "muted small" }, `${shown} of ${p.count}${p.named ? "" : "; the data set names no features"}`)));
  }
  if (l.example_weights) {
    const w = l.example_weights;
    const means = w.clean_mean !== null && w.clean_mean !== undefined
      ? `mean weight: clean ${fmt.num(w.clean_mean, 3)}, corrupted ${fmt.num(w.corrupted_mean, 3)}`
      : `mean weight ${fmt.num(w.mean, 3)}`;
    parts.push(box("learned-weights", `Example weights (${w.count})`, histogram(w),
      h("p", { class: "muted small" }, means)));
  }
  if (l.layer_decays) {
    parts.push(box("learned-decays", "Layer decays exp(λ_l)",
      barChart(l.layer_decays.labels, l.layer_decays.values)));
  }
  if (l.step_size !== null && l.step_size !== undefined) {
    parts.push(h("p", { id: "learned-step", class: "learned-step" },
      `Learned inner step size γ = ${fmt.num(l.step_size, 5)}`));
  }
  const pending = [];
  for (const path of l.paths || []) {
    const div = h("div", { id: `learned-path-${path.key}` });
    parts.push(div);
    const names = Object.keys(path.series);
    pending.push(() => {
      const chart = new TraceChart(div, {
        title: `${path.title} over the iterations`, log: path.log, height: 200,
        series: names.map((n, i) => ({ label: n, stroke: PALETTE[i % PALETTE.length] })),
      });
      chart.setData([path.iteration, ...names.map((n) => path.series[n])]);
      charts.push(chart);
    });
  }
  container.replaceChildren(h("h2", { class: "learned-title" }, "What was learned"), ...parts);
  container.hidden = parts.length === 0;
  for (const draw of pending) draw(); // uPlot measures its box: after it is in the page
  container.dataset.ready = "1";
  return charts;
}
