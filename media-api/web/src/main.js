// The chat page: sign-in, the conversation list, a conversation (history,
// composer, attachments), the media gallery, all live over the WebSocket.
// It is also the reference client: every call it makes is a public API call
// (README "API"), with the token the user signed in with.
import { Api, MediaUrls, formatBytes, formatDuration, uuid } from "./api.js";
import { h, clear, toast, timeOf } from "./dom.js";
import { Live } from "./live.js";
import { Upload } from "./uploads.js";
import { renderAttachment, updateAttachment } from "./media.js";
import { membersDialog, newConversationDialog } from "./dialogs.js";
import { openGallery } from "./gallery.js";

const config = JSON.parse(document.getElementById("client-config")?.textContent || "{}");
const PAGE = 30;
const TYPING_SEND_EVERY_MS = 2500;
const TYPING_SHOWN_MS = 5000;

const app = {
  api: null,
  urls: null,
  live: null,
  user: null,
  conversations: new Map(),
  openId: null,
  messages: new Map(), // conversation → { bySeq: Map, oldest, hasOlder, loaded }
  typing: new Map(), // conversation → Map(user → timer)
  presence: new Map(), // user → { online, last_seen }
  pending: [], // attachments of the composer: Upload
  outbox: [], // messages waiting for their uploads
  replyTo: null,
  editing: null,
  lastTypingSent: 0,
  els: {},
};

// ---------------------------------------------------------------- sign-in

function tokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("access_token");
  if (token) {
    // Out of the address bar and the history at once.
    history.replaceState(null, "", location.pathname + location.search);
  }
  return token;
}

async function boot() {
  // A host app may hand the page its token: in the fragment (never sent to
  // any server) or by postMessage from the window that frames it.
  window.addEventListener("message", (ev) => {
    if (ev.source === window.parent && ev.source !== window && ev.data?.type === "media-api:token") {
      signIn(String(ev.data.token));
    }
  });
  const token = tokenFromFragment() || localStorage.getItem("media.token");
  if (token) {
    await signIn(token);
  } else {
    renderSignIn();
  }
}

function renderSignIn(message) {
  app.live?.stop();
  const root = document.getElementById("app");
  const error = h("p", { class: "form-error", id: "sign-in-error", role: "alert" }, message || "");
  const userInput = h("input", {
    id: "sign-in-user", name: "user", autocomplete: "username", required: true,
    maxlength: "128", "aria-describedby": "sign-in-help sign-in-error",
  });
  const tokenInput = h("input", { id: "sign-in-token", name: "token", autocomplete: "off", required: true });
  const forms = [];
  if (config.dev_sign_in) {
    forms.push(h("form", {
      class: "card", "aria-labelledby": "dev-title",
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const answer = await new Api(null).post("/dev/sign-in", { user: userInput.value.trim() });
          await signIn(answer.token);
        } catch (e) {
          error.textContent = e.message;
        }
      },
    },
    h("h2", { id: "dev-title" }, "Sign in"),
    h("label", { for: "sign-in-user" }, "User name"),
    userInput,
    h("p", { id: "sign-in-help", class: "hint" },
      "Development sign-in: any name, no password. This service has it on; production services give the page a token instead."),
    h("button", { type: "submit", class: "primary" }, "Sign in")));
  }
  forms.push(h("form", {
    class: "card", "aria-labelledby": "token-title",
    onsubmit: async (ev) => {
      ev.preventDefault();
      await signIn(tokenInput.value.trim());
    },
  },
  h("h2", { id: "token-title" }, config.dev_sign_in ? "Or use a token" : "Sign in with a token"),
  h("label", { for: "sign-in-token" }, "Access token"),
  tokenInput,
  h("p", { class: "hint" }, "Your app gives you one. It is kept in this browser only."),
  h("button", { type: "submit" }, "Use token")));
  clear(root, h("main", { class: "sign-in", id: "main" }, h("h1", {}, "Chat"), error, forms));
  (config.dev_sign_in ? userInput : tokenInput).focus();
}

async function signIn(token) {
  const api = new Api(token, () => signOut("Your session ended. Sign in again."));
  try {
    const me = await api.get("/v1/me");
    app.api = api;
    app.urls = new MediaUrls(api);
    app.user = me.user;
    localStorage.setItem("media.token", token);
    renderShell();
    startLive(token);
    await loadConversations();
  } catch (e) {
    localStorage.removeItem("media.token");
    renderSignIn(e.status === 401 ? "That token is not valid." : e.message);
  }
}

function signOut(message) {
  localStorage.removeItem("media.token");
  app.live?.stop();
  app.live = null;
  app.conversations.clear();
  app.messages.clear();
  app.openId = null;
  renderSignIn(message);
}

// ---------------------------------------------------------------- shell

function renderShell() {
  const root = document.getElementById("app");
  const status = h("span", { class: "conn", id: "connection", role: "status" }, "Connecting…");
  const list = h("ul", { class: "conversation-list", id: "conversation-list", "aria-label": "Conversations" });
  const main = h("main", { id: "main", class: "conversation", tabindex: "-1" },
    h("div", { class: "empty" }, h("p", {}, "Pick a conversation, or start a new one.")));
  app.els = { root, status, list, main };
  clear(root,
    h("div", { class: "layout" },
      h("header", { class: "topbar" },
        h("h1", {}, "Chat"),
        status,
        h("span", { class: "me", "aria-label": "Signed in as" }, app.user),
        h("button", { type: "button", onclick: showGallery }, "My media"),
        h("button", { type: "button", onclick: () => signOut() }, "Sign out")),
      h("nav", { class: "sidebar", "aria-label": "Conversations" },
        h("button", { type: "button", class: "primary", onclick: () => newConversationDialog(app, (conv) => {
          app.conversations.set(conv.conversation_id, conv);
          renderConversationList();
          openConversation(conv.conversation_id);
        }) }, "New conversation"),
        list),
      main));
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && app.api) markRead(app.openId);
});

function setConnection(state) {
  const label = {
    connecting: "Connecting…", live: "Online", reconnecting: "Reconnecting…",
    offline: "Offline", expired: "Session expired",
  }[state] || state;
  if (app.els.status) {
    app.els.status.textContent = label;
    app.els.status.dataset.state = state;
  }
  if (state === "expired") signOut("Your session ended. Sign in again.");
}

function startLive(token) {
  app.live?.stop();
  app.live = new Live(token, {
    onFrame: handleFrame,
    onState: (state) => {
      setConnection(state);
      if (state === "live") {
        flushReceipts();
        // A new socket follows nobody's presence yet.
        const open = app.conversations.get(app.openId);
        if (open) followPresence(open);
      }
    },
    onGap: () => refreshAll(),
  });
  app.live.connect();
}

async function refreshAll() {
  await loadConversations();
  if (app.openId) await loadLatest(app.openId);
}

// ---------------------------------------------------------------- conversations

function titleOf(conv) {
  if (conv.kind === "group") return conv.title || "Group";
  return conv.members.find((m) => m.user !== app.user)?.user || app.user;
}

function previewOf(message) {
  if (!message) return "No messages yet";
  if (message.deleted) return "Message deleted";
  if (message.type !== "text") return systemText(message);
  const who = message.sender === app.user ? "You: " : "";
  if (message.text) return who + message.text;
  const a = message.attachments?.[0];
  if (!a) return who;
  const kind = a.content_type?.split("/")[0];
  return who + ({ image: "Photo", video: "Video", audio: "Voice note" }[kind] || a.file_name);
}

function activityOf(conv) {
  return Date.parse(conv.last_message?.created_at || conv.created_at) || 0;
}

async function loadConversations() {
  const items = [];
  let cursor = null;
  do {
    const q = new URLSearchParams({ limit: "100" });
    if (cursor) q.set("cursor", cursor);
    const page = await app.api.get(`/v1/conversations?${q}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < 500);
  app.conversations.clear();
  for (const c of items) app.conversations.set(c.conversation_id, c);
  renderConversationList();
  for (const c of items) {
    if ((c.my_delivered_seq ?? 0) < c.last_seq) sendReceipt(c.conversation_id, { delivered_seq: c.last_seq });
  }
}

function renderConversationList() {
  const list = app.els.list;
  if (!list) return;
  const sorted = [...app.conversations.values()].sort((a, b) => activityOf(b) - activityOf(a));
  clear(list, sorted.length === 0
    ? h("li", { class: "hint" }, "No conversations yet.")
    : sorted.map((c) => {
      const unread = c.conversation_id === app.openId ? 0 : c.unread || 0;
      const title = titleOf(c);
      return h("li", {},
        h("button", {
          type: "button",
          class: `conversation-item${c.conversation_id === app.openId ? " active" : ""}`,
          "aria-current": c.conversation_id === app.openId ? "true" : undefined,
          dataset: { conversationId: c.conversation_id },
          "aria-label": `${title}${unread ? `, ${unread} unread` : ""}`,
          onclick: () => openConversation(c.conversation_id),
        },
        h("span", { class: "title" }, title),
        h("span", { class: "preview" }, previewOf(c.last_message)),
        unread ? h("span", { class: "badge", "aria-hidden": "true" }, String(unread)) : null));
    }));
}

// ---------------------------------------------------------------- one conversation

function store(convId) {
  let s = app.messages.get(convId);
  if (!s) {
    s = { bySeq: new Map(), oldest: null, hasOlder: true, loaded: false };
    app.messages.set(convId, s);
  }
  return s;
}

async function openConversation(convId) {
  app.openId = convId;
  app.replyTo = null;
  app.editing = null;
  const conv = app.conversations.get(convId);
  if (!conv) return;
  app.els.root.querySelector(".layout")?.classList.add("show-conversation");
  renderConversationList();
  renderConversation(conv);
  await loadLatest(convId);
  followPresence(conv);
  markRead(convId);
  app.els.input?.focus();
}

function renderConversation(conv) {
  const main = app.els.main;
  const log = h("ol", {
    class: "messages", id: "messages", role: "log", "aria-live": "polite",
    "aria-label": `Messages with ${titleOf(conv)}`,
  });
  const older = h("button", { type: "button", class: "older", onclick: () => loadOlder(conv.conversation_id) }, "Load older messages");
  const scroller = h("div", { class: "scroller" }, older, log);
  scroller.addEventListener("scroll", () => {
    if (scroller.scrollTop < 80) loadOlder(conv.conversation_id);
  });
  const typing = h("p", { class: "typing", id: "typing", "aria-live": "polite" });
  const presence = h("span", { class: "presence", id: "presence" });
  const tray = h("ul", { class: "tray", id: "upload-tray", "aria-label": "Attachments" });
  const replyBar = h("div", { class: "reply-bar", hidden: true });
  const input = h("textarea", {
    id: "composer-input", rows: 1, placeholder: "Message", "aria-label": "Message",
    onkeydown: (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        form.requestSubmit();
      } else if (ev.key === "Escape") {
        cancelReplyOrEdit();
      }
    },
    oninput: () => sendTyping(conv.conversation_id),
  });
  input.addEventListener("paste", (ev) => {
    const files = [...(ev.clipboardData?.files || [])];
    if (files.length) {
      ev.preventDefault();
      addFiles(files);
    }
  });
  const picker = h("input", {
    type: "file", multiple: true, id: "file-picker", class: "visually-hidden",
    onchange: () => {
      addFiles([...picker.files]);
      picker.value = "";
    },
  });
  const form = h("form", { class: "composer", onsubmit: (ev) => { ev.preventDefault(); submitComposer(); } },
    replyBar,
    tray,
    h("div", { class: "composer-row" },
      picker,
      h("label", { for: "file-picker", class: "button attach", title: "Attach files" },
        h("span", { class: "clip", "aria-hidden": "true" }), h("span", { class: "visually-hidden" }, "Attach files")),
      input,
      h("button", { type: "submit", class: "primary send" }, "Send")));
  const header = h("header", { class: "conversation-header" },
    h("button", { type: "button", class: "back", "aria-label": "Back to conversations", onclick: () => {
      // The list alone is on screen: nothing more is read until it opens again.
      const was = app.openId;
      app.openId = null;
      app.els.root.querySelector(".layout")?.classList.remove("show-conversation");
      renderConversationList();
      app.els.list.querySelector(`[data-conversation-id="${CSS.escape(was || "")}"]`)?.focus();
    } }, "←"),
    h("div", {},
      h("h2", { id: "conversation-title" }, titleOf(conv)),
      presence),
    conv.kind === "group" ? h("button", { type: "button", onclick: () => membersDialog(app, conv.conversation_id, titleOf(conv), (doc) => {
      app.conversations.set(doc.conversation_id, doc);
      renderPresence();
    }) }, "Members") : null);
  const drop = h("section", { class: "drop-zone", "aria-label": "Conversation" }, header, scroller, typing, form);
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (ev) => {
      if ([...(ev.dataTransfer?.types || [])].includes("Files")) {
        ev.preventDefault();
        drop.classList.add("dragging");
      }
    });
  }
  drop.addEventListener("dragleave", (ev) => {
    if (ev.target === drop) drop.classList.remove("dragging");
  });
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("dragging");
    addFiles([...(ev.dataTransfer?.files || [])]);
  });
  clear(main, drop);
  Object.assign(app.els, { log, scroller, older, typing, presence, tray, replyBar, input });
  app.pending = app.pending.filter((u) => u.state !== "done" || u.conversationId === conv.conversation_id);
  renderTray();
  renderPresence();
  renderTyping();
}

async function loadLatest(convId) {
  const s = store(convId);
  const page = await app.api.get(`/v1/conversations/${encodeURIComponent(convId)}/messages?limit=${PAGE}`);
  for (const m of page.items) s.bySeq.set(m.seq, m);
  if (!s.loaded) s.hasOlder = page.items.length === PAGE;
  s.loaded = true;
  const seqs = [...s.bySeq.keys()];
  s.oldest = seqs.length ? Math.min(...seqs) : null;
  if (s.oldest !== null && s.oldest <= 1) s.hasOlder = false;
  if (app.openId === convId) {
    renderMessages(convId);
    scrollToEnd();
  }
}

async function loadOlder(convId) {
  const s = store(convId);
  if (!s.hasOlder || s.loadingOlder || s.oldest === null) return;
  s.loadingOlder = true;
  try {
    const page = await app.api.get(
      `/v1/conversations/${encodeURIComponent(convId)}/messages?before_seq=${s.oldest}&limit=${PAGE}`);
    for (const m of page.items) s.bySeq.set(m.seq, m);
    if (page.items.length < PAGE) s.hasOlder = false;
    const seqs = [...s.bySeq.keys()];
    s.oldest = Math.min(...seqs);
    if (s.oldest <= 1) s.hasOlder = false;
    if (app.openId === convId) {
      const scroller = app.els.scroller;
      const before = scroller.scrollHeight - scroller.scrollTop;
      renderMessages(convId);
      scroller.scrollTop = scroller.scrollHeight - before;
    }
  } catch (e) {
    toast(e.message, "error");
  } finally {
    s.loadingOlder = false;
  }
}

function renderMessages(convId) {
  const s = store(convId);
  const log = app.els.log;
  const seqs = [...s.bySeq.keys()].sort((a, b) => a - b);
  clear(log, seqs.map((seq) => renderMessage(convId, s.bySeq.get(seq))));
  app.els.older.hidden = !s.hasOlder;
}

function systemText(m) {
  const who = m.sender === app.user ? "You" : m.sender;
  const member = m.member === app.user ? "you" : m.member;
  switch (m.type) {
    case "member_added": return `${who} added ${member}`;
    case "member_removed": return `${who} removed ${member}`;
    case "member_left": return `${member || who} left`;
    case "role_changed": return `${who} made ${member} ${m.role}`;
    case "conversation_created": return `${who} started the conversation`;
    default: return m.type.replace(/_/g, " ");
  }
}

const STATUS_LABEL = { sent: "Sent", delivered: "Delivered", read: "Read" };

function renderMessage(convId, m) {
  const id = `m-${m.seq}`;
  if (m.type !== "text") {
    return h("li", { class: "system", id, dataset: { seq: m.seq } }, systemText(m));
  }
  const conv = app.conversations.get(convId);
  const mine = m.sender === app.user;
  const parts = [];
  if (conv?.kind === "group" && !mine) parts.push(h("span", { class: "sender" }, m.sender));
  if (m.reply_to_seq) {
    const quoted = store(convId).bySeq.get(m.reply_to_seq);
    parts.push(h("a", { class: "quote", href: `#m-${m.reply_to_seq}` },
      h("span", { class: "visually-hidden" }, "In reply to "),
      quoted ? `${quoted.sender}: ${quoted.deleted ? "Message deleted" : quoted.text || previewOf(quoted)}` : `message ${m.reply_to_seq}`));
  }
  if (m.forwarded) parts.push(h("span", { class: "forwarded" }, "Forwarded"));
  if (m.deleted) {
    parts.push(h("p", { class: "text deleted" }, "This message was deleted."));
  } else {
    if (m.attachments?.length) {
      parts.push(h("div", { class: "attachments" },
        m.attachments.map((a) => renderAttachment(app, a))));
    }
    if (m.text) parts.push(h("p", { class: "text" }, m.text));
  }
  const foot = h("span", { class: "foot" },
    h("time", { datetime: m.created_at }, timeOf(m.created_at)),
    m.edited_at ? h("span", { class: "edited" }, " · edited") : null,
    mine && m.status ? h("span", {
      class: `ticks ${m.status}`, role: "img", "aria-label": STATUS_LABEL[m.status] || m.status,
      title: STATUS_LABEL[m.status] || m.status,
    }, m.status === "sent" ? "✓" : "✓✓") : null);
  parts.push(foot);
  const actions = m.deleted ? null : h("div", { class: "actions" },
    h("button", { type: "button", onclick: () => startReply(convId, m) }, "Reply"),
    mine ? h("button", { type: "button", onclick: () => startEdit(convId, m) }, "Edit") : null,
    mine ? h("button", { type: "button", onclick: () => deleteMessage(convId, m) }, "Delete") : null);
  return h("li", {
    class: `message${mine ? " mine" : ""}`, id,
    dataset: { seq: m.seq, sender: m.sender, status: (mine && m.status) || "" },
    "aria-label": `${mine ? "You" : m.sender}, ${timeOf(m.created_at)}`,
  }, h("div", { class: "bubble" }, parts), actions);
}

function upsertMessage(m) {
  const s = store(m.conversation_id);
  const old = s.bySeq.get(m.seq);
  // A sender's view carries `status`; an event's copy of it may not.
  if (old?.status && !m.status) m = { ...m, status: old.status };
  s.bySeq.set(m.seq, m);
  if (s.oldest === null || m.seq < s.oldest) s.oldest = m.seq;
  if (app.openId !== m.conversation_id || !app.els.log) return;
  const el = renderMessage(m.conversation_id, m);
  const existing = app.els.log.querySelector(`[data-seq="${m.seq}"]`);
  if (existing) {
    existing.replaceWith(el);
    return;
  }
  const nearEnd = isNearEnd();
  const after = [...app.els.log.children].find((li) => Number(li.dataset.seq) > m.seq);
  app.els.log.insertBefore(el, after || null);
  if (nearEnd || m.sender === app.user) scrollToEnd();
}

function isNearEnd() {
  const s = app.els.scroller;
  return !s || s.scrollHeight - s.scrollTop - s.clientHeight < 120;
}

function scrollToEnd() {
  const s = app.els.scroller;
  if (s) s.scrollTop = s.scrollHeight;
}

// ---------------------------------------------------------------- composer

function startReply(convId, m) {
  app.replyTo = m.seq;
  app.editing = null;
  const bar = app.els.replyBar;
  clear(bar,
    h("span", {}, `Replying to ${m.sender === app.user ? "yourself" : m.sender}: ${m.text || previewOf(m)}`),
    h("button", { type: "button", "aria-label": "Cancel reply", onclick: cancelReplyOrEdit }, "✕"));
  bar.hidden = false;
  app.els.input.focus();
}

function startEdit(convId, m) {
  app.editing = m.seq;
  app.replyTo = null;
  const bar = app.els.replyBar;
  clear(bar, h("span", {}, "Editing your message"),
    h("button", { type: "button", "aria-label": "Cancel editing", onclick: cancelReplyOrEdit }, "✕"));
  bar.hidden = false;
  app.els.input.value = m.text || "";
  app.els.input.focus();
}

function cancelReplyOrEdit() {
  if (app.editing) app.els.input.value = "";
  app.replyTo = null;
  app.editing = null;
  if (app.els.replyBar) app.els.replyBar.hidden = true;
}

async function deleteMessage(convId, m) {
  if (!window.confirm("Delete this message for everyone?")) return;
  try {
    const doc = await app.api.del(`/v1/conversations/${encodeURIComponent(convId)}/messages/${m.seq}`);
    if (doc) upsertMessage(doc);
  } catch (e) {
    toast(e.message, "error");
  }
}

function addFiles(files) {
  if (!app.openId) return;
  for (const file of files) {
    const upload = new Upload(app.api, app.user, file, () => renderTrayItem(upload));
    upload.conversationId = app.openId;
    app.pending.push(upload);
    upload.start();
  }
  renderTray();
}

function renderTray() {
  const tray = app.els.tray;
  if (!tray) return;
  const shown = [
    ...app.pending.filter((u) => u.conversationId === app.openId),
    ...app.outbox.filter((o) => o.conversationId === app.openId).flatMap((o) => o.uploads.filter((u) => u.state !== "done")),
  ];
  clear(tray, shown.map((u) => {
    u.el = h("li", { class: "upload" });
    fillTrayItem(u);
    return u.el;
  }));
}

function renderTrayItem(u) {
  if (!u.el || !u.el.isConnected) return;
  fillTrayItem(u);
}

function fillTrayItem(u) {
  const percent = u.total ? Math.floor((100 * (u.state === "hashing" ? u.hashed : u.sent)) / u.total) : 100;
  let detail;
  switch (u.state) {
    case "hashing": detail = `Checking… ${percent}%`; break;
    case "uploading": {
      const rate = u.rate;
      detail = `${formatBytes(u.sent)} of ${formatBytes(u.total)}` +
        (rate > 0 ? ` · ${formatBytes(rate)}/s · ${formatDuration(u.eta)} left` : "") +
        (u.resumed ? " · resumed" : "");
      break;
    }
    case "paused": detail = `Paused at ${formatBytes(u.sent)} of ${formatBytes(u.total)}`; break;
    case "completing": detail = "Finishing…"; break;
    case "done":
      detail = u.deduplicated ? "Already uploaded" : `Uploaded ${formatBytes(u.total)}${u.resumed ? " · resumed" : ""}`;
      break;
    case "failed": detail = `Failed: ${u.error?.message || "unknown error"}`; break;
    default: detail = "Waiting…";
  }
  const label = `${u.file.name}`;
  clear(u.el,
    h("span", { class: "name" }, label),
    h("progress", {
      max: 100, value: u.state === "done" ? 100 : percent,
      "aria-label": `Upload of ${label}`,
    }),
    h("span", { class: "detail", dataset: { state: u.state } }, detail),
    u.state === "uploading" || u.state === "hashing"
      ? h("button", { type: "button", onclick: () => u.pause(), "aria-label": `Pause ${label}` }, "Pause") : null,
    u.state === "paused" || u.state === "failed"
      ? h("button", { type: "button", onclick: () => u.resume(), "aria-label": `Resume ${label}` }, "Resume") : null,
    u.state !== "done"
      ? h("button", { type: "button", onclick: () => { u.cancel(); removeUpload(u); }, "aria-label": `Remove ${label}` }, "✕") : null);
  u.el.dataset.state = u.state;
}

function removeUpload(u) {
  app.pending = app.pending.filter((p) => p !== u);
  for (const o of app.outbox) o.uploads = o.uploads.filter((p) => p !== u);
  renderTray();
}

async function submitComposer() {
  const convId = app.openId;
  const text = app.els.input.value.trim();
  if (app.editing) {
    const seq = app.editing;
    try {
      const doc = await app.api.patch(`/v1/conversations/${encodeURIComponent(convId)}/messages/${seq}`, { text });
      upsertMessage(doc);
      app.els.input.value = "";
      cancelReplyOrEdit();
    } catch (e) {
      toast(e.message, "error");
    }
    return;
  }
  const uploads = app.pending.filter((u) => u.conversationId === convId);
  if (!text && uploads.length === 0) return;
  const entry = {
    conversationId: convId,
    clientMessageId: uuid(),
    text,
    replyTo: app.replyTo,
    uploads,
  };
  app.pending = app.pending.filter((u) => u.conversationId !== convId);
  app.outbox.push(entry);
  app.els.input.value = "";
  cancelReplyOrEdit();
  renderTray();
  await sendWhenReady(entry);
}

/** Posts a message once its uploads are done; retried until the service takes it. */
async function sendWhenReady(entry) {
  const media = [];
  for (const u of entry.uploads) {
    try {
      media.push(await u.done);
    } catch {
      /* cancelled: sent without it */
    }
  }
  if (!entry.text && media.length === 0) {
    app.outbox = app.outbox.filter((o) => o !== entry);
    return;
  }
  const body = { client_message_id: entry.clientMessageId, attachments: media.map((media_id) => ({ media_id })) };
  if (entry.text) body.text = entry.text;
  if (entry.replyTo) body.reply_to_seq = entry.replyTo;
  let wait = 500;
  for (;;) {
    try {
      const doc = await app.api.post(`/v1/conversations/${encodeURIComponent(entry.conversationId)}/messages`, body);
      app.outbox = app.outbox.filter((o) => o !== entry);
      upsertMessage(doc);
      bumpConversation(doc, false);
      renderTray();
      return;
    } catch (e) {
      if (!e.transient) {
        app.outbox = app.outbox.filter((o) => o !== entry);
        toast(`Not sent: ${e.message}`, "error");
        if (!app.els.input.value) app.els.input.value = entry.text;
        return;
      }
      // The same client_message_id again: the service answers the first.
      await new Promise((r) => setTimeout(r, Math.max(wait, e.retryAfter * 1000)));
      wait = Math.min(wait * 2, 15_000);
    }
  }
}

function sendTyping(convId) {
  const now = Date.now();
  if (now - app.lastTypingSent < TYPING_SEND_EVERY_MS) return;
  app.lastTypingSent = now;
  app.live?.send({ type: "typing", conversation_id: convId });
}

// ---------------------------------------------------------------- receipts

const receiptTimers = new Map();
const unsentReceipts = new Map(); // conversation → marks, while the socket is down

/** Moves the caller's marks; over the socket when it is open, else by HTTP
 * when the browser is online, else once it is back. */
function sendReceipt(convId, marks) {
  const prev = receiptTimers.get(convId) || { marks: {} };
  clearTimeout(prev.timer);
  const merged = { ...prev.marks };
  for (const [k, v] of Object.entries(marks)) merged[k] = Math.max(merged[k] || 0, v);
  const timer = setTimeout(() => {
    receiptTimers.delete(convId);
    if (app.live?.send({ type: "receipt", conversation_id: convId, ...merged })) return;
    if (navigator.onLine) {
      app.api.post(`/v1/conversations/${encodeURIComponent(convId)}/receipts`, merged)
        .catch(() => unsentReceipts.set(convId, merged));
    } else {
      unsentReceipts.set(convId, merged);
    }
  }, 150);
  receiptTimers.set(convId, { marks: merged, timer });
}

function flushReceipts() {
  const waiting = [...unsentReceipts.entries()];
  unsentReceipts.clear();
  for (const [convId, marks] of waiting) sendReceipt(convId, marks);
}

function markRead(convId) {
  if (!convId || document.visibilityState !== "visible") return;
  const conv = app.conversations.get(convId);
  if (!conv) return;
  if ((conv.my_read_seq ?? 0) < conv.last_seq) {
    conv.my_read_seq = conv.last_seq;
    sendReceipt(convId, { read_seq: conv.last_seq });
  }
  if (conv.unread) {
    conv.unread = 0;
    renderConversationList();
  }
}

const statusTimers = new Map();

/** Someone's marks moved: the statuses of the caller's own messages may have. */
function refreshStatuses(convId) {
  const s = app.messages.get(convId);
  if (!s || !s.loaded) return;
  clearTimeout(statusTimers.get(convId));
  statusTimers.set(convId, setTimeout(async () => {
    const pending = [...s.bySeq.values()].filter((m) => m.sender === app.user && m.status && m.status !== "read");
    if (!pending.length) return;
    const from = Math.min(...pending.map((m) => m.seq)) - 1;
    try {
      const page = await app.api.get(
        `/v1/conversations/${encodeURIComponent(convId)}/messages?after_seq=${from}&limit=100`);
      for (const m of page.items) {
        const old = s.bySeq.get(m.seq);
        if (old && old.status !== m.status) upsertMessage(m);
      }
    } catch {
      /* the next receipt tries again */
    }
  }, 200));
}

// ---------------------------------------------------------------- live frames

function handleFrame(frame) {
  switch (frame.type) {
    case "event": return handleEvent(frame.event);
    case "typing": return showTyping(frame.conversation_id, frame.user);
    case "presence":
      app.presence.set(frame.user, { online: frame.online, last_seen: frame.last_seen });
      return renderPresence();
    case "media_ready": return mediaReady(frame);
    case "error":
      if (frame.code !== "presence-not-shared") console.warn("realtime:", frame.code, frame.detail);
      return undefined;
    default: return undefined;
  }
}

function bumpConversation(m, fromOthers) {
  const conv = app.conversations.get(m.conversation_id);
  if (!conv) return;
  if (m.seq >= (conv.last_seq ?? 0)) {
    conv.last_seq = m.seq;
    conv.last_message = m;
  }
  if (fromOthers) {
    const open = app.openId === m.conversation_id && document.visibilityState === "visible";
    if (open) markRead(m.conversation_id);
    else {
      conv.unread = (conv.unread || 0) + 1;
      sendReceipt(m.conversation_id, { delivered_seq: m.seq });
    }
  }
  renderConversationList();
}

async function handleEvent(ev) {
  switch (ev.kind) {
    case "conversation_created":
    case "member_added":
    case "member_removed":
    case "role_changed": {
      if (ev.kind === "member_removed" && ev.member === app.user) {
        app.conversations.delete(ev.conversation_id);
        if (app.openId === ev.conversation_id) {
          app.openId = null;
          clear(app.els.main, h("div", { class: "empty" }, h("p", {}, "You are no longer in that conversation.")));
        }
        renderConversationList();
        return;
      }
      try {
        const conv = await app.api.get(`/v1/conversations/${encodeURIComponent(ev.conversation_id)}`);
        app.conversations.set(conv.conversation_id, conv);
        renderConversationList();
        if (app.openId === conv.conversation_id) {
          followPresence(conv);
          document.getElementById("conversation-title").textContent = titleOf(conv);
        }
      } catch {
        /* gone again */
      }
      if (ev.message) handleMessage(ev.message);
      return;
    }
    case "message_created":
    case "message_edited":
    case "message_deleted":
      if (ev.message) handleMessage(ev.message, ev.kind === "message_created");
      return;
    case "receipt":
      if (ev.receipt && ev.receipt.user !== app.user) refreshStatuses(ev.conversation_id);
      return;
    default:
  }
}

function handleMessage(m, created = false) {
  const s = store(m.conversation_id);
  const known = s.bySeq.has(m.seq);
  if (s.loaded || app.openId === m.conversation_id) upsertMessage(m);
  if (created && !known) {
    bumpConversation(m, m.sender !== app.user);
    clearTyping(m.conversation_id, m.sender);
  } else {
    const conv = app.conversations.get(m.conversation_id);
    if (conv?.last_message?.seq === m.seq) {
      conv.last_message = m;
      renderConversationList();
    }
  }
}

function showTyping(convId, user) {
  if (user === app.user) return;
  let users = app.typing.get(convId);
  if (!users) app.typing.set(convId, (users = new Map()));
  clearTimeout(users.get(user));
  users.set(user, setTimeout(() => clearTyping(convId, user), TYPING_SHOWN_MS));
  renderTyping();
}

function clearTyping(convId, user) {
  const users = app.typing.get(convId);
  if (!users?.has(user)) return;
  clearTimeout(users.get(user));
  users.delete(user);
  renderTyping();
}

function renderTyping() {
  const el = app.els.typing;
  if (!el) return;
  const users = [...(app.typing.get(app.openId)?.keys() || [])];
  el.textContent = users.length === 0 ? "" :
    users.length === 1 ? `${users[0]} is typing…` : `${users.join(", ")} are typing…`;
}

function followPresence(conv) {
  const others = conv.members.map((m) => m.user).filter((u) => u !== app.user).slice(0, 50);
  if (others.length) app.live?.send({ type: "subscribe_presence", users: others });
  renderPresence();
}

function renderPresence() {
  const el = app.els.presence;
  const conv = app.conversations.get(app.openId);
  if (!el || !conv) return;
  const others = conv.members.map((m) => m.user).filter((u) => u !== app.user);
  if (conv.kind === "direct") {
    const p = app.presence.get(others[0]);
    el.textContent = !p ? "" : p.online ? "online" : p.last_seen ? `last seen ${timeOf(p.last_seen)}` : "offline";
    el.dataset.online = p?.online ? "true" : "false";
  } else {
    const online = others.filter((u) => app.presence.get(u)?.online).length;
    el.textContent = `${conv.members.length} members${online ? `, ${online} online` : ""}`;
  }
}

async function mediaReady(frame) {
  const s = app.messages.get(frame.conversation_id);
  const m = s?.bySeq.get(frame.seq);
  if (!m) return;
  let doc = null;
  try {
    doc = await app.api.get(`/v1/media/${encodeURIComponent(frame.media_id)}`);
  } catch {
    doc = { status: frame.status, variants: frame.variants };
  }
  const attachments = m.attachments.map((a) => (a.media_id === frame.media_id ? { ...a, ...doc, original: a.original } : a));
  const updated = { ...m, attachments };
  s.bySeq.set(m.seq, updated);
  const a = attachments.find((x) => x.media_id === frame.media_id);
  if (app.openId === frame.conversation_id) updateAttachment(app, a);
}

// ---------------------------------------------------------------- my media

function showGallery() {
  app.openId = null;
  renderConversationList();
  const layout = app.els.root.querySelector(".layout");
  layout?.classList.add("show-conversation");
  Object.assign(app.els, { log: null, scroller: null, tray: null, input: null });
  openGallery(app, app.els.main, () => layout?.classList.remove("show-conversation"));
}

// ---------------------------------------------------------------- start

window.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && document.querySelector("dialog[open]") === null) cancelReplyOrEdit();
});
boot().catch((e) => {
  console.error(e);
  renderSignIn(e.message);
});
