// Compare: several jobs' traces of one field laid over each other (the paper's Figures 4-7).
import { forget, getJSON, query, request, TRACE_FIELDS } from "./api.js";
import { TraceChart, maxPointsFor, PALETTE } from "./chart.js";
import { h, clear, text, toast } from "./dom.js";
import * as fmt from "./fmt.js";
import { Poller } from "./poll.js";
import { TERMINAL } from "./status.js";

const LABELS = {
  outer_loss: "upper loss", grad_norm: "hypergradient norm", lr: "inner learning rate",
  time_s: "time (s)", exact_norm: "exact hypergradient norm", cosine: "cosine to exact",
  rel_error: "relative error", descent_ratio: "descent ratio",
};
const LOG_DEFAULT = new Set(["outer_loss", "grad_norm", "exact_norm", "rel_error"]);

let ctx = null;

function writeHash() {
  const q = query({ ids: ctx.ids.join(","), field: ctx.field, log: ctx.log ? "1" : "0" });
  history.replaceState(null, "", `#/compare${q}`);
}

function label(job) {
  return `${job.name} · ${fmt.method(job.spec)}`;
}

async function fetchJobs(me) {
  for (const id of me.ids) {
    if (!me.jobs.has(id)) me.jobs.set(id, await getJSON(`/v1/jobs/${encodeURIComponent(id)}`));
  }
}

async function tick(gen) {
  const me = ctx;
  const stale = () => ctx !== me || me.gen !== gen;
  if (!me.ids.length) {
    me.chart.setData([[]]);
    me.view.dataset.ready = "1";
    return { done: true };
  }
  await fetchJobs(me);
  let changed = false;
  const tables = [];
  for (const id of me.ids) {
    const job = me.jobs.get(id);
    if (!TERMINAL.has(job.status)) {
      const fresh = await getJSON(`/v1/jobs/${id}`);
      me.jobs.set(id, fresh);
    }
    const r = await request(`/v1/jobs/${id}/trace${query({
      fields: me.field, max_points: me.maxPoints,
    })}`, { slot: `cmp:${id}` });
    if (r.changed) changed = true;
    tables.push([r.data.iteration, r.data[me.field]]);
  }
  if (stale()) return { done: true };
  if (changed || !me.drawn) {
    const data = tables.length === 1 ? tables[0] : window.uPlot.join(tables);
    me.chart.setData(data);
    me.chart.container.dataset.series = String(tables.length);
    me.drawn = true;
  }
  me.view.dataset.ready = "1";
  const done = me.ids.every((id) => TERMINAL.has(me.jobs.get(id).status));
  return { changed, done };
}

async function rebuild() {
  const me = ctx;
  const gen = (me.gen = (me.gen || 0) + 1);
  if (me.poller) me.poller.stop();
  if (me.chart) me.chart.destroy();
  me.chart = null;
  me.poller = null;
  for (const id of me.jobs.keys()) forget(`cmp:${id}`);
  me.drawn = false;
  me.view.dataset.ready = "0";
  writeHash();
  try {
    await fetchJobs(me); // the legend names the jobs
  } catch (err) {
    toast(err.message, "error");
    me.ids = me.ids.filter((id) => me.jobs.has(id));
  }
  if (ctx !== me || me.gen !== gen) return;
  const series = me.ids.map((id, i) => ({
    label: label(me.jobs.get(id)), stroke: PALETTE[i % PALETTE.length],
  }));
  me.chart = new TraceChart(me.view.querySelector("#chart-compare"), {
    title: `${LABELS[me.field] || me.field}${me.log ? " (log scale)" : ""}`,
    series, log: me.log, height: 360,
  });
  me.maxPoints = maxPointsFor(me.chart.width(), 1);
  me.poller = new Poller(() => tick(gen), {
    min: 1500, max: 15000,
    onState: (s) => { me.view.dataset.polling = s; },
  }).start();
}

async function loadPicker(me) {
  const body = await getJSON(`/v1/jobs${query({ limit: 100 })}`);
  if (ctx !== me) return;
  for (const j of body.data) if (!me.jobs.has(j.id)) me.jobs.set(j.id, j);
  const list = me.view.querySelector(".picker ul");
  list.replaceChildren(...body.data.map((j) => h("li", {},
    h("label", {},
      h("input", {
        type: "checkbox", value: j.id, checked: me.ids.includes(j.id),
        onchange: (e) => {
          me.ids = e.target.checked ? [...me.ids, j.id] : me.ids.filter((x) => x !== j.id);
          rebuild();
        },
      }),
      h("span", { class: `badge status-${j.status}` }, j.status), " ",
      h("span", { class: "pick-name" }, j.name),
      h("span", { class: "muted small" }, ` ${fmt.method(j.spec)} · ${j.id.slice(0, 8)}`)))));
}

export function mount(section, params) {
  const ids = (params.get("ids") || "").split(",").filter((x) => /^[0-9a-f-]{36}$/i.test(x));
  const field = TRACE_FIELDS.includes(params.get("field")) ? params.get("field") : "outer_loss";
  const log = params.has("log") ? params.get("log") === "1" : LOG_DEFAULT.has(field);
  const fieldSel = h("select", { id: "compare-field", "aria-label": "trace field" },
    TRACE_FIELDS.map((f) => h("option", { value: f }, LABELS[f] || f)));
  fieldSel.value = field;
  const logBox = h("input", { id: "compare-log", type: "checkbox", checked: log });
  clear(section).append(
    h("div", { class: "toolbar" },
      h("h1", {}, "Compare"),
      h("label", { class: "inline" }, "Trace ", fieldSel),
      h("label", { class: "inline" }, logBox, " log scale")),
    h("div", { class: "grid compare" },
      h("div", { id: "chart-compare" }),
      h("aside", { class: "side picker" }, h("h3", {}, "Jobs"), h("ul", {}))),
  );
  ctx = { view: section, ids, field, log, jobs: new Map(), chart: null, poller: null };
  fieldSel.addEventListener("change", () => {
    ctx.field = fieldSel.value;
    ctx.log = LOG_DEFAULT.has(ctx.field);
    logBox.checked = ctx.log;
    rebuild();
  });
  logBox.addEventListener("change", () => { ctx.log = logBox.checked; rebuild(); });
  const me = ctx;
  loadPicker(me).catch((err) => toast(err.message, "error"));
  rebuild();
  text(section.querySelector(".picker h3"), "Jobs (newest 100)");
}

export function unmount() {
  if (!ctx) return;
  if (ctx.poller) ctx.poller.stop();
  if (ctx.chart) ctx.chart.destroy();
  for (const id of ctx.jobs.keys()) forget(`cmp:${id}`);
  ctx = null;
}
