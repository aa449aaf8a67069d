// The team's webhooks and each one's deliveries (an admin key's view): status, attempts,
// the receiver's last answer or the error.
import { ApiError, getJSON } from "./api.js";
import { h, clear } from "./dom.js";
import * as fmt from "./fmt.js";
import { Poller } from "./poll.js";

let ctx = null;

function deliveries(rows) {
  if (!rows.length) return h("p", { class: "muted small" }, "no deliveries yet");
  return h("table", { class: "jobs deliveries" },
    h("thead", {}, h("tr", {}, ["Created", "Event", "Subject", "Status", "Attempts", "Answer"]
      .map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((d) => h("tr", { dataset: { status: d.status } },
      h("td", { class: "muted small" }, fmt.when(d.created_at)),
      h("td", {}, d.event_type),
      h("td", { class: "small" }, d.subject_id.slice(0, 8)),
      h("td", {}, h("span", { class: `badge delivery-${d.status}` }, d.status)),
      h("td", { class: "num" }, String(d.attempts)),
      h("td", { class: "small" }, d.last_error || (d.response_status ? String(d.response_status) : "–"))))));
}

async function tick(me) {
  let hooks;
  try {
    hooks = (await getJSON("/v1/webhooks")).data;
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      me.view.querySelector(".hooks").replaceChildren(h("p", { class: "muted" },
        "Webhooks are managed with an admin key (bilevel keys create --admin)."));
      me.view.dataset.ready = "1";
      return { done: true };
    }
    throw err;
  }
  const cards = [];
  for (const hook of hooks) {
    const rows = (await getJSON(`/v1/webhooks/${hook.id}/deliveries`)).data;
    cards.push(h("div", { class: "card hook", dataset: { id: hook.id } },
      h("h3", {}, hook.url), h("p", { class: "muted small" }, hook.description || ""), deliveries(rows)));
  }
  if (ctx !== me) return { done: true };
  me.view.querySelector(".hooks").replaceChildren(...(cards.length ? cards
    : [h("p", { class: "muted" }, "no webhooks: bilevel webhooks create URL")]));
  me.view.dataset.ready = "1";
  return { changed: true, done: false };
}

export function mount(section) {
  clear(section).append(h("div", { class: "toolbar" }, h("h1", {}, "Webhooks")), h("div", { class: "hooks" }));
  section.dataset.ready = "0";
  const me = { view: section };
  ctx = me;
  me.poller = new Poller(() => tick(me), { min: 3000, max: 30000 }).start();
}

export function unmount() {
  if (ctx) ctx.poller.stop();
  ctx = null;
}
