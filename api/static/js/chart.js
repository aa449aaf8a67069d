// A thin wrapper over uPlot (vendored, global `uPlot`) for traces keyed by iteration.
import { h, clear } from "./dom.js";
import { num } from "./fmt.js";

export const PALETTE = [
  "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#7f7f7f", "#bcbd22",
];

/** The nearest 1, 2 or 5 times a power of ten below (or above, `up`) a positive value. */
export function niceLog(v, up) {
  const p = 10 ** Math.floor(Math.log10(v));
  const steps = up ? [1, 2, 5, 10] : [10, 5, 2, 1];
  for (const m of steps) {
    if (up ? m * p >= v * (1 + 1e-9) : m * p <= v * (1 - 1e-9)) return m * p;
  }
  return up ? 10 * p : p;
}

/** Log-axis ticks: 1-2-(3)-5 within up to three decades, else at most ~6 powers of ten. */
export function logSplits(_u, _axis, min, max) {
  const lo = Math.floor(Math.log10(min) + 1e-9);
  const hi = Math.ceil(Math.log10(max) - 1e-9);
  const inside = (v) => v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9);
  const out = [];
  if (hi - lo <= 3) {
    const mults = hi - lo <= 1 ? [1, 2, 3, 5] : [1, 2, 5];
    for (let e = lo; e <= hi; e++) for (const m of mults) out.push(m * 10 ** e);
  } else {
    const step = Math.ceil((hi - lo) / 6);
    for (let e = lo; e <= hi; e += step) out.push(10 ** e);
  }
  return out.filter(inside).map((v) => Number(v.toPrecision(12)));
}

function tick(v) {
  if (v === null || v === undefined) return "";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2).replace(/\.?0+e/, "e");
  return String(Number(v.toPrecision(4)));
}

function positive(values) {
  return values.map((v) => (v === null || v === undefined || !(v > 0) ? null : v));
}

export function hasValues(values) {
  return !!values && values.some((v) => v !== null && v !== undefined);
}

/**
 * A chart in `container`: `series` is [{label, stroke, points}], `log` a log10 y axis.
 * setData([x, y1, y2, ...]) draws; the container's data-points says how many x values it holds.
 */
export class TraceChart {
  constructor(container, { title, series, log = false, height = 240, yLabel = "" }) {
    this.container = container;
    this.title = title;
    this.series = series;
    this.log = log;
    this.height = height;
    this.yLabel = yLabel;
    this.plot = null;
    this.data = null;
    this.box = h("div", { class: "chart-box" });
    this.empty = h("p", { class: "muted chart-empty" }, "no points yet");
    container.classList.add("chart");
    container.dataset.points = "0";
    container.dataset.ready = "0";
    clear(container).append(h("h3", {}, title), this.box, this.empty);
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(container);
  }

  width() {
    return Math.max(200, Math.floor(this.box.clientWidth || this.container.clientWidth || 600));
  }

  options() {
    const log = this.log;
    return {
      width: this.width(),
      height: this.height,
      scales: {
        x: { time: false },
        // log: a little around the data, not whole decades (uPlot's default)
        y: log ? {
          distr: 3, log: 10,
          range: (_u, min, max) => (min === null || max === null || !(min > 0)
            ? [0.1, 10] : [niceLog(min, false), niceLog(max, true)]),
        } : {},
      },
      axes: [
        { label: "iteration", size: 40 },
        {
          label: this.yLabel,
          size: 64,
          splits: log ? logSplits : undefined,
          // uPlot thins log labels on its own; logSplits already chose few enough
          filter: log ? (_u, splits) => splits : undefined,
          values: (_u, splits) => splits.map(tick),
        },
      ],
      series: [
        { label: "iteration", value: (_u, v) => (v === null ? "–" : String(v)) },
        ...this.series.map((s) => ({
          label: s.label,
          stroke: s.stroke,
          width: 1.5,
          spanGaps: true,
          points: { show: !!s.points, size: 4, fill: s.stroke },
          value: (_u, v) => (v === null ? "–" : num(v, 5)),
        })),
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
    };
  }

  setData(data) {
    const cleaned = this.log ? [data[0], ...data.slice(1).map(positive)] : data;
    this.data = cleaned;
    const n = cleaned[0].length;
    this.container.dataset.points = String(n);
    this.container.dataset.first = n ? String(cleaned[0][0]) : "";
    this.container.dataset.last = n ? String(cleaned[0][n - 1]) : "";
    this.empty.hidden = n > 0;
    if (!n) {
      this.container.dataset.ready = "1";
      return;
    }
    if (!this.plot) this.plot = new window.uPlot(this.options(), cleaned, this.box);
    else this.plot.setData(cleaned);
    this.container.dataset.ready = "1";
  }

  resize() {
    if (this.plot) {
      const w = this.width();
      if (w !== this.plot.width) this.plot.setSize({ width: w, height: this.height });
    }
  }

  destroy() {
    this.resizer.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

/** Points to ask the API for: about one per pixel for every field's minimum and maximum. */
export function maxPointsFor(widthPx, nFields) {
  return Math.max(200, Math.min(20000, Math.round(widthPx * Math.max(1, nFields))));
}
