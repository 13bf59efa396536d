// The page's client of the strictpy /v1 API. The session cookie travels by
// itself (same origin, HttpOnly); the CSRF token lives only in this module's
// memory and goes on every request that changes state.

/** The header the server checks on state-changing requests of a cookie session. */
export const CSRF_HEADER = "X-CSRF-Token";

/** A session as `POST /v1/sessions` and `GET /v1/sessions/current` describe it. */
export interface Session {
  id: string;
  tenant: string;
  scopes: string[];
  expires_at: string;
  csrf_token: string;
}

export interface Violation {
  rule: string;
  name?: string;
  line: number;
  column: number;
  message: string;
}

export interface CheckResponse {
  ok: boolean;
  violations: Violation[];
}

export interface Limits {
  timeout_ms: number;
  fuel: number;
  memory_mb: number;
  max_output_bytes: number;
}

export interface RunError {
  kind: string;
  message: string;
  exception_type?: string;
  traceback?: string;
  limit?: number;
  exit_code?: number;
  violations?: Violation[];
}

export interface Usage {
  fuel_consumed: number;
  wall_time_ms: number;
  memory_peak_bytes: number;
}

export interface Job {
  id: string;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  limits: Limits;
  allow: string[];
  seed: number | null;
  stdout: string | null;
  stderr: string | null;
  stdout_truncated: boolean | null;
  stderr_truncated: boolean | null;
  result: unknown;
  error: RunError | null;
  usage: Usage | null;
}

export interface JobInput {
  code: string;
  stdin: string;
  context: Record<string, unknown> | null;
}

export interface JobSummary {
  id: string;
  status: string;
  verdict: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export interface JobList {
  jobs: JobSummary[];
  next_cursor: string | null;
}

export interface TokenView {
  id: string;
  tenant: string;
  name: string;
  scopes: string[];
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface AuditEvent {
  id: number;
  at: string;
  event: string;
  tenant: string | null;
  token_id: string | null;
  ip: string | null;
  details: unknown;
}

export interface AuditPage {
  events: AuditEvent[];
  next_cursor: string | null;
}

/** An error answer of the API, in its one JSON shape. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown,
  ) {
    super(message);
  }
}

let csrfToken: string | null = null;

/** Remembers (or forgets) the CSRF token of the current session. */
export function setCsrf(token: string | null): void {
  csrfToken = token;
}

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** One request to the API: JSON in, JSON out, errors as [`ApiError`]. */
export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (!SAFE.has(method) && csrfToken !== null) headers[CSRF_HEADER] = csrfToken;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
    redirect: "error",
  });
  const text = await response.text();
  let parsed: unknown = null;
  if (text !== "") {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (!response.ok) {
    const err = (parsed as { error?: { code?: string; message?: string; details?: unknown } } | null)?.error;
    throw new ApiError(
      response.status,
      err?.code ?? "http_error",
      err?.message ?? `the server answered ${response.status}`,
      err?.details ?? null,
    );
  }
  return parsed as T;
}

/** A query string of the parameters that are set. */
export function query(params: Record<string, string | number | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") q.set(key, String(value));
  }
  const s = q.toString();
  return s === "" ? "" : `?${s}`;
}
