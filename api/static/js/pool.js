// The pool page: who uses the shared workers (each team's share against its fair share),
// the live workers, and where the team's queued jobs stand. Polls GET /v1/pool.
import { getJSON } from "./api.js";
import { h, clear, text } from "./dom.js";
import * as fmt from "./fmt.js";
import { Poller } from "./poll.js";

const SVG = "http://www.w3.org/2000/svg";
const BAR_W = 160;
let poller = null;
let view = null;
let lastBody = "";

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

// The team's share of the kind's running jobs (filled) against the share its weight
// entitles it to (the tick): a team left of its tick is below its share and goes first.
function shareBar(share, fair) {
  const s = svg("svg", { width: BAR_W, height: 14, class: "share-bar", role: "img",
    "aria-label": `share ${Math.round(share * 100)}%, fair share ${Math.round(fair * 100)}%` });
  s.append(svg("rect", { x: 0, y: 2, width: BAR_W, height: 10, class: "bar-bg" }));
  s.append(svg("rect", { x: 0, y: 2, width: Math.round(share * BAR_W), height: 10,
    class: "bar-share" }));
  const x = Math.min(BAR_W - 1, Math.round(fair * BAR_W));
  s.append(svg("line", { x1: x, x2: x, y1: 0, y2: 14, class: "bar-fair" }));
  return s;
}

function teamRows(pool) {
  const rows = [];
  for (const t of pool.teams) {
    for (const [kind, k] of Object.entries(t.kinds)) {
      rows.push(h("tr", { dataset: { team: t.name, kind } },
        h("td", { class: "name" }, t.name),
        h("td", {}, kind),
        h("td", { class: "num weight" }, fmt.num(t.weight)),
        h("td", { class: "num running" }, String(k.running)),
        h("td", { class: "num queued" }, String(k.queued)),
        h("td", { class: "num" }, String(k.limit)),
        h("td", { class: "share" }, shareBar(k.share, k.fair_share),
          h("span", { class: "muted small" },
            ` ${Math.round(k.share * 100)}% of ${Math.round(k.fair_share * 100)}%`)),
      ));
    }
  }
  if (!rows.length) {
    rows.push(h("tr", { class: "empty" },
      h("td", { colspan: "7", class: "muted" }, "no queued or running jobs")));
  }
  return rows;
}

function workerRows(pool) {
  const rows = pool.workers.map((w) => h("tr", { dataset: { worker: w.name } },
    h("td", { class: "name" }, w.name),
    h("td", {}, w.queue),
    h("td", { class: "state" }, w.busy ? "busy" : "idle"),
    h("td", {}, w.job ? h("a", { href: `#/jobs/${encodeURIComponent(w.job)}` }, "your job") : "–"),
    h("td", { class: "muted small" }, fmt.when(w.last_seen)),
  ));
  if (!rows.length) {
    rows.push(h("tr", { class: "empty" },
      h("td", { colspan: "5", class: "muted" }, "no live worker")));
  }
  return rows;
}

function queuedRows(pool) {
  const rows = pool.queued.map((q) => h("tr", { dataset: { id: q.id } },
    h("td", { class: "num position" }, String(q.position)),
    h("td", { class: "name" }, h("a", { href: `#/jobs/${encodeURIComponent(q.id)}` }, q.name)),
    h("td", {}, q.queue),
    h("td", { class: "priority" }, q.priority),
    h("td", { class: "num start" },
      q.estimated_start_s === null ? "no worker" : `in ${fmt.duration(q.estimated_start_s)}`),
  ));
  if (!rows.length) {
    rows.push(h("tr", { class: "empty" },
      h("td", { colspan: "5", class: "muted" }, "none of your jobs is queued")));
  }
  return rows;
}

function render(pool) {
  const busy = pool.workers.filter((w) => w.busy).length;
  const waits = Object.entries(pool.oldest_wait_s)
    .map(([k, v]) => `${k} ${v === null ? "–" : fmt.duration(v)}`).join(", ");
  text(view.querySelector("#pool-summary"),
    `${pool.workers.length} live workers, ${busy} busy · oldest wait: ${waits} · preemption `
    + (pool.preemption ? "on" : "off"));
  view.querySelector("#pool-teams tbody").replaceChildren(...teamRows(pool));
  view.querySelector("#pool-workers tbody").replaceChildren(...workerRows(pool));
  view.querySelector("#pool-queued tbody").replaceChildren(...queuedRows(pool));
  view.dataset.ready = "1";
}

async function load() {
  const body = await getJSON("/v1/pool");
  const json = JSON.stringify(body);
  const changed = json !== lastBody;
  lastBody = json;
  if (changed) render(body);
  return { changed };
}

function table(id, heads) {
  return h("table", { class: "jobs", id },
    h("thead", {}, h("tr", {}, heads.map((c) => h("th", {}, c)))), h("tbody", {}));
}

export function mount(section) {
  view = section;
  lastBody = "";
  view.dataset.ready = "0";
  clear(section).append(
    h("div", { class: "toolbar" }, h("h1", {}, "Pool"),
      h("span", { id: "pool-summary", class: "muted" }, "")),
    h("h3", {}, "Teams"),
    table("pool-teams", ["Team", "Kind", "Weight", "Running", "Queued", "Limit",
      "Share of running (tick: fair share)"]),
    h("h3", {}, "Your queued jobs, in the order the pool will run them"),
    table("pool-queued", ["Position", "Name", "Kind", "Priority", "Estimated start"]),
    h("h3", {}, "Workers"),
    table("pool-workers", ["Worker", "Kind", "State", "Job", "Last seen"]),
  );
  poller = new Poller(load, {
    min: 2000, max: 15000,
    onState: (s) => { view.dataset.polling = s; },
  }).start();
}

export function unmount() {
  if (poller) poller.stop();
  poller = null;
  view = null;
}
