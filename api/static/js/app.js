// The dashboard's entry: sign-in, hash routing (#/jobs, #/jobs/<id>, #/compare?ids=...,
// #/pool, #/datasets, #/studies, #/studies/<id>, #/webhooks).
import { clearKey, getJSON, getKey, onUnauthorized, setKey } from "./api.js";
import * as compare from "./compare.js";
import * as datasets from "./datasets.js";
import * as detail from "./detail.js";
import { text, toast } from "./dom.js";
import * as list from "./list.js";
import * as pool from "./pool.js";

const views = {
  signin: document.getElementById("view-signin"),
  jobs: document.getElementById("view-jobs"),
  job: document.getElementById("view-job"),
  compare: document.getElementById("view-compare"),
  pool: document.getElementById("view-pool"),
  datasets: document.getElementById("view-datasets"),
  studies: document.getElementById("view-studies"),
  study: document.getElementById("view-study"),
  webhooks: document.getElementById("view-webhooks"),
};
let current = null; // {module, name}

function takeKeyFromFragment() {
  // `bilevel serve` prints http://host:port/#key=blv_...: the fragment never reaches the
  // server; the key goes to localStorage and leaves the address bar and the history at once
  const m = /^#key=([^&]+)/.exec(location.hash);
  if (!m) return;
  setKey(decodeURIComponent(m[1]));
  history.replaceState(null, "", `${location.pathname}#/jobs`);
}

function show(name) {
  for (const [k, el] of Object.entries(views)) el.hidden = k !== name;
  document.body.dataset.view = name;
  for (const a of document.querySelectorAll("header nav a")) {
    const nav = { job: "jobs", study: "studies" }[name] || name;
    a.classList.toggle("active", a.id === `nav-${nav}`);
  }
  document.getElementById("signout").hidden = name === "signin";
}

function route() {
  if (current && current.module) current.module.unmount();
  document.getElementById("toast").hidden = true;
  current = null;
  if (!getKey()) {
    show("signin");
    document.getElementById("signin-key").focus();
    return;
  }
  const hash = location.hash.replace(/^#/, "") || "/jobs";
  const [path, qs] = hash.split("?");
  const params = new URLSearchParams(qs || "");
  let m;
  if ((m = /^\/jobs\/([0-9a-fA-F-]{36})$/.exec(path))) {
    current = { module: detail, name: "job" };
    show("job");
    detail.mount(views.job, { id: m[1].toLowerCase() });
  } else if (path === "/datasets") {
    current = { module: datasets, name: "datasets" };
    show("datasets");
    datasets.mount(views.datasets);
  } else if ((m = /^\/studies\/([0-9a-fA-F-]{36})$/.exec(path))) {
    mountLazy("study", () => import("./study.js"), { id: m[1].toLowerCase() });
  } else if (path === "/studies") {
    mountLazy("studies", () => import("./studies.js"), params);
  } else if (path === "/webhooks") {
    mountLazy("webhooks", () => import("./webhooks.js"), params);
  } else if (path === "/compare") {
    current = { module: compare, name: "compare" };
    show("compare");
    compare.mount(views.compare, params);
  } else if (path === "/pool") {
    current = { module: pool, name: "pool" };
    show("pool");
    pool.mount(views.pool);
  } else {
    current = { module: list, name: "jobs" };
    show("jobs");
    list.mount(views.jobs, params);
  }
  document.title = `bilevel · ${current.name}`;
}

// views loaded on first use, so that the job pages' scripts do not wait for them
function mountLazy(name, load, arg) {
  const me = { module: null, name };
  current = me;
  show(name);
  load().then((mod) => {
    if (current !== me) return; // navigated away meanwhile
    me.module = mod;
    mod.mount(views[name], arg);
  }).catch((err) => toast(`cannot load the ${name} view: ${err.message}`, "error"));
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("signin-key");
  const err = document.getElementById("signin-error");
  const key = input.value.trim();
  text(err, "");
  if (!key) return;
  setKey(key);
  try {
    await getJSON("/v1/jobs?limit=1");
  } catch (e) {
    clearKey();
    text(err, e.status === 401 ? "That key was not accepted." : e.message);
    return;
  }
  input.value = "";
  if (!location.hash.startsWith("#/")) location.hash = "#/jobs";
  route();
}

function signOut() {
  clearKey();
  history.replaceState(null, "", `${location.pathname}#/jobs`);
  route();
}

onUnauthorized(() => {
  if (!getKey()) return;
  clearKey();
  toast("The API key was refused: sign in again.", "error");
  route();
});

window.addEventListener("hashchange", () => {
  takeKeyFromFragment();
  route();
});
window.addEventListener("online", () => text(document.getElementById("conn"), ""));
window.addEventListener("offline", () => text(document.getElementById("conn"), "offline"));
document.getElementById("signin-form").addEventListener("submit", signIn);
document.getElementById("signout").addEventListener("click", signOut);
takeKeyFromFragment();
route();
