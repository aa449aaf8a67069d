// The REST API v1 client: Bearer key from localStorage, problem+json errors, ETag/304.
const STORAGE_KEY = "bilevel.apiKey";

export function getKey() {
  return localStorage.getItem(STORAGE_KEY);
}

export function setKey(key) {
  localStorage.setItem(STORAGE_KEY, key);
}

export function clearKey() {
  localStorage.removeItem(STORAGE_KEY);
  slots.clear();
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

let unauthorized = () => {};
export function onUnauthorized(fn) {
  unauthorized = fn;
}

// ETag slots: the last URL, ETag and body per caller-named slot (one per job and one per
// trace being polled), so a poll of an unchanged URL sends If-None-Match and reuses the body
// on 304.
const slots = new Map();

export function forget(slot) {
  slots.delete(slot);
}

/**
 * One request. Returns {data, changed, headers, response}; `raw: true` skips JSON parsing.
 * Never puts the key in a URL: it goes in the Authorization header only.
 */
export async function request(path, { method = "GET", body, slot, raw = false, signal } = {}) {
  const key = getKey();
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const cached = slot ? slots.get(slot) : undefined;
  if (cached && cached.url === path) headers["If-None-Match"] = cached.etag;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, {
    method, headers, body: payload, cache: "no-store", credentials: "omit",
    redirect: "error", referrerPolicy: "no-referrer", signal,
  });
  if (response.status === 304 && cached && cached.url === path) {
    return { data: cached.data, changed: false, headers: response.headers, response };
  }
  if (!response.ok) {
    let problem;
    try {
      problem = await response.json();
    } catch {
      problem = { detail: `${response.status} ${response.statusText}` };
    }
    if (response.status === 401) unauthorized(problem);
    throw new ApiError(response.status, problem);
  }
  if (raw) return { data: null, changed: true, headers: response.headers, response };
  const data = await response.json();
  const etag = response.headers.get("ETag");
  if (slot && etag) slots.set(slot, { url: path, etag, data });
  return { data, changed: true, headers: response.headers, response };
}

export async function getJSON(path, opts) {
  return (await request(path, opts)).data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export const TRACE_FIELDS = [
  "outer_loss", "grad_norm", "lr", "time_s", "exact_norm", "cosine", "rel_error", "descent_ratio",
];
