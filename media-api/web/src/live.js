// The realtime connection: the user's sync log live, with typing, presence,
// upload and media frames. It reconnects after any loss (backing off, and
// waiting for the browser to be online) and resumes from the cursor of the
// last event it handed on, so a page that was away gets exactly what it
// missed. Before the first event there is no cursor: a reconnect then asks
// the page to load its state again (`onGap`).

const PING_EVERY_MS = 20_000;
const PONG_WITHIN_MS = 10_000;

export class Live {
  constructor(token, { onFrame, onState, onGap }) {
    this.token = token;
    this.onFrame = onFrame;
    this.onState = onState;
    this.onGap = onGap;
    this.cursor = null;
    this.ws = null;
    this.backoff = 500;
    this.stopped = false;
    this.state = "connecting";
    this.connectedOnce = false;
    this.onOffline = () => this.drop("offline");
    this.onOnline = () => this.connect();
    window.addEventListener("offline", this.onOffline);
    window.addEventListener("online", this.onOnline);
  }

  setState(state) {
    this.state = state;
    this.onState?.(state);
  }

  connect() {
    if (this.stopped || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.retryTimer);
    if (!navigator.onLine) {
      this.setState("offline");
      return;
    }
    this.setState("connecting");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // The token goes in the query because browsers cannot set headers on a
    // WebSocket; the service logs request paths only, never the query.
    const ws = new WebSocket(
      `${scheme}//${location.host}/v1/realtime?access_token=${encodeURIComponent(this.token)}`,
    );
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 500;
      if (this.cursor) {
        ws.send(JSON.stringify({ type: "resume", cursor: this.cursor }));
      } else {
        // Nothing to resume from: the first frame starts the log reader.
        ws.send(JSON.stringify({ type: "ping" }));
        if (this.connectedOnce) this.onGap?.();
      }
      this.connectedOnce = true;
      this.setState("live");
      this.heartbeat();
    };
    ws.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      clearTimeout(this.pongTimer);
      if (frame.type === "event" && frame.cursor) this.cursor = frame.cursor;
      if (frame.type === "error" && frame.code === "sync-cursor-expired") {
        this.cursor = null;
        this.onGap?.();
      }
      this.onFrame?.(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      clearTimeout(this.pongTimer);
      if (this.stopped) return;
      if (ev.code === 4001) {
        this.setState("expired");
        return;
      }
      this.setState(navigator.onLine ? "reconnecting" : "offline");
      if (navigator.onLine) {
        this.retryTimer = setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 15_000);
      }
    };
  }

  heartbeat() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (!this.send({ type: "ping" })) return;
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => this.drop("no answer to ping"), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  /** Closes the socket now and lets `onclose` decide what follows. */
  drop() {
    const ws = this.ws;
    if (!ws) {
      if (!navigator.onLine) this.setState("offline");
      return;
    }
    ws.close();
    // A socket on a dead network may take long to say it closed.
    ws.onclose?.({ code: 1006 });
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("online", this.onOnline);
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.ws?.close();
  }
}
