// Formatting of numbers, durations, dates and job fields.
export function num(v, digits = 4) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(digits - 1);
  return Number(v.toPrecision(digits)).toString();
}

export function duration(s) {
  if (s === undefined || s === null || !Number.isFinite(s)) return "–";
  s = Math.max(0, s);
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const hrs = Math.floor(m / 60);
  return `${hrs} h ${m % 60} min`;
}

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { hour12: false });
}

export function elapsed(job, now = Date.now()) {
  if (!job.started_at) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  return (end - Date.parse(job.started_at)) / 1000;
}

export function method(spec) {
  const hg = (spec && spec.hypergradient) || {};
  const steps = spec && spec.inner ? spec.inner.steps : undefined;
  switch (hg.method) {
    case "truncated": return `truncated K=${hg.K}`;
    case "full": return `full K=T=${steps}`;
    case "forward": return `forward K=T=${steps}`;
    case "checkpointed": return `checkpointed K=T=${steps}`;
    case "implicit": return `implicit (${hg.solver || "cg"})`;
    case "auto": return `auto (${hg.memory_mb} MiB)`;
    default: return hg.method || "–";
  }
}

export function problem(spec) {
  const p = (spec && spec.problem) || {};
  return p.dataset ? `${p.kind} (${p.dataset})` : p.kind || "–";
}

export function bytes(n) {
  if (n === undefined || n === null || !Number.isFinite(n)) return "–";
  for (const [unit, scale] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]]) {
    if (n >= scale) return `${(n / scale).toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}

// auto-K's record: the K it chose, the contraction it measured, Prop. 3.1's bound
export function autoK(a) {
  // why there is no bound, when there is none, is in a.reason (the worker's sentence)
  const bound = a.method === "full" ? "no bias" : a.bound === null ? "no bound"
    : `bias ≤ ${num(a.bound, 3)}`;
  return `${a.method === "full" ? "full" : `K=${a.K}`} of T=${a.T}; ‖A_t‖ ≤ ${num(a.contraction, 4)}; ${bound}`;
}
