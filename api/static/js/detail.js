// One job: spec, state history, progress and ETA, charts, metrics, cancel, downloads.
// The job and its trace are polled with If-None-Match (304 when unchanged), the trace with
// after= (only new points); polling backs off while nothing changes and stops once the job
// has finished.
import { ApiError, forget, getJSON, query, request } from "./api.js";
import { TraceChart, hasValues, maxPointsFor, PALETTE } from "./chart.js";
import { h, clear, text, toast } from "./dom.js";
import * as fmt from "./fmt.js";
import { Poller } from "./poll.js";
import { Status, TERMINAL } from "./status.js";

const FIELDS = ["outer_loss", "grad_norm", "exact_norm", "cosine", "rel_error"];

let ctx = null;

function emptyCols() {
  return Object.fromEntries(["iteration", ...FIELDS].map((f) => [f, []]));
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function downloadCsv(id) {
  // the whole trace when it has at most 100,000 points (the API's cap), else downsampled
  const r = await request(`/v1/jobs/${id}/trace${query({ max_points: 100000 })}`);
  const cols = r.data;
  const names = Object.keys(cols);
  const lines = [names.join(",")];
  for (let i = 0; i < cols.iteration.length; i++) {
    lines.push(names.map((n) => (cols[n][i] === null ? "" : String(cols[n][i]))).join(","));
  }
  download(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }), `${id}-trace.csv`);
}

async function downloadHparams(id) {
  const r = await request(`/v1/jobs/${id}/hparams`, { raw: true });
  download(await r.response.blob(), `${id}-hparams.npz`);
}

function history(job) {
  // the state history: the job's events when the API sends them, else its timestamps
  const events = job.events || [];
  const rows = events.length
    ? events.map((e) => [fmt.when(e.at), `${e.from_status || "–"} → ${e.to_status}`,
      e.attempt ? `attempt ${e.attempt}` : ""])
    : [
      [fmt.when(job.created_at), `submitted → ${Status.QUEUED}`, ""],
      job.started_at ? [fmt.when(job.started_at), `${Status.QUEUED} → ${Status.RUNNING}`,
        `attempt ${job.attempts}`] : null,
      job.finished_at ? [fmt.when(job.finished_at),
        `${job.started_at ? Status.RUNNING : Status.QUEUED} → ${job.status}`, ""] : null,
    ].filter(Boolean);
  return h("table", { class: "history" },
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));
}

function renderJob(job) {
  const v = ctx.view;
  ctx.job = job;
  v.dataset.status = job.status;
  text(v.querySelector(".job-name"), job.name);
  const badge = v.querySelector(".job-status");
  badge.className = `badge job-status status-${job.status}`;
  text(badge, job.cancel_requested && !TERMINAL.has(job.status)
    ? `${job.status} (cancelling)` : job.status);
  const p = job.progress;
  const bar = v.querySelector(".job-progress progress");
  bar.max = p.iterations;
  bar.value = p.iteration;
  const eta = job.status === Status.RUNNING && p.eta_s !== null ? `, ETA ${fmt.duration(p.eta_s)}` : "";
  text(v.querySelector(".job-progress .label"),
    `${p.iteration} / ${p.iterations} (${(100 * p.fraction).toFixed(1)}%)${eta}`);
  const s = job.summary || {};
  const facts = [
    ["Problem", fmt.problem(job.spec)],
    ["Method", fmt.method(job.spec)],
    ["Queue", job.queue],
    ["Attempts", String(job.attempts)],
    ["Elapsed", fmt.duration(fmt.elapsed(job))],
    // final_outer_loss: the latest iteration's, then (succeeded) at the returned hparams;
    // last_outer_loss is the name rows written before it had
    ["Final upper loss", fmt.num(s.final_outer_loss ?? s.last_outer_loss, 6)],
    ["Best upper loss", s.best_outer_loss === undefined ? "–"
      : `${fmt.num(s.best_outer_loss, 6)} (iteration ${s.best_iteration ?? "–"})`],
    ["s / hyper-iteration", fmt.num(s.s_per_iteration, 4)],
    ["Peak hypergradient memory", fmt.bytes(s.peak_bytes)],
  ];
  if (s.auto_k) facts.push(["Auto-K", fmt.autoK(s.auto_k)]);
  if (s.auto_k && s.auto_k.reason) facts.push(["Why this K", s.auto_k.reason]);
  v.querySelector(".facts").replaceChildren(kv(facts));
  const metrics = Object.entries(s.metrics || {});
  v.querySelector(".metrics").replaceChildren(metrics.length
    ? kv(metrics.map(([k, val]) => [k, fmt.num(val, 6)]))
    : h("p", { class: "muted" }, job.status === Status.SUCCEEDED
      ? "none: this problem records no metrics" : "recorded when the job succeeds"));
  const err = v.querySelector(".job-error");
  err.hidden = !job.error;
  if (job.error) text(err, `${job.error.type}: ${job.error.detail}`);
  const warnings = s.warnings || [];
  const warn = v.querySelector(".job-warnings");
  warn.hidden = !warnings.length;
  warn.replaceChildren(...warnings.map((w) => h("li", { dataset: { kind: w.kind } },
    `⚠ ${w.message}${w.count > 1 ? ` (${w.count} iterations flagged)` : ""}`)));
  v.querySelector(".history-box").replaceChildren(history(job));
  const spec = JSON.stringify(job.spec, null, 2);
  const pre = v.querySelector(".spec");
  if (pre.textContent !== spec) text(pre, spec);
  const cancel = v.querySelector("#cancel-job");
  cancel.disabled = TERMINAL.has(job.status) || job.cancel_requested;
  v.querySelector("#download-hparams").disabled = job.status !== Status.SUCCEEDED;
  // s.learned: the worker wrote the summary (jobs run before it existed have none)
  if (job.status === Status.SUCCEEDED && s.learned && !ctx.learned) showLearned(ctx);
  else if (TERMINAL.has(job.status) && !s.learned) v.querySelector("#learned").dataset.ready = "1";
}

// what was learned: drawn once the job has succeeded (a module of its own, loaded then)
function showLearned(me) {
  me.learned = { charts: [] };
  const box = me.view.querySelector("#learned");
  import("./learned.js").then((m) => m.mountLearned(box, me.id))
    .then((charts) => { if (me.learned) me.learned.charts = charts; })
    .catch((err) => {
      box.hidden = true; // 409: a job that ran before the summary existed
      box.dataset.ready = "1";
      if (!(err instanceof ApiError && err.status === 409)) toast(err.message, "error");
    });
}

function traceUrl(me) {
  const t = me.trace;
  return `/v1/jobs/${me.id}/trace${query({
    after: t.last, max_points: t.maxPoints, fields: FIELDS.join(","),
  })}`;
}

async function pollTrace(me) {
  const t = me.trace;
  const r = await request(traceUrl(me), { slot: `trace:${me.id}` });
  if (!r.changed) return false;
  const cols = r.data;
  const n = cols.iteration.length;
  const count = Number(r.headers.get("X-Trace-Points") || n);
  if (t.last === 0) {
    t.cols = cols;
    t.total = count;
  } else {
    if (!n) return false;
    for (const f of Object.keys(t.cols)) t.cols[f].push(...(cols[f] || []));
    t.total += count;
  }
  if (n) t.last = cols.iteration[n - 1];
  // appended raw points pile up on a long run: start over, downsampled, past a limit
  if (t.cols.iteration.length > 3 * t.maxPoints) {
    t.last = 0;
    forget(`trace:${me.id}`);
  }
  return n > 0 || t.last === 0;
}

function draw() {
  const { cols, total } = ctx.trace;
  const c = ctx.charts;
  c.loss.setData([cols.iteration, cols.outer_loss]);
  c.loss.container.dataset.total = String(total);
  const norms = [cols.iteration, cols.grad_norm];
  const exact = hasValues(cols.exact_norm);
  if (exact) norms.push(cols.exact_norm);
  if (exact !== c.normsExact) {
    c.norms.destroy();
    c.norms = normsChart(exact);
    c.normsExact = exact;
  }
  c.norms.setData(norms);
  const diag = hasValues(cols.cosine) || hasValues(cols.rel_error);
  c.diag.container.hidden = !diag;
  if (diag) c.diag.setData([cols.iteration, cols.cosine, cols.rel_error]);
  text(ctx.view.querySelector(".points"), total > cols.iteration.length
    ? `${total.toLocaleString()} points, ${cols.iteration.length.toLocaleString()} drawn`
    : `${total.toLocaleString()} points`);
}

function normsChart(exact) {
  const series = [{ label: "‖hypergradient‖", stroke: PALETTE[0] }];
  if (exact) series.push({ label: "‖exact‖", stroke: PALETTE[1], points: true });
  return new TraceChart(ctx.view.querySelector("#chart-norms"),
    { title: "Hypergradient norm", series, log: true });
}

async function tick() {
  const me = ctx;
  // a 304 hands back the body cached in the slot: the same object, so nothing "changed"
  const job = await getJSON(`/v1/jobs/${me.id}`, { slot: `job:${me.id}` });
  if (ctx !== me) return { done: true };
  const jobChanged = !ctx.job || job.updated_at !== ctx.job.updated_at
    || job.status !== ctx.job.status;
  renderJob(job);
  const traceChanged = await pollTrace(me);
  if (ctx !== me) return { done: true };
  if (traceChanged || !ctx.drawn) {
    draw();
    if (!ctx.drawn) performance.mark("bilevel:job-ready");
    ctx.drawn = true;
    ctx.view.dataset.ready = "1";
  }
  return { changed: jobChanged || traceChanged, done: TERMINAL.has(job.status) };
}

async function cancel(btn) {
  if (btn.dataset.confirm !== "1") {
    btn.dataset.confirm = "1";
    text(btn, "Confirm cancel");
    setTimeout(() => { btn.dataset.confirm = ""; text(btn, "Cancel job"); }, 4000);
    return;
  }
  btn.disabled = true;
  btn.dataset.confirm = "";
  text(btn, "Cancel job");
  try {
    renderJob(await getJSON(`/v1/jobs/${ctx.id}/cancel`, { method: "POST" }));
    toast("cancel requested");
  } catch (err) {
    toast(err.message, "error");
  }
  if (ctx && ctx.poller) ctx.poller.poke();
}

// the editors load on first use: the page of a long run does not wait for them
function openEditor(name, section) {
  const job = ctx && ctx.job;
  if (!job) return;
  import("./editor.js").then((m) => m[name](section, job))
    .catch((err) => toast(err.message, "error"));
}

export function mount(section, { id }) {
  clear(section);
  section.dataset.ready = "0";
  section.dataset.id = id;
  const guarded = (fn) => async () => {
    try { await fn(id); } catch (err) { toast(err.message, "error"); }
  };
  section.append(
    h("div", { class: "toolbar" },
      h("a", { href: "#/jobs", class: "back" }, "‹ Jobs"),
      h("h1", { class: "job-name" }, ""),
      h("span", { class: "badge job-status" }, ""),
      h("span", { class: "spacer" }),
      h("button", { id: "download-csv", type: "button", class: "ghost",
        onclick: guarded(downloadCsv) }, "Trace CSV"),
      h("button", { id: "download-hparams", type: "button", class: "ghost", disabled: true,
        onclick: guarded(downloadHparams) }, "Hyperparameters (.npz)"),
      h("button", { id: "clone-job", type: "button", class: "ghost",
        onclick: () => openEditor("openClone", section) }, "Clone"),
      h("button", { id: "sweep-job", type: "button", class: "ghost",
        onclick: () => openEditor("openSweep", section) }, "Sweep this"),
      h("button", { id: "around-job", type: "button", class: "ghost",
        onclick: () => openEditor("openAround", section) }, "Search around this"),
      h("button", { id: "cancel-job", type: "button", class: "danger", disabled: true,
        onclick: (e) => cancel(e.currentTarget) }, "Cancel job")),
    h("p", { class: "job-error error", hidden: true }),
    h("ul", { class: "job-warnings warning", role: "alert", hidden: true }),
    h("div", { class: "job-progress" }, h("progress", { max: "1", value: "0" }),
      h("span", { class: "label" }, "")),
    h("div", { class: "grid" },
      h("div", { class: "charts" },
        h("div", { id: "chart-loss" }),
        h("div", { id: "chart-norms" }),
        h("div", { id: "chart-diag", hidden: true }),
        h("p", { class: "muted small points" }, ""),
        h("div", { id: "learned", class: "learned", hidden: true, dataset: { ready: "0" } })),
      h("aside", { class: "side" },
        h("h3", {}, "Summary"), h("div", { class: "facts" }),
        h("h3", {}, "Problem metrics"), h("div", { class: "metrics" }),
        h("h3", {}, "State history"), h("div", { class: "history-box" }),
        h("h3", {}, "Spec"), h("pre", { class: "spec" }))),
  );
  ctx = { id, view: section, job: null, drawn: false, poller: null, learned: null };
  const loss = new TraceChart(section.querySelector("#chart-loss"), {
    title: "Upper loss (log scale)", series: [{ label: "upper loss", stroke: PALETTE[0] }],
    log: true, height: 280,
  });
  ctx.charts = { loss, normsExact: false };
  ctx.charts.norms = normsChart(false);
  ctx.charts.diag = new TraceChart(section.querySelector("#chart-diag"), {
    title: "Diagnostics vs the exact hypergradient",
    series: [{ label: "cosine", stroke: PALETTE[2], points: true },
      { label: "relative error", stroke: PALETTE[3], points: true }],
  });
  ctx.trace = {
    cols: emptyCols(), last: 0, total: 0,
    maxPoints: maxPointsFor(loss.width(), FIELDS.length),
  };
  section.dataset.maxPoints = String(ctx.trace.maxPoints);
  forget(`trace:${id}`);
  forget(`job:${id}`);
  ctx.poller = new Poller(() => guardedTick(section), {
    min: 1000, max: 10000,
    onState: (s, wait) => {
      section.dataset.polling = s;
      section.dataset.pollDelay = wait === null ? "" : String(wait);
    },
  });
  ctx.poller.start();
}

async function guardedTick(section) {
  // an unknown (or another team's) job says so instead of being polled again
  try {
    return await tick();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404 && ctx && ctx.view === section) {
      section.replaceChildren(h("p", { class: "error" }, err.message),
        h("a", { href: "#/jobs" }, "‹ back to the jobs"));
      section.dataset.ready = "1";
      return { done: true };
    }
    throw err;
  }
}

export function unmount() {
  if (!ctx) return;
  ctx.poller.stop();
  for (const c of [ctx.charts.loss, ctx.charts.norms, ctx.charts.diag]) c.destroy();
  for (const c of (ctx.learned && ctx.learned.charts) || []) c.destroy();
  forget(`trace:${ctx.id}`);
  forget(`job:${ctx.id}`);
  ctx = null;
}
