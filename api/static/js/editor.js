// From a job's page: "Clone" (the spec in an editor, checked against the API's schema before
// it is submitted), "Sweep this" (a path and values: a study over this job's spec) and
// "Search around this" (a search study the server builds around the job's settings).
import { ApiError, getJSON } from "./api.js";
import { h, text } from "./dom.js";
import { leafPaths, schemas, validate } from "./schema.js";

function errorList(el, errors) {
  el.replaceChildren(...errors.map((e) => h("li", {}, `${e.field}: ${e.message}`)));
  el.hidden = !errors.length;
}

function serverErrors(err) {
  if (err instanceof ApiError && err.problem.errors) return err.problem.errors;
  return [{ field: "(server)", message: err.message }];
}

function panel(section, id, title, ...body) {
  const old = section.querySelector(".editor");
  if (old) old.remove();
  const box = h("div", { class: "card editor", id },
    h("div", { class: "toolbar" }, h("h3", {}, title), h("span", { class: "spacer" }),
      h("button", { type: "button", class: "ghost", onclick: () => box.remove() }, "Close")),
    ...body);
  section.querySelector(".job-progress").after(box);
  return box;
}

/** The clone editor: this job's spec, renamed, checked against the schema, then submitted. */
export function openClone(section, job) {
  const spec = { ...job.spec, name: `copy of ${job.spec.name}`.slice(0, 200) };
  const area = h("textarea", { id: "clone-spec", rows: "18", spellcheck: "false", "aria-label": "job spec" });
  area.value = JSON.stringify(spec, null, 2);
  const errors = h("ul", { class: "error", id: "clone-errors", hidden: true });
  const check = async () => {
    let value;
    try {
      value = JSON.parse(area.value);
    } catch (e) {
      errorList(errors, [{ field: "(spec)", message: `not JSON: ${e.message}` }]);
      return null;
    }
    const all = await schemas();
    const errs = validate(all.JobSpec, value, all);
    errorList(errors, errs);
    return errs.length ? null : value;
  };
  const submit = async (btn) => {
    const value = await check();
    if (!value) return;
    btn.disabled = true;
    try {
      const created = await getJSON("/v1/jobs", { method: "POST", body: value });
      location.hash = `#/jobs/${created.id}`;
    } catch (err) {
      errorList(errors, serverErrors(err));
    } finally {
      btn.disabled = false;
    }
  };
  panel(section, "clone-editor", "Clone: edit the spec, then submit", area, errors,
    h("div", { class: "toolbar" },
      h("button", { type: "button", class: "ghost", id: "clone-check", onclick: check }, "Check"),
      h("button", { type: "button", id: "clone-submit", onclick: (e) => submit(e.currentTarget) }, "Submit job")));
}

function parseValues(raw) {
  // "1, 5, 25" or a JSON list; each item JSON when it parses, else a string ("full")
  const t = raw.trim();
  if (t.startsWith("[")) return JSON.parse(t);
  return t.split(",").map((s) => s.trim()).filter(Boolean).map((s) => {
    try { return JSON.parse(s); } catch { return s; }
  });
}

/** "Sweep this": pick a path and its values; creates a study over this job's spec. */
export function openSweep(section, job) {
  const paths = leafPaths(job.spec);
  const path = h("input", { id: "sweep-path", list: "sweep-paths", value: paths.includes("hypergradient.K") ? "hypergradient.K" : "seed", "aria-label": "spec path" });
  const list = h("datalist", { id: "sweep-paths" }, [...paths, "hypergradient.method"].map((p) => h("option", { value: p })));
  const values = h("input", { id: "sweep-values", placeholder: "1, 5, 25", "aria-label": "values" });
  const seeds = h("input", { id: "sweep-seeds", placeholder: "0, 1, 2", "aria-label": "seeds" });
  const name = h("input", { id: "sweep-name", value: `sweep of ${job.spec.name}`.slice(0, 200), "aria-label": "study name" });
  const errors = h("ul", { class: "error", id: "sweep-errors", hidden: true });
  const create = async (btn) => {
    let grid;
    try {
      grid = { [path.value.trim()]: parseValues(values.value) };
      if (seeds.value.trim()) grid.seed = parseValues(seeds.value);
    } catch (e) {
      errorList(errors, [{ field: "values", message: e.message }]);
      return;
    }
    btn.disabled = true;
    try {
      const study = await getJSON("/v1/studies", { method: "POST", body: { name: name.value, base: job.spec, grid } });
      location.hash = `#/studies/${study.id}`;
    } catch (err) {
      errorList(errors, serverErrors(err));
    } finally {
      btn.disabled = false;
    }
  };
  panel(section, "sweep-editor", "Sweep this job's spec",
    h("div", { class: "form-grid" },
      h("label", {}, "Path"), h("span", {}, path, list),
      h("label", {}, "Values"), h("span", {}, values),
      h("label", {}, "Seeds (optional)"), h("span", {}, seeds),
      h("label", {}, "Study name"), h("span", {}, name)),
    errors,
    h("div", { class: "toolbar" },
      h("button", { type: "button", id: "sweep-create", onclick: (e) => create(e.currentTarget) }, "Create study")));
  text(values, "");
  values.focus();
}

/** "Search around this": a search study over this job's outer lr (log, /3..x3), K and inner
 * steps, warm-started by the job (POST /v1/jobs/{id}/search-around). */
export function openAround(section, job) {
  const trials = h("input", { id: "around-trials", type: "number", min: "1", value: "20", "aria-label": "trials" });
  const concurrent = h("input", { id: "around-concurrent", type: "number", min: "1", value: "2", "aria-label": "members at once" });
  const pruner = h("select", { id: "around-pruner", "aria-label": "pruner" },
    ["", "median", "successive_halving", "hyperband"].map((p) => h("option", { value: p }, p || "none")));
  const name = h("input", { id: "around-name", value: `around ${job.spec.name}`.slice(0, 200), "aria-label": "study name" });
  const errors = h("ul", { class: "error", id: "around-errors", hidden: true });
  const create = async (btn) => {
    const body = { name: name.value, n_trials: Number(trials.value), max_concurrent: Number(concurrent.value) };
    if (pruner.value) body.pruner = { kind: pruner.value };
    btn.disabled = true;
    try {
      const study = await getJSON(`/v1/jobs/${job.id}/search-around`, { method: "POST", body });
      location.hash = `#/studies/${study.id}`;
    } catch (err) {
      errorList(errors, serverErrors(err));
    } finally {
      btn.disabled = false;
    }
  };
  panel(section, "around-editor", "Search around this job: outer lr (÷3 to ×3, log), K and inner steps",
    h("div", { class: "form-grid" },
      h("label", {}, "Trials"), h("span", {}, trials),
      h("label", {}, "At once"), h("span", {}, concurrent),
      h("label", {}, "Pruner"), h("span", {}, pruner),
      h("label", {}, "Study name"), h("span", {}, name)),
    errors,
    h("div", { class: "toolbar" },
      h("button", { type: "button", id: "around-create", onclick: (e) => create(e.currentTarget) }, "Create search")));
  trials.focus();
}
