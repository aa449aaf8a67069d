// The job list: status filter, cursor paging, self-refreshing rows, selection for compare.
import { getJSON, query } from "./api.js";
import { h, clear, text } from "./dom.js";
import * as fmt from "./fmt.js";
import { Poller } from "./poll.js";
import { STATUSES, TERMINAL } from "./status.js";

const PAGE = 25;
const STATUS_SET = new Set(STATUSES);
export const selected = new Set(); // job ids picked for compare, kept across pages

let state = { status: "", limit: PAGE, cursors: [null], page: 0 };
let poller = null;
let view = null;
let lastBody = "";

function statusBadge(status, cancelRequested) {
  const label = cancelRequested && !TERMINAL.has(status) ? `${status} (cancelling)` : status;
  return h("span", { class: `badge status-${status}` }, label);
}

function progressCell(job) {
  const p = job.progress;
  const bar = h("progress", { max: String(p.iterations), value: String(p.iteration) });
  return h("td", { class: "progress" }, bar,
    h("span", { class: "muted small" }, ` ${p.iteration}/${p.iterations}`));
}

function row(job, onToggle) {
  const best = job.summary ? job.summary.best_outer_loss : null;
  const warnings = (job.summary && job.summary.warnings) || [];
  const flag = warnings.length ? h("span", { class: "flag-diverged", title:
    warnings.map((w) => w.message).join("\n") }, " ⚠ diverged") : "";
  const box = h("input", {
    type: "checkbox", class: "pick", "aria-label": "select for compare",
    checked: selected.has(job.id), onchange: (e) => onToggle(job.id, e.target.checked),
  });
  return h("tr", { dataset: { id: job.id, status: job.status } },
    h("td", {}, box),
    h("td", { class: "status" }, statusBadge(job.status, job.cancel_requested), flag),
    h("td", { class: "name" }, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.name)),
    h("td", { class: "problem" }, fmt.problem(job.spec)),
    h("td", { class: "method" }, fmt.method(job.spec)),
    progressCell(job),
    h("td", { class: "num best" }, fmt.num(best)),
    h("td", { class: "num elapsed" }, fmt.duration(fmt.elapsed(job))),
    h("td", { class: "muted small created" }, fmt.when(job.created_at)),
  );
}

function render(body) {
  const tbody = view.querySelector("tbody");
  const rows = body.data.map((j) => row(j, toggle));
  if (!rows.length) {
    rows.push(h("tr", { class: "empty" }, h("td", { colspan: "9", class: "muted" },
      state.status ? `no ${state.status} jobs` : "no jobs yet: submit one with bilevel submit")));
  }
  tbody.replaceChildren(...rows);
  view.querySelector("#page-prev").disabled = state.page === 0;
  view.querySelector("#page-next").disabled = !body.next_cursor;
  text(view.querySelector("#page-no"), `page ${state.page + 1}`);
  if (body.next_cursor) state.cursors[state.page + 1] = body.next_cursor;
  view.dataset.rows = String(body.data.length);
  if (view.dataset.ready !== "1") performance.mark("bilevel:jobs-ready");
  view.dataset.ready = "1";
}

function toggle(id, on) {
  if (on) selected.add(id);
  else selected.delete(id);
  updateCompareButton();
}

function updateCompareButton() {
  const btn = view.querySelector("#compare-selected");
  btn.disabled = selected.size < 1;
  text(btn, `Compare selected (${selected.size})`);
}

async function load() {
  const body = await getJSON(`/v1/jobs${query({
    limit: state.limit, status: state.status, cursor: state.cursors[state.page],
  })}`);
  const json = JSON.stringify(body);
  // elapsed time of running jobs moves on even when the rows do not
  const live = body.data.some((j) => !TERMINAL.has(j.status));
  const changed = json !== lastBody;
  lastBody = json;
  if (changed || live) render(body);
  return { changed };
}

function writeHash() {
  const q = query({ status: state.status, limit: state.limit === PAGE ? "" : state.limit });
  history.replaceState(null, "", `#/jobs${q}`);
}

function restart() {
  if (poller) poller.stop();
  writeHash();
  lastBody = "";
  view.dataset.ready = "0";
  poller = new Poller(load, {
    min: 1000, max: 15000,
    onState: (s, wait) => {
      view.dataset.polling = s;
      view.dataset.pollDelay = wait === null ? "" : String(wait);
    },
  }).start();
}

export function mount(section, params) {
  view = section;
  // #/jobs?status=running&limit=10: the filter and the page size live in the address
  const status = STATUS_SET.has(params.get("status")) ? params.get("status") : "";
  const limit = Math.min(200, Math.max(1, Number(params.get("limit")) || PAGE));
  if (status !== state.status || limit !== state.limit) {
    state = { status, limit, cursors: [null], page: 0 };
  }
  const filter = h("select", { id: "status-filter", "aria-label": "status" },
    h("option", { value: "" }, "all statuses"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  filter.value = state.status;
  filter.addEventListener("change", () => {
    state = { status: filter.value, limit: state.limit, cursors: [null], page: 0 };
    restart();
  });
  const compareBtn = h("button", {
    id: "compare-selected", type: "button",
    onclick: () => { location.hash = `#/compare${query({ ids: [...selected].join(",") })}`; },
  });
  clear(section).append(
    h("div", { class: "toolbar" },
      h("h1", {}, "Jobs"),
      h("label", { class: "inline" }, "Status ", filter),
      compareBtn,
    ),
    h("table", { class: "jobs", id: "jobs-table" },
      h("thead", {}, h("tr", {},
        ["", "Status", "Name", "Problem", "Method", "Progress", "Best upper loss", "Elapsed",
          "Created"].map((c) => h("th", {}, c)))),
      h("tbody", {})),
    h("div", { class: "pager" },
      h("button", { id: "page-prev", type: "button", class: "ghost", onclick: () => {
        if (state.page > 0) { state.page -= 1; restart(); }
      } }, "‹ Newer"),
      h("span", { id: "page-no", class: "muted" }, ""),
      h("button", { id: "page-next", type: "button", class: "ghost", onclick: () => {
        if (state.cursors[state.page + 1]) { state.page += 1; restart(); }
      } }, "Older ›")),
  );
  updateCompareButton();
  restart();
}

export function unmount() {
  if (poller) poller.stop();
  poller = null;
  view = null;
}
