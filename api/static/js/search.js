// A search study's history: its first objective by trial, the best so far as a line, and
// its best member or Pareto front. Pruned members have no objective: they are drawn at
// their last outer loss, hollow and grey, so that what the pruner stopped stays visible.
import { h, text } from "./dom.js";
import * as fmt from "./fmt.js";
import { Status } from "./status.js";

const PRUNED_COLOUR = "#98a2b3";

// [trial numbers, objective, best so far, pruned members' last loss] for uPlot
export function history(study) {
  const obj = study.search.objectives[0];
  const sign = obj.direction === "maximize" ? -1 : 1;
  const members = [...study.members].sort((a, b) => a.position - b.position);
  const xs = [], ys = [], best = [], pruned = [];
  let top = null;
  for (const m of members) {
    const y = m.objectives ? m.objectives[0] : null;
    if (y !== null && (top === null || sign * y < sign * top)) top = y;
    const last = m.status === Status.PRUNED && m.summary
      ? (m.summary.final_outer_loss ?? m.summary.last_outer_loss ?? null) : null;
    if (y === null && last === null && top === null) continue;
    xs.push(m.position);
    ys.push(y);
    best.push(top);
    pruned.push(typeof last === "number" ? last : null);
  }
  return [xs, ys, best, pruned];
}

// Parameter importance (Optuna's PED-ANOVA, from the API): one row a path, a <progress>
// bar for its share (no inline style: the page's CSP forbids it)
function renderImportance(box, study) {
  const imp = study.importance;
  box.hidden = !imp;
  if (!imp) return;
  box.replaceChildren(
    h("h4", {}, `Parameter importance (${imp.objective}, ${imp.trials} complete trials)`),
    h("table", { class: "importance" }, Object.entries(imp.params).map(([path, share]) =>
      h("tr", { dataset: { path } }, h("td", { class: "mono" }, path),
        h("td", {}, h("progress", { max: "1", value: String(share) })),
        h("td", { class: "num" }, `${(100 * share).toFixed(1)}%`)))));
}

export function renderSearch(card, study) {
  card.hidden = !study.search;
  if (!study.search) return null;
  const names = study.search.objectives.map((o) => o.metric);
  const byPos = new Map(study.members.map((m) => [m.position, m]));
  const title = names.length > 1 ? "Pareto front" : "Best member";
  const rows = (study.best || []).map((p) => byPos.get(p)).filter(Boolean).map((m) =>
    h("li", { class: "small", dataset: { position: String(m.position) } },
      h("a", { href: `#/jobs/${m.job_id}` }, `#${m.position}`), " ",
      names.map((n, i) => `${n} = ${fmt.num(m.objectives[i], 4)}`).join(", "), " · ",
      Object.entries(m.values).map(([k, v]) => `${k.split(".").pop()}=${v}`).join(" ")));
  const pruned = study.members.filter((m) => m.status === Status.PRUNED).length;
  text(card.querySelector(".search-summary"),
    `${study.search.sampler} sampler · ${study.members.length}${study.search.n_trials ? ` / ${study.search.n_trials}` : ""} trials · ${pruned} pruned${study.warm_start ? ` · warm start: ${study.warm_start.trials} earlier` : ""}${study.search_done ? " · done" : ""}`);
  renderImportance(card.querySelector(".search-importance"), study);
  card.querySelector(".search-best").replaceChildren(h("h4", {}, title),
    rows.length ? h("ul", {}, rows) : h("p", { class: "small" }, "no member has finished yet"));
  const data = history(study);
  const box = card.querySelector(".chart-box");
  box.dataset.points = String(data[0].length);
  if (!data[0].length) return null;
  return new window.uPlot({
    width: Math.max(300, box.clientWidth || 600), height: 260,
    scales: { x: { time: false } },
    // trials are whole numbers: ticks at 1, 2, 5, ... apart, never between two trials
    axes: [{ label: "trial", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500], values: (_u, s) => s.map(String) }, { label: names[0], size: 64, values: (_u, s) => s.map((v) => fmt.num(v, 3)) }],
    series: [{ label: "trial" },
      { label: names[0], stroke: "#1570ef", paths: () => null, points: { show: true, size: 8, fill: "#1570ef" } },
      { label: "best so far", stroke: "#12b76a", width: 2 },
      { label: "pruned (last loss)", stroke: PRUNED_COLOUR, paths: () => null,
        points: { show: true, size: 8, fill: "#fff", stroke: PRUNED_COLOUR } }],
  }, data, box);
}
