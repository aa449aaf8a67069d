// One study: the aggregate table (the paper's Table 2), every member's upper-loss curve
// overlaid and coloured by its swept setting, and a scatter of a final metric against time
// or memory per setting: the trade-off at a glance. Polled while members run.
import { ApiError, forget, getJSON, query, request } from "./api.js";
import { TraceChart, maxPointsFor, PALETTE } from "./chart.js";
import { h, clear, text, toast } from "./dom.js";
import * as fmt from "./fmt.js";
import { Poller } from "./poll.js";
import { renderSearch } from "./search.js";
import { Status, TERMINAL } from "./status.js";

const COST = { s_per_iteration: "s / hyper-iteration", peak_bytes: "peak memory (MiB)" };
const MIB = 1024 * 1024;
let ctx = null;

// a scatter's axes: 8% around the points, so none sits on the frame; ticks in 4 digits
function padded(_u, min, max) {
  if (min === null || max === null) return [0, 1];
  const pad = (max - min) * 0.08 || Math.abs(max) * 0.08 || 1;
  return [min - pad, max + pad];
}

function ticks(_u, splits) {
  return splits.map((v) => fmt.num(v, 3));
}

function setting(values, groupBy) {
  return groupBy.map((p) => `${p.split(".").pop()}=${values[p] === null ? "–" : values[p]}`)
    .join(" · ") || "all";
}

function groupKey(values, groupBy) {
  return JSON.stringify(groupBy.map((p) => values[p]));
}

function metricsOf(study) {
  const names = new Set();
  for (const r of study.table || []) for (const k of Object.keys(r.stats)) names.add(k);
  const list = [...names].filter((k) => !(k in COST)).sort();
  const i = list.indexOf("final_outer_loss");
  if (i > 0) list.unshift(...list.splice(i, 1));
  return list;
}

function cell(stat, scale = 1) {
  if (!stat || stat.mean === null) return h("td", { class: "num" }, "–");
  const mean = fmt.num(stat.mean * scale, 4);
  const label = stat.std === null ? mean : `${mean} ± ${fmt.num(stat.std * scale, 2)}`;
  return h("td", { class: "num", dataset: { mean: String(stat.mean), n: String(stat.n) } }, label);
}

function renderTable(study) {
  const metrics = metricsOf(study);
  const head = [...study.group_by.map((p) => p.split(".").pop()), "done", ...metrics,
    ...Object.values(COST)];
  const rows = (study.table || []).map((r, i) => h("tr", { dataset: { key: groupKey(r.values, study.group_by) } },
    study.group_by.map((p, j) => h("td", { class: j === 0 ? "setting" : "" },
      j === 0 ? h("span", { class: `swatch swatch-${i % PALETTE.length}` }) : null,
      r.values[p] === null ? "–" : String(r.values[p]))),
    h("td", { class: "num" }, `${r.succeeded}/${r.members}`),
    metrics.map((m) => cell(r.stats[m])),
    cell(r.stats.s_per_iteration),
    cell(r.stats.peak_bytes, 1 / MIB)));
  ctx.view.querySelector("#study-table").replaceChildren(
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))), h("tbody", {}, rows));
  const sel = ctx.view.querySelector("#scatter-metric");
  if (sel.options.length !== metrics.length) {
    const keep = sel.value;
    sel.replaceChildren(...metrics.map((m) => h("option", { value: m }, m)));
    sel.value = metrics.includes(keep) ? keep : metrics[0] || "";
  }
}

function renderHeader(study) {
  const v = ctx.view;
  v.dataset.status = study.status;
  text(v.querySelector(".study-name"), study.name);
  const badge = v.querySelector(".study-status");
  badge.className = `badge study-status status-${study.status}`;
  text(badge, study.status);
  const p = study.progress;
  const bar = v.querySelector(".job-progress progress");
  bar.max = p.members;
  bar.value = p.finished;
  const counts = Object.entries(p.by_status).filter(([, n]) => n).map(([s, n]) => `${n} ${s}`);
  text(v.querySelector(".job-progress .label"), `${p.finished} / ${p.members} members ended (${counts.join(", ")})`);
  v.querySelector("#cancel-study").disabled = TERMINAL.has(study.status);
  const members = study.members.map((m) => h("tr", { dataset: { id: m.job_id } },
    h("td", {}, h("span", { class: `badge status-${m.status}` }, m.status)),
    h("td", { class: "name" }, h("a", { href: `#/jobs/${m.job_id}` },
      study.search ? `#${m.position} ` : "", setting(m.values, Object.keys(m.values)))),
    h("td", { class: "num" }, `${m.progress.iteration}/${m.progress.iterations}`)));
  v.querySelector("#study-members").replaceChildren(h("tbody", {}, members));
  const skipped = v.querySelector(".skipped");
  skipped.hidden = !study.skipped.length;
  skipped.replaceChildren(h("h3", {}, "Skipped combinations"),
    h("ul", {}, study.skipped.map((s) => h("li", { class: "small" }, `${JSON.stringify(s.values)}: ${s.reason}`))));
}

function groups(study) {
  const keys = (study.table || []).map((r) => groupKey(r.values, study.group_by));
  return (values) => Math.max(0, keys.indexOf(groupKey(values, study.group_by)));
}

function drawCurves(me) {
  const study = me.study;
  const idx = groups(study);
  const have = study.members.filter((m) => me.traces.has(m.job_id)
    && me.traces.get(m.job_id).iteration.length);
  const sig = have.map((m) => m.job_id).join(",");
  if (!me.curves || me.curvesSig !== sig) {
    if (me.curves) me.curves.destroy();
    me.curves = new TraceChart(me.view.querySelector("#chart-curves"), {
      title: "Upper loss of every member (log scale), coloured by setting", log: true, height: 320,
      series: have.map((m) => ({ label: setting(m.values, Object.keys(m.values)),
        stroke: PALETTE[idx(m.values) % PALETTE.length] })),
    });
    me.curvesSig = sig;
  }
  const tables = have.map((m) => [me.traces.get(m.job_id).iteration, me.traces.get(m.job_id).outer_loss]);
  me.curves.setData(tables.length ? (tables.length === 1 ? tables[0] : window.uPlot.join(tables)) : [[]]);
  me.curves.container.dataset.series = String(tables.length);
}

function drawScatter(me) {
  const study = me.study;
  const metric = me.view.querySelector("#scatter-metric").value;
  const xKey = me.view.querySelector("#scatter-x").value;
  const box = me.view.querySelector("#chart-scatter .chart-box");
  const scale = xKey === "peak_bytes" ? 1 / MIB : 1;
  const idx = groups(study);
  const per = (study.table || []).map(() => []);
  let n = 0;
  for (const m of study.members) {
    const s = m.summary || {};
    const y = metric === "final_outer_loss" ? s.final_outer_loss : (s.metrics || {})[metric];
    const x = s[xKey];
    if (m.status !== Status.SUCCEEDED || typeof x !== "number" || typeof y !== "number") continue;
    per[idx(m.values)].push([x * scale, y]);
    n += 1;
  }
  const tables = per.map((pts) => { pts.sort((a, b) => a[0] - b[0]); return [pts.map((p) => p[0]), pts.map((p) => p[1])]; });
  const data = tables.length > 1 ? window.uPlot.join(tables) : (tables[0] || [[], []]);
  const container = me.view.querySelector("#chart-scatter");
  container.dataset.points = String(n);
  if (me.scatter) me.scatter.destroy();
  me.scatter = null;
  if (!n) return;
  me.scatter = new window.uPlot({
    width: Math.max(300, box.clientWidth || 600), height: 300,
    scales: { x: { time: false, range: padded }, y: { range: padded } },
    axes: [{ label: COST[xKey], size: 40, values: ticks },
      { label: metric, size: 64, values: ticks }],
    series: [{ label: COST[xKey] }, ...(study.table || []).map((r, i) => ({
      label: setting(r.values, study.group_by), stroke: PALETTE[i % PALETTE.length],
      paths: () => null, points: { show: true, size: 9, fill: PALETTE[i % PALETTE.length] },
      value: (_u, v) => (v === null ? "–" : fmt.num(v, 5)),
    }))],
    legend: { live: true },
  }, data, box);
}

async function pollTraces(me) {
  let changed = false;
  for (const m of me.study.members) {
    if (me.final.has(m.job_id)) continue;
    const url = `/v1/jobs/${m.job_id}/trace${query({ fields: "outer_loss", max_points: me.maxPoints })}`;
    const r = await request(url, { slot: `study:${m.job_id}` });
    if (ctx !== me) return false;
    if (r.changed || !me.traces.has(m.job_id)) { me.traces.set(m.job_id, r.data); changed = true; }
    if (TERMINAL.has(m.status)) me.final.add(m.job_id);
  }
  return changed;
}

async function tick(me) {
  const study = await getJSON(`/v1/studies/${me.id}`);
  if (ctx !== me) return { done: true };
  const sig = JSON.stringify([study.status, study.members.map((m) => [m.status, m.progress.iteration])]);
  const changed = sig !== me.sig;
  me.sig = sig;
  me.study = study;
  renderHeader(study);
  if (changed || !me.drawn) {
    renderTable(study);
    drawScatter(me);
    if (me.history) me.history.destroy();
    me.history = renderSearch(me.view.querySelector("#study-search"), study);
  }
  const traces = await pollTraces(me);
  if (ctx !== me) return { done: true };
  if (traces || !me.drawn) drawCurves(me);
  if (!me.drawn) performance.mark("bilevel:study-ready");
  me.drawn = true;
  me.view.dataset.ready = "1";
  return { changed: changed || traces, done: TERMINAL.has(study.status) && me.final.size === study.members.length };
}

async function cancel(btn) {
  btn.disabled = true;
  try {
    await getJSON(`/v1/studies/${ctx.id}/cancel`, { method: "POST" });
    toast("cancel requested for every member still queued or running");
  } catch (err) {
    toast(err.message, "error");
  }
  if (ctx) ctx.poller.poke();
}

export function mount(section, { id }) {
  clear(section).append(
    h("div", { class: "toolbar" },
      h("a", { href: "#/studies", class: "back" }, "‹ Studies"),
      h("h1", { class: "study-name job-name" }, ""),
      h("span", { class: "badge study-status" }, ""),
      h("span", { class: "spacer" }),
      h("button", { id: "cancel-study", type: "button", class: "danger", disabled: true,
        onclick: (e) => cancel(e.currentTarget) }, "Cancel study")),
    h("div", { class: "job-progress" }, h("progress", { max: "1", value: "0" }), h("span", { class: "label" }, "")),
    h("div", { class: "card chart", id: "study-search", hidden: true },
      h("h3", {}, "Search: objective by trial, best so far"), h("p", { class: "small search-summary" }),
      h("div", { class: "search-best" }), h("div", { class: "search-importance", hidden: true }),
      h("div", { class: "chart-box" })),
    h("div", { class: "card table-card" }, h("h3", {}, "Final results, mean ± std over seeds"),
      h("table", { class: "jobs", id: "study-table" })),
    h("div", { class: "grid" },
      h("div", { class: "charts" },
        h("div", { id: "chart-curves" }),
        h("div", { id: "chart-scatter", class: "chart" },
          h("h3", {}, "Trade-off: final metric per member"),
          h("div", { class: "toolbar" },
            h("label", { class: "inline" }, "Metric ", h("select", { id: "scatter-metric" })),
            h("label", { class: "inline" }, "against ", h("select", { id: "scatter-x" },
              Object.entries(COST).map(([k, v]) => h("option", { value: k }, v))))),
          h("div", { class: "chart-box" }))),
      h("aside", { class: "side" }, h("h3", {}, "Members"), h("table", { class: "history", id: "study-members" }),
        h("div", { class: "skipped", hidden: true }))));
  section.dataset.ready = "0";
  const me = { id, view: section, traces: new Map(), final: new Set(), drawn: false, sig: "" };
  ctx = me;
  me.maxPoints = maxPointsFor(section.querySelector("#chart-curves").clientWidth || 800, 1);
  for (const sel of section.querySelectorAll("#scatter-metric, #scatter-x")) {
    sel.addEventListener("change", () => { if (me.study) drawScatter(me); });
  }
  me.poller = new Poller(() => guarded(me), {
    min: 1000, max: 10000, onState: (s) => { section.dataset.polling = s; },
  }).start();
}

async function guarded(me) {
  try {
    return await tick(me);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404 && ctx === me) {
      me.view.replaceChildren(h("p", { class: "error" }, err.message), h("a", { href: "#/studies" }, "‹ back to the studies"));
      me.view.dataset.ready = "1";
      return { done: true };
    }
    throw err;
  }
}

export function unmount() {
  if (!ctx) return;
  ctx.poller.stop();
  if (ctx.curves) ctx.curves.destroy();
  if (ctx.scatter) ctx.scatter.destroy();
  if (ctx.history) ctx.history.destroy();
  for (const id of ctx.traces.keys()) forget(`study:${id}`);
  ctx = null;
}
