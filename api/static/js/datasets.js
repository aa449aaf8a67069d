// The team's data sets: their arrays, what they make, the jobs that name them, the storage.
import { getJSON } from "./api.js";
import { h, clear } from "./dom.js";
import * as fmt from "./fmt.js";
import { Poller } from "./poll.js";

let poller = null;
let view = null;
let lastBody = "";

function bytes(n) {
  for (const [unit, scale] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]]) {
    if (n >= scale) return `${(n / scale).toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}

function arrays(d) {
  return h("ul", { class: "arrays" }, d.arrays.map((a) =>
    h("li", { dataset: { array: a.name } },
      h("code", {}, a.name), ` ${a.dtype} [${a.shape.join(" × ")}]`)));
}

function jobs(d) {
  if (!d.jobs.length) return h("span", { class: "muted" }, "none yet");
  return h("ul", { class: "used-by" }, d.jobs.map((j) =>
    h("li", { dataset: { job: j.id } },
      h("span", { class: `badge status-${j.status}` }, j.status), " ",
      h("a", { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.name))));
}

function task(d) {
  return d.task === "classification" ? `classification, ${d.n_classes} classes` : d.task;
}

function row(d) {
  const rows = ["train", "val", "test"].map((s) => (s in d.rows ? d.rows[s] : "–")).join(" / ");
  return h("tr", { dataset: { id: d.id } },
    h("td", { class: "name" }, h("strong", {}, d.name),
      h("div", { class: "muted small mono" }, d.id)),
    h("td", { class: "task" }, task(d), h("div", { class: "muted small" },
      `${d.n_features} features; rows ${rows}`)),
    h("td", { class: "arrays-cell" }, arrays(d)),
    h("td", { class: "num size" }, bytes(d.size),
      h("div", { class: "muted small mono", title: d.sha256 }, d.sha256.slice(0, 12))),
    h("td", { class: "jobs-cell" }, jobs(d)),
    h("td", { class: "muted small created" }, fmt.when(d.created_at)),
  );
}

function render(body) {
  const used = body.bytes_used;
  const meter = view.querySelector("#storage");
  meter.max = Math.max(body.quota_bytes, 1);
  meter.value = used;
  view.querySelector("#storage-text").textContent =
    `${bytes(used)} of ${bytes(body.quota_bytes)} used`;
  const rows = body.data.map(row);
  if (!rows.length) {
    rows.push(h("tr", { class: "empty" }, h("td", { colspan: "6", class: "muted" },
      "no data sets yet: upload one with bilevel datasets upload FILE --name NAME")));
  }
  view.querySelector("tbody").replaceChildren(...rows);
  view.dataset.rows = String(body.data.length);
  if (view.dataset.ready !== "1") performance.mark("bilevel:datasets-ready");
  view.dataset.ready = "1";
}

async function load() {
  const body = await getJSON("/v1/datasets");
  const json = JSON.stringify(body);
  const changed = json !== lastBody;
  lastBody = json;
  if (changed) render(body);
  return { changed };
}

export function mount(section) {
  view = section;
  lastBody = "";
  view.dataset.ready = "0";
  clear(section).append(
    h("div", { class: "toolbar" },
      h("h1", {}, "Data sets"),
      h("label", { class: "inline storage" }, "Storage ",
        h("meter", { id: "storage", min: "0", value: "0" }),
        h("span", { id: "storage-text", class: "muted small" }, ""))),
    h("table", { class: "jobs", id: "datasets-table" },
      h("thead", {}, h("tr", {},
        ["Name", "Task", "Arrays", "Size", "Jobs", "Uploaded"].map((c) => h("th", {}, c)))),
      h("tbody", {})),
  );
  poller = new Poller(load, { min: 2000, max: 30000 }).start();
}

export function unmount() {
  if (poller) poller.stop();
  poller = null;
  view = null;
}
