// The team's studies: name, status, progress over members, grid; a link to each study.
import { getJSON, query } from "./api.js";
import { h, clear } from "./dom.js";
import * as fmt from "./fmt.js";
import { Poller } from "./poll.js";
import { TERMINAL } from "./status.js";

let ctx = null;

function row(s) {
  const p = s.progress;
  const grid = Object.entries(s.grid).map(([k, v]) => `${k} ∈ {${v.join(", ")}}`).join(" × ");
  return h("tr", { dataset: { id: s.id, status: s.status } },
    h("td", {}, h("span", { class: `badge status-${s.status}` }, s.status)),
    h("td", { class: "name" }, h("a", { href: `#/studies/${encodeURIComponent(s.id)}` }, s.name)),
    h("td", { class: "muted small" }, grid),
    h("td", { class: "progress" }, h("progress", { max: String(p.members), value: String(p.finished) }),
      h("span", { class: "muted small" }, ` ${p.finished}/${p.members}`)),
    h("td", { class: "muted small" }, fmt.when(s.created_at)));
}

async function tick(me) {
  const body = await getJSON(`/v1/studies${query({ limit: 100 })}`);
  if (ctx !== me) return { done: true };
  const rows = body.data.map(row);
  if (!rows.length) {
    rows.push(h("tr", { class: "empty" }, h("td", { colspan: "5", class: "muted" },
      "no studies yet: bilevel study submit FILE, or “Sweep this” on a job's page")));
  }
  me.view.querySelector("tbody").replaceChildren(...rows);
  me.view.dataset.rows = String(body.data.length);
  me.view.dataset.ready = "1";
  return { changed: true, done: body.data.every((s) => TERMINAL.has(s.status)) };
}

export function mount(section) {
  clear(section).append(
    h("div", { class: "toolbar" }, h("h1", {}, "Studies")),
    h("table", { class: "jobs", id: "studies-table" },
      h("thead", {}, h("tr", {}, ["Status", "Name", "Grid", "Members ended", "Created"]
        .map((c) => h("th", {}, c)))),
      h("tbody", {})));
  section.dataset.ready = "0";
  const me = { view: section };
  ctx = me;
  me.poller = new Poller(() => tick(me), { min: 2000, max: 15000 }).start();
}

export function unmount() {
  if (ctx) ctx.poller.stop();
  ctx = null;
}
