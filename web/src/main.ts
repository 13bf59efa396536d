// The strictpy playground and dashboard: sign in with a token (exchanged for
// a session cookie), run programs with limits, see verdicts and usage, browse
// recent jobs and, for admin sessions, tokens and the audit log.

import "./style.css";
import {
  ApiError,
  query,
  request,
  setCsrf,
  type AuditPage,
  type Job,
  type JobInput,
  type JobList,
  type Session,
  type TokenView,
} from "./api";
import { byId, el, fill, when } from "./dom";
import { mountEditor } from "./editor";
import { renderJob } from "./outcome";

const SAMPLE = 'print("hello from strictpy")\nresult = {"answer": 6 * 7}\n';

let session: Session | null = null;

// ---------------------------------------------------------------- views

const VIEWS = ["signin", "playground", "jobs", "tokens", "audit"] as const;
type View = (typeof VIEWS)[number];

function show(view: View): void {
  for (const v of VIEWS) byId(`view-${v}`).hidden = v !== view;
  for (const tab of document.querySelectorAll<HTMLButtonElement>(".tab")) {
    if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (view === "jobs") void loadJobs(null);
  if (view === "tokens") void loadTokens();
  if (view === "audit") void loadAudit(null);
}

function message(e: unknown): string {
  if (e instanceof ApiError) return `${e.message} (${e.status} ${e.code})`;
  return e instanceof Error ? e.message : String(e);
}

/** Shows an error in `target`; a 401 means the session is gone, so back to sign-in. */
function report(target: HTMLElement, e: unknown): void {
  if (e instanceof ApiError && e.status === 401 && session !== null) {
    signedOut("Your session has ended; sign in again.");
    return;
  }
  target.textContent = message(e);
}

// ---------------------------------------------------------------- session

function signedIn(s: Session): void {
  session = s;
  setCsrf(s.csrf_token);
  const admin = s.scopes.includes("admin");
  for (const tab of document.querySelectorAll<HTMLElement>(".admin-only")) tab.hidden = !admin;
  byId("who-text").textContent = `tenant ${s.tenant} · ${s.scopes.join(", ")} · until ${when(s.expires_at)}`;
  byId("nav").hidden = false;
  byId("who").hidden = false;
  show("playground");
  editor.recheck();
  editor.view.focus();
}

function signedOut(why: string): void {
  session = null;
  setCsrf(null);
  byId("nav").hidden = true;
  byId("who").hidden = true;
  byId("signin-error").textContent = why;
  show("signin");
}

byId<HTMLFormElement>("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = byId<HTMLInputElement>("signin-token");
  const token = input.value.trim();
  // The token is not kept: not in storage, not in the field.
  input.value = "";
  byId("signin-error").textContent = "";
  try {
    signedIn(await request<Session>("POST", "/v1/sessions", { token }));
  } catch (e) {
    byId("signin-error").textContent = message(e);
  }
});

byId("sign-out").addEventListener("click", async () => {
  try {
    await request<null>("DELETE", "/v1/sessions/current");
    signedOut("Signed out.");
  } catch (e) {
    signedOut(`Signed out here; the server said: ${message(e)}`);
  }
});

for (const tab of document.querySelectorAll<HTMLButtonElement>(".tab")) {
  tab.addEventListener("click", () => show(tab.dataset.view as View));
}

// ---------------------------------------------------------------- playground

const checkStatus = byId("check-status");

function allowList(): string[] {
  return byId<HTMLInputElement>("allow")
    .value.split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

const editor = mountEditor(byId("editor"), SAMPLE, allowList, () => session !== null, (text, ok) => {
  checkStatus.textContent = text;
  checkStatus.dataset.ok = ok === null ? "" : String(ok);
});

byId("allow").addEventListener("change", () => editor.recheck());

function numberField(id: string): number | undefined {
  const raw = byId<HTMLInputElement>(id).value.trim();
  if (raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${byId(id).parentElement?.firstChild?.textContent ?? id} must be a whole number`);
  return n;
}

/** The job request the form describes. */
function jobRequest(): Record<string, unknown> {
  const limits: Record<string, number> = {};
  const fields: [string, string][] = [
    ["timeout_ms", "limit-timeout"],
    ["fuel", "limit-fuel"],
    ["memory_mb", "limit-memory"],
    ["max_output_bytes", "limit-output"],
  ];
  for (const [key, id] of fields) {
    const n = numberField(id);
    if (n !== undefined) limits[key] = n;
  }
  const req: Record<string, unknown> = { code: editor.code(), stdin: byId<HTMLTextAreaElement>("stdin").value, allow: allowList() };
  if (Object.keys(limits).length > 0) req.limits = limits;
  const contextRaw = byId<HTMLTextAreaElement>("context").value.trim();
  if (contextRaw !== "") {
    let context: unknown;
    try {
      context = JSON.parse(contextRaw);
    } catch (e) {
      throw new Error(`context is not JSON: ${message(e)}`);
    }
    if (context === null || typeof context !== "object" || Array.isArray(context)) throw new Error("context must be a JSON object");
    req.context = context;
  }
  const seed = numberField("seed");
  if (seed !== undefined) req.seed = seed;
  return req;
}

const runButton = byId<HTMLButtonElement>("run");
const cancelButton = byId<HTMLButtonElement>("cancel");
const outcome = byId("outcome");
const runError = byId("run-error");
let current: string | null = null;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function isFinal(job: Job): boolean {
  return job.status !== "queued" && job.status !== "running";
}

/** Polls the job until it is final, showing each state; gentle on the rate limit. */
async function follow(job: Job): Promise<void> {
  let delay = 50;
  renderJob(outcome, job);
  while (!isFinal(job) && current === job.id) {
    await sleep(delay);
    delay = Math.min(delay * 2, 400);
    job = await request<Job>("GET", `/v1/jobs/${encodeURIComponent(job.id)}`);
    if (current === job.id) renderJob(outcome, job);
  }
}

byId<HTMLFormElement>("run-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  runError.textContent = "";
  let req: Record<string, unknown>;
  try {
    req = jobRequest();
  } catch (e) {
    runError.textContent = message(e);
    return;
  }
  runButton.disabled = true;
  try {
    const job = await request<Job>("POST", "/v1/jobs", req);
    current = job.id;
    cancelButton.disabled = false;
    await follow(job);
  } catch (e) {
    if (e instanceof ApiError && e.code === "policy_violation") {
      const vs = (e.details as { violations?: { line: number; column: number; message: string }[] } | null)?.violations ?? [];
      runError.textContent = [e.message, ...vs.map((v) => `${v.line}:${v.column} ${v.message}`)].join("\n");
    } else report(runError, e);
  } finally {
    runButton.disabled = false;
    cancelButton.disabled = true;
  }
});

cancelButton.addEventListener("click", async () => {
  if (current === null) return;
  cancelButton.disabled = true;
  try {
    const job = await request<Job>("DELETE", `/v1/jobs/${encodeURIComponent(current)}`);
    renderJob(outcome, job);
  } catch (e) {
    report(runError, e);
  }
});

// ---------------------------------------------------------------- recent jobs

let jobsNext: string | null = null;
const jobDetail = byId("job-detail");

async function openJob(id: string): Promise<void> {
  try {
    const job = await request<Job>("GET", `/v1/jobs/${encodeURIComponent(id)}`);
    renderJob(jobDetail, job);
    const load = el("button", { type: "button", class: "primary", "data-action": "load-code" }, "Load code into the editor");
    load.addEventListener("click", () => void loadInput(job));
    jobDetail.prepend(load);
  } catch (e) {
    report(byId("jobs-error"), e);
  }
}

/** Puts a job's code, inputs and limits back into the playground. */
async function loadInput(job: Job): Promise<void> {
  try {
    const input = await request<JobInput>("GET", `/v1/jobs/${encodeURIComponent(job.id)}/input`);
    editor.setCode(input.code);
    byId<HTMLTextAreaElement>("stdin").value = input.stdin;
    byId<HTMLTextAreaElement>("context").value = input.context === null ? "" : JSON.stringify(input.context, null, 2);
    byId<HTMLInputElement>("allow").value = job.allow.join(", ");
    byId<HTMLInputElement>("seed").value = job.seed === null ? "" : String(job.seed);
    byId<HTMLInputElement>("limit-timeout").value = String(job.limits.timeout_ms);
    byId<HTMLInputElement>("limit-fuel").value = String(job.limits.fuel);
    byId<HTMLInputElement>("limit-memory").value = String(job.limits.memory_mb);
    byId<HTMLInputElement>("limit-output").value = String(job.limits.max_output_bytes);
    show("playground");
  } catch (e) {
    report(byId("jobs-error"), e);
  }
}

async function loadJobs(cursor: string | null): Promise<void> {
  const errors = byId("jobs-error");
  errors.textContent = "";
  try {
    const page = await request<JobList>(
      "GET",
      `/v1/jobs${query({
        status: byId<HTMLSelectElement>("jobs-status").value,
        verdict: byId<HTMLSelectElement>("jobs-verdict").value,
        limit: 20,
        cursor,
      })}`,
    );
    jobsNext = page.next_cursor;
    byId<HTMLButtonElement>("jobs-next").disabled = jobsNext === null;
    const rows = page.jobs.map((j) => {
      const open = el("button", { type: "button", class: "link", "data-job": j.id }, j.id.slice(0, 8));
      open.addEventListener("click", () => void openJob(j.id));
      return el(
        "tr",
        {},
        el("td", {}, open),
        el("td", {}, el("span", { class: `badge ${j.status}` }, j.status)),
        el("td", {}, j.verdict ?? ""),
        el("td", {}, when(j.created_at)),
        el("td", {}, when(j.finished_at)),
      );
    });
    showRows("jobs-rows", rows, 5, "no jobs");
  } catch (e) {
    report(errors, e);
  }
}

/** Puts a page's rows in the table `tbody`, or one row saying it is empty. */
function showRows(tbody: string, rows: HTMLElement[], columns: number, empty: string): void {
  fill(byId(tbody), ...(rows.length > 0 ? rows : [el("tr", {}, el("td", { colspan: String(columns), class: "empty" }, empty))]));
}

/** Wires a listing's filter form and its Newest / Older buttons to `load`. */
function pager(prefix: string, load: (cursor: string | null) => Promise<void>, next: () => string | null): void {
  byId<HTMLFormElement>(`${prefix}-filter`).addEventListener("submit", (event) => {
    event.preventDefault();
    void load(null);
  });
  byId(`${prefix}-first`).addEventListener("click", () => void load(null));
  byId(`${prefix}-next`).addEventListener("click", () => void load(next()));
}

pager("jobs", loadJobs, () => jobsNext);

// ---------------------------------------------------------------- tokens (admin)

async function loadTokens(): Promise<void> {
  const errors = byId("token-error");
  try {
    const { tokens } = await request<{ tokens: TokenView[] }>("GET", "/v1/tokens");
    const rows = tokens.map((t) => {
      const revoke = el("button", { type: "button", "data-revoke": t.id }, "Revoke");
      revoke.disabled = t.revoked_at !== null;
      revoke.addEventListener("click", async () => {
        if (!window.confirm(`Revoke token ${t.id} (${t.name}) and every session made from it?`)) return;
        try {
          await request<null>("DELETE", `/v1/tokens/${encodeURIComponent(t.id)}`);
          await loadTokens();
        } catch (e) {
          report(errors, e);
        }
      });
      const state = t.revoked_at !== null ? `revoked ${when(t.revoked_at)}` : "active";
      return el(
        "tr",
        {},
        el("td", {}, el("code", {}, t.id)),
        el("td", {}, t.tenant),
        el("td", {}, t.name),
        el("td", {}, t.scopes.join(", ")),
        el("td", {}, when(t.created_at)),
        el("td", {}, t.expires_at === null ? "never" : when(t.expires_at)),
        el("td", {}, when(t.last_used_at)),
        el("td", {}, state),
        el("td", {}, revoke),
      );
    });
    fill(byId("token-rows"), ...rows);
  } catch (e) {
    report(errors, e);
  }
}

byId<HTMLFormElement>("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const errors = byId("token-error");
  errors.textContent = "";
  byId("token-secret").hidden = true;
  const scopes = [...document.querySelectorAll<HTMLInputElement>('input[name="scope"]:checked')].map((c) => c.value);
  const body: Record<string, unknown> = { tenant: byId<HTMLInputElement>("token-tenant").value.trim(), scopes };
  const name = byId<HTMLInputElement>("token-name").value.trim();
  if (name !== "") body.name = name;
  try {
    const expiry = numberField("token-expiry");
    if (expiry !== undefined) body.expires_in_secs = expiry;
    const created = await request<{ token: string }>("POST", "/v1/tokens", body);
    byId("token-secret-value").textContent = created.token;
    byId("token-secret").hidden = false;
    await loadTokens();
  } catch (e) {
    report(errors, e);
  }
});

// ---------------------------------------------------------------- audit (admin)

let auditNext: string | null = null;

function isoOrNull(id: string): string | null {
  const raw = byId<HTMLInputElement>(id).value;
  if (raw === "") return null;
  const t = new Date(raw);
  return Number.isNaN(t.getTime()) ? null : t.toISOString();
}

async function loadAudit(cursor: string | null): Promise<void> {
  const errors = byId("audit-error");
  errors.textContent = "";
  try {
    const page = await request<AuditPage>(
      "GET",
      `/v1/audit${query({
        tenant: byId<HTMLInputElement>("audit-tenant").value.trim(),
        event: byId<HTMLInputElement>("audit-event").value.trim(),
        since: isoOrNull("audit-since"),
        until: isoOrNull("audit-until"),
        limit: 50,
        cursor,
      })}`,
    );
    auditNext = page.next_cursor;
    byId<HTMLButtonElement>("audit-next").disabled = auditNext === null;
    const rows = page.events.map((a) =>
      el(
        "tr",
        {},
        el("td", {}, when(a.at)),
        el("td", { "data-event": a.event }, a.event),
        el("td", {}, a.tenant ?? ""),
        el("td", {}, a.token_id ?? ""),
        el("td", {}, a.ip ?? ""),
        el("td", {}, el("code", {}, JSON.stringify(a.details))),
      ),
    );
    showRows("audit-rows", rows, 6, "no events");
  } catch (e) {
    report(errors, e);
  }
}

pager("audit", loadAudit, () => auditNext);

// ---------------------------------------------------------------- start

async function start(): Promise<void> {
  try {
    signedIn(await request<Session>("GET", "/v1/sessions/current"));
  } catch {
    signedOut("");
  }
}

void start();
