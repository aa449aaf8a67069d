// The job statuses: the one place the dashboard names them. They mirror the server's
// `JobStatus` enum (jobs/status.py, served in /openapi.json); tests/api/test_openapi.py
// fails when the two disagree.
export const Status = Object.freeze({
  QUEUED: "queued",
  RUNNING: "running",
  SUCCEEDED: "succeeded",
  FAILED: "failed",
  CANCELLED: "cancelled",
  PRUNED: "pruned",
});

// in the order of a job's life, as the list's status filter offers them
export const STATUSES = Object.freeze(Object.values(Status));

// the statuses a job never leaves: its page stops polling, the list stops refreshing it
export const TERMINAL = new Set([Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.PRUNED]);
