// One file's chunked, resumable upload through the native API:
//   hash (BLAKE3, for instant dedup) → open a session, or find the one this
//   browser opened for the same file before (a reload, a crash) and ask the
//   service what it holds → send the missing chunks, several at once →
//   complete. Chunks the service acknowledged are never sent again; a chunk
//   cut off (pause, network loss, reload) is sent again whole.
import { createBLAKE3 } from "hash-wasm";
import { ApiError } from "./api.js";

/** Chunk PUTs in flight per upload. */
const PARALLEL = 3;
/** Files up to this size are hashed before they are sent (instant dedup). */
const HASH_LIMIT = 1 << 30;
const READ_SLICE = 8 << 20;
/** How long the rate is averaged over. */
const RATE_WINDOW_MS = 4000;

function storageKey(user, file) {
  return `media.upload:${user}:${file.name}:${file.size}:${file.lastModified}`;
}

export class Upload {
  constructor(api, user, file, onChange) {
    this.api = api;
    this.user = user;
    this.file = file;
    this.onChange = onChange;
    this.state = "waiting"; // hashing, uploading, paused, completing, done, failed
    this.total = file.size;
    this.hashed = 0;
    this.acked = 0; // bytes of acknowledged chunks
    this.inflight = new Map(); // chunk → { xhr, loaded }
    this.samples = [];
    this.sentThisPage = 0;
    this.resumed = false;
    this.deduplicated = false;
    this.error = null;
    this.mediaId = null;
    this.session = null;
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.done.catch(() => {});
  }

  get sent() {
    let n = this.acked;
    for (const c of this.inflight.values()) n += c.loaded;
    return Math.min(n, this.total);
  }

  /** Bytes per second over the last few seconds. */
  get rate() {
    const now = performance.now();
    this.samples = this.samples.filter((s) => now - s.t <= RATE_WINDOW_MS);
    if (this.samples.length < 2) return 0;
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    const dt = (last.t - first.t) / 1000;
    return dt > 0.2 ? (last.n - first.n) / dt : 0;
  }

  get eta() {
    const rate = this.rate;
    return rate > 0 ? (this.total - this.sent) / rate : Infinity;
  }

  changed() {
    this.samples.push({ t: performance.now(), n: this.sentThisPage });
    this.onChange?.(this);
  }

  async start() {
    try {
      await this.open();
      if (this.state === "done") return;
      await this.sendMissing();
    } catch (e) {
      this.fail(e);
    }
  }

  async open() {
    let blake3;
    if (this.file.size > 0 && this.file.size <= HASH_LIMIT) {
      this.state = "hashing";
      this.changed();
      blake3 = await this.hash();
    }
    const key = storageKey(this.user, this.file);
    const saved = JSON.parse(localStorage.getItem(key) || "null");
    if (saved && (!blake3 || saved.blake3 === blake3)) {
      if (await this.adopt(saved.upload_id)) {
        this.resumed = this.state !== "done";
        return;
      }
      localStorage.removeItem(key);
    }
    const body = { file_name: this.file.name, size: this.file.size };
    if (blake3) body.blake3 = blake3;
    const answer = await this.api.post("/v1/uploads", body);
    if (answer.media_id) {
      this.deduplicated = true;
      return this.finish(answer.media_id, true);
    }
    this.session = { ...answer, missing_chunks: range(1, answer.total_chunks) };
    localStorage.setItem(key, JSON.stringify({ upload_id: answer.upload_id, blake3 }));
  }

  /** Takes up session `id` where the service has it: true when it can go on
   * (or is found done), false when it is gone. */
  async adopt(id) {
    let doc;
    try {
      doc = await this.api.get(`/v1/uploads/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.transient) throw e;
      return false;
    }
    if (doc.state === "completed" && doc.media_id) {
      localStorage.removeItem(storageKey(this.user, this.file));
      this.finish(doc.media_id, false);
      return true;
    }
    // A completion cut off midway is taken over by the next one.
    if (doc.state !== "receiving" && doc.state !== "completing") return false;
    this.session = doc;
    // Bytes of a chunk that was cut off count only once it is whole.
    this.acked = this.ackedOf(doc.received_chunks);
    return true;
  }

  async hash() {
    const hasher = await createBLAKE3();
    hasher.init();
    for (let at = 0; at < this.file.size; at += READ_SLICE) {
      const part = await this.file.slice(at, at + READ_SLICE).arrayBuffer();
      hasher.update(new Uint8Array(part));
      this.hashed = Math.min(at + READ_SLICE, this.file.size);
      this.onChange?.(this);
    }
    return hasher.digest("hex");
  }

  chunkLength(n) {
    const size = this.session.chunk_size;
    return Math.min(size, this.total - (n - 1) * size);
  }

  ackedOf(received) {
    return (received || []).reduce((sum, n) => sum + this.chunkLength(n), 0);
  }

  async sendMissing() {
    for (;;) {
      if (this.state === "paused" || this.state === "cancelled") return;
      this.state = "uploading";
      this.changed();
      const queue = [...(this.session.missing_chunks || [])];
      await Promise.all(
        Array.from({ length: Math.min(PARALLEL, queue.length) }, () => this.worker(queue)),
      );
      if (this.state !== "uploading") return;
      this.state = "completing";
      this.changed();
      try {
        const done = await this.api.post(
          `/v1/uploads/${encodeURIComponent(this.session.upload_id)}/complete`,
        );
        localStorage.removeItem(storageKey(this.user, this.file));
        return this.finish(done.media_id, done.deduplicated);
      } catch (e) {
        if (e.code === "chunks-missing") {
          this.session.missing_chunks = e.problem.missing_chunks || [];
          this.acked = this.total - this.session.missing_chunks.reduce(
            (sum, n) => sum + this.chunkLength(n), 0);
          continue;
        }
        if (e.code === "completion-in-progress" || e.transient) {
          await sleep(1000);
          continue;
        }
        throw e;
      }
    }
  }

  async worker(queue) {
    while (queue.length && this.state === "uploading") {
      const n = queue.shift();
      let wait = 500;
      for (;;) {
        try {
          await this.put(n);
          break;
        } catch (e) {
          if (this.state !== "uploading") {
            return;
          }
          if (e.code === "chunk-conflict" || !e.transient) throw e;
          await waitOnline();
          await sleep(Math.max(wait, e.retryAfter * 1000));
          wait = Math.min(wait * 2, 30_000);
        }
      }
    }
  }

  put(n) {
    const start = (n - 1) * this.session.chunk_size;
    const blob = this.file.slice(start, start + this.chunkLength(n));
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      const entry = { xhr, loaded: 0 };
      this.inflight.set(n, entry);
      xhr.open("PUT", `/v1/uploads/${encodeURIComponent(this.session.upload_id)}/chunks/${n}`);
      xhr.setRequestHeader("authorization", `Bearer ${this.api.token}`);
      xhr.upload.onprogress = (ev) => {
        this.sentThisPage += ev.loaded - entry.loaded;
        entry.loaded = ev.loaded;
        this.changed();
      };
      xhr.onload = () => {
        this.inflight.delete(n);
        if (xhr.status >= 200 && xhr.status < 300) {
          this.acked += blob.size;
          this.changed();
          resolve();
        } else {
          let problem = null;
          try {
            problem = JSON.parse(xhr.responseText);
          } catch {
            /* not a problem */
          }
          this.changed();
          reject(new ApiError(xhr.status, problem));
        }
      };
      xhr.onerror = () => {
        this.inflight.delete(n);
        this.changed();
        reject(new ApiError(0, { detail: "The connection was lost." }));
      };
      xhr.onabort = () => {
        this.inflight.delete(n);
        this.changed();
        reject(new ApiError(0, { detail: "stopped" }));
      };
      xhr.send(blob);
    });
  }

  /** Stops sending: chunks in flight are cut off and sent again on resume. */
  pause() {
    if (this.state !== "uploading" && this.state !== "hashing") return;
    this.state = "paused";
    for (const { xhr } of [...this.inflight.values()]) xhr.abort();
    this.changed();
  }

  /** Goes on from what the service holds now. */
  async resume() {
    if (this.state !== "paused" && this.state !== "failed") return;
    this.error = null;
    try {
      if (!this.session || !(await this.adopt(this.session.upload_id))) {
        // Never opened, or expired or aborted meanwhile: start over (which
        // may find the content done).
        this.session = null;
        localStorage.removeItem(storageKey(this.user, this.file));
        await this.open();
      }
      if (this.state === "done") return;
      this.state = "uploading";
      await this.sendMissing();
    } catch (e) {
      this.fail(e);
    }
  }

  /** Gives the upload up: the session is aborted on the service. */
  async cancel() {
    const was = this.state;
    this.state = "cancelled";
    for (const { xhr } of [...this.inflight.values()]) xhr.abort();
    localStorage.removeItem(storageKey(this.user, this.file));
    this.onChange?.(this);
    this.reject(new ApiError(0, { code: "cancelled", detail: "cancelled" }));
    if (this.session && was !== "done") {
      await this.api.del(`/v1/uploads/${encodeURIComponent(this.session.upload_id)}`).catch(() => {});
    }
  }

  finish(mediaId, deduplicated) {
    this.mediaId = mediaId;
    this.deduplicated = deduplicated;
    this.acked = this.total;
    this.state = "done";
    this.onChange?.(this);
    this.resolve(mediaId);
  }

  fail(e) {
    if (this.state === "paused" || this.state === "cancelled") return;
    this.state = "failed";
    this.error = e;
    this.onChange?.(this);
  }
}

function range(from, to) {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function waitOnline() {
  if (navigator.onLine) return Promise.resolve();
  return new Promise((r) => window.addEventListener("online", r, { once: true }));
}
