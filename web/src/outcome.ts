// How a job is shown: the verdict in words, usage as bars against the
// limits, stdout and stderr with their truncation flags, the result as
// formatted JSON and the traceback. All of it text.

import type { Job } from "./api";
import { el, fill, when } from "./dom";

const MIB = 1024 * 1024;

/** A count for people: 1234567 → "1,234,567". */
function count(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function ms(n: number): string {
  return n < 10 ? `${n.toFixed(1)} ms` : `${count(n)} ms`;
}

function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

/** The job's status and verdict in one sentence. */
export function verdictWords(job: Job): string {
  const e = job.error;
  switch (job.status) {
    case "queued":
      return "queued, waiting for a worker";
    case "running":
      return "running…";
    case "succeeded":
      return job.usage ? `succeeded in ${ms(job.usage.wall_time_ms)}` : "succeeded";
    default:
      break;
  }
  if (e === null) return job.status;
  switch (e.kind) {
    case "timeout":
      return `stopped by the time limit at ${count(e.limit ?? job.limits.timeout_ms)} ms`;
    case "fuel_exhausted":
      return `stopped by the fuel limit at ${count(e.limit ?? job.limits.fuel)} units of fuel`;
    case "memory_limit":
      return `stopped by the memory limit at ${count(job.limits.memory_mb)} MiB`;
    case "stack_overflow":
      return "stopped: the stack overflowed";
    case "cancelled":
      return "cancelled";
    case "exception": {
      // The message usually names the type already ("ValueError: ...").
      const type = e.exception_type ?? "an exception";
      return e.message.startsWith(type) ? `failed with ${e.message.trim()}` : `failed with ${type}: ${e.message.trim()}`;
    }
    case "internal":
      return `failed inside strictpy: ${e.message}`;
    default:
      return `${job.status} (${e.kind}): ${e.message}`;
  }
}

/** One usage bar: `used` against `limit`, with the figures beside it. */
function bar(name: string, key: string, used: number, limit: number, label: string): HTMLElement {
  const ratio = limit > 0 ? Math.min(used / limit, 1) : 0;
  const fill = el("div", { class: "fill" });
  // CSSOM, not a style attribute: allowed under the page's CSP.
  fill.style.width = `${(ratio * 100).toFixed(1)}%`;
  if (ratio >= 0.999) fill.classList.add("full");
  else if (ratio >= 0.8) fill.classList.add("near");
  const track = el(
    "div",
    {
      class: "track",
      role: "meter",
      "aria-label": name,
      "aria-valuemin": "0",
      "aria-valuemax": "1",
      "aria-valuenow": String(ratio),
      "data-usage": key,
    },
    fill,
  );
  return el("div", { class: "bar" }, el("span", { class: "bar-name" }, name), track, el("span", { class: "bar-figure" }, label));
}

function block(title: string, key: string, text: string, truncated: boolean | null): HTMLElement {
  return el(
    "div",
    { class: "stream" },
    el(
      "h3",
      {},
      title,
      truncated ? el("span", { class: "flag", "data-truncated": key }, "truncated at the output cap") : null,
    ),
    el("pre", { "data-stream": key }, text),
  );
}

/** Renders `job` into `into`, replacing what was there. */
export function renderJob(into: HTMLElement, job: Job): void {
  const kind = job.error?.kind ?? job.status;
  const head = el(
    "div",
    { class: "verdict-line" },
    el("span", { class: `badge ${job.status}`, "data-status": job.status }, job.status),
    el("span", { class: "verdict", "data-verdict": kind }, verdictWords(job)),
  );
  const meta = el(
    "p",
    { class: "meta" },
    `job ${job.id} · created ${when(job.created_at)}`,
    job.finished_at ? ` · finished ${when(job.finished_at)}` : "",
  );
  const parts: (HTMLElement | null)[] = [head, meta];
  if (job.usage !== null) {
    const u = job.usage;
    const limit = job.limits;
    parts.push(
      el(
        "div",
        { class: "usage" },
        bar("fuel", "fuel", u.fuel_consumed, limit.fuel, `${count(u.fuel_consumed)} of ${count(limit.fuel)}`),
        bar("wall time", "time", u.wall_time_ms, limit.timeout_ms, `${ms(u.wall_time_ms)} of ${count(limit.timeout_ms)} ms`),
        bar(
          "peak memory",
          "memory",
          u.memory_peak_bytes,
          limit.memory_mb * MIB,
          `${mib(u.memory_peak_bytes)} of ${count(limit.memory_mb)} MiB`,
        ),
      ),
    );
  }
  if (job.stdout !== null) parts.push(block("stdout", "stdout", job.stdout, job.stdout_truncated));
  if (job.stderr !== null && job.stderr !== "") parts.push(block("stderr", "stderr", job.stderr, job.stderr_truncated));
  if (job.result !== null && job.result !== undefined) {
    parts.push(
      el("div", { class: "stream" }, el("h3", {}, "result"), el("pre", { "data-stream": "result" }, JSON.stringify(job.result, null, 2))),
    );
  }
  if (job.error?.traceback) {
    parts.push(el("div", { class: "stream" }, el("h3", {}, "traceback"), el("pre", { "data-stream": "traceback" }, job.error.traceback)));
  }
  if (job.error?.violations && job.error.violations.length > 0) {
    parts.push(
      el(
        "div",
        { class: "stream" },
        el("h3", {}, "violations"),
        el("pre", { "data-stream": "violations" }, job.error.violations.map((v) => `${v.line}:${v.column} ${v.message}`).join("\n")),
      ),
    );
  }
  fill(into, ...parts);
  into.hidden = false;
}
