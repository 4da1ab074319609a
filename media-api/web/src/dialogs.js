// The dialogs of the conversation list: a new conversation, and a group's
// members and roles. Native modal dialogs: focus stays in them, Escape
// closes them.
import { h } from "./dom.js";

/** Starts a direct or group conversation; `onCreated` gets its document. */
export function newConversationDialog(app, onCreated) {
  const kind = h("select", { id: "new-kind" },
    h("option", { value: "direct" }, "Direct (one person)"),
    h("option", { value: "group" }, "Group"));
  const members = h("input", { id: "new-members", required: true, autocomplete: "off", "aria-describedby": "new-members-help" });
  const title = h("input", { id: "new-title", maxlength: "100" });
  const titleRow = h("div", { class: "row", hidden: true }, h("label", { for: "new-title" }, "Group title"), title);
  const error = h("p", { class: "form-error", role: "alert" });
  kind.addEventListener("change", () => {
    titleRow.hidden = kind.value !== "group";
    title.required = kind.value === "group";
  });
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": "new-conv-title" },
    h("form", {
      method: "dialog",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const users = members.value.split(/[\s,]+/).filter(Boolean);
        const body = { kind: kind.value, members: users };
        if (kind.value === "group") body.title = title.value.trim();
        try {
          const conv = await app.api.post("/v1/conversations", body);
          dialog.close();
          onCreated(conv);
        } catch (e) {
          error.textContent = e.message;
        }
      },
    },
    h("h2", { id: "new-conv-title" }, "New conversation"),
    h("div", { class: "row" }, h("label", { for: "new-kind" }, "Kind"), kind),
    h("div", { class: "row" }, h("label", { for: "new-members" }, "With"), members,
      h("p", { class: "hint", id: "new-members-help" }, "User names, separated by commas.")),
    titleRow,
    error,
    h("div", { class: "buttons" },
      h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"),
      h("button", { type: "submit", class: "primary" }, "Start"))));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  kind.focus();
}

/** A group's members and roles: add, remove, change roles, leave.
 * `onChanged` gets the conversation's new document. */
export function membersDialog(app, convId, title, onChanged) {
  const conv = app.conversations.get(convId);
  if (!conv) return;
  const me = conv.members.find((m) => m.user === app.user);
  const canManage = me && (me.role === "owner" || me.role === "admin");
  const list = h("ul", { class: "members" });
  const error = h("p", { class: "form-error", role: "alert" });
  const act = async (fn) => {
    try {
      // A removal answers 204: read the group again.
      const doc = (await fn()) ?? (await app.api.get(`/v1/conversations/${encodeURIComponent(convId)}`));
      // Gone now, not when its close event comes: the new one replaces it.
      dialog.close();
      dialog.remove();
      if (doc?.conversation_id) onChanged(doc);
      membersDialog(app, convId, title, onChanged);
    } catch (e) {
      error.textContent = e.message;
    }
  };
  const base = `/v1/conversations/${encodeURIComponent(convId)}/members`;
  for (const m of conv.members) {
    const role = h("select", { "aria-label": `Role of ${m.user}`, disabled: !(me?.role === "owner" && m.user !== app.user) },
      ["member", "admin", "owner"].map((r) => h("option", { value: r, selected: m.role === r }, r)));
    role.addEventListener("change", () => act(() => app.api.patch(`${base}/${encodeURIComponent(m.user)}`, { role: role.value })));
    list.append(h("li", {},
      h("span", {}, m.user === app.user ? `${m.user} (you)` : m.user),
      role,
      canManage && m.user !== app.user
        ? h("button", { type: "button", onclick: () => act(() => app.api.del(`${base}/${encodeURIComponent(m.user)}`)) }, `Remove ${m.user}`)
        : null));
  }
  const add = h("input", { id: "add-member", autocomplete: "off" });
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": "members-title" },
    h("h2", { id: "members-title" }, `Members of ${title}`),
    list,
    canManage ? h("form", {
      onsubmit: (ev) => {
        ev.preventDefault();
        act(() => app.api.post(base, { user: add.value.trim() }));
      },
    }, h("label", { for: "add-member" }, "Add a member"), add, h("button", { type: "submit" }, "Add")) : null,
    error,
    h("div", { class: "buttons" },
      h("button", { type: "button", onclick: async () => {
        if (!window.confirm("Leave this group?")) return;
        try {
          await app.api.del(`${base}/${encodeURIComponent(app.user)}`);
          dialog.close();
        } catch (e) {
          error.textContent = e.message;
        }
      } }, "Leave group"),
      h("button", { type: "button", onclick: () => dialog.close() }, "Close")));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}
