// The HTTP API as the page uses it: JSON calls with the bearer token, and
// problems (RFC 9457) turned into errors that carry their stable `code`.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code || (status === 0 ? "network" : `http-${status}`);
    this.problem = problem || {};
  }
  /** Worth trying again later: the network, a timeout, a rate, a backend. */
  get transient() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
  /** Seconds the service asked us to wait, if it did. */
  get retryAfter() {
    return Number(this.problem.retry_after) || 0;
  }
}

export class Api {
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async call(method, path, body, { headers = {}, raw = false } = {}) {
    const init = { method, headers: { ...headers } };
    if (this.token) init.headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, { detail: "The service cannot be reached." });
    }
    if (response.status === 401 && this.onUnauthorized) this.onUnauthorized();
    if (!response.ok) {
      let problem = null;
      try {
        problem = await response.json();
      } catch {
        /* not a problem document */
      }
      throw new ApiError(response.status, problem);
    }
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  get(path) { return this.call("GET", path); }
  post(path, body) { return this.call("POST", path, body ?? {}); }
  patch(path, body) { return this.call("PATCH", path, body); }
  del(path) { return this.call("DELETE", path); }
}

/** A random UUID, also where `crypto.randomUUID` is missing (plain HTTP). */
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Presigned download URLs, asked once and kept until shortly before they expire. */
export class MediaUrls {
  constructor(api) {
    this.api = api;
    this.cache = new Map();
  }
  async get(mediaId, variant) {
    const key = `${mediaId}/${variant || ""}`;
    const hit = this.cache.get(key);
    if (hit && hit.until > Date.now()) return hit.url;
    const q = new URLSearchParams({ redirect: "false" });
    if (variant) q.set("variant", variant);
    const answer = await this.api.get(`/v1/media/${encodeURIComponent(mediaId)}/content?${q}`);
    const until = Date.parse(answer.expires_at) - 60_000;
    this.cache.set(key, { url: answer.url, until: Number.isFinite(until) ? until : Date.now() + 60_000 });
    return answer.url;
  }
}

export function formatBytes(n) {
  if (!Number.isFinite(n)) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  seconds = Math.round(seconds);
  if (seconds < 60) return `${seconds} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${seconds % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
