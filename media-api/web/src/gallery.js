// My media: the user's uploads as a gallery.
import { formatBytes } from "./api.js";
import { h, clear, toast, timeOf } from "./dom.js";
import { renderAttachment } from "./media.js";

/** My media in `main`: the user's uploads, newest first, with thumbnails,
 * copy link and delete. `onBack` returns to the conversation list. */
export async function openGallery(app, main, onBack) {
  const grid = h("ul", { class: "gallery", id: "gallery", "aria-label": "My media" });
  const more = h("button", { type: "button", hidden: true }, "Load more");
  clear(main, h("section", { class: "gallery-page", "aria-labelledby": "gallery-title" },
    h("header", { class: "conversation-header" },
      h("button", { type: "button", class: "back", "aria-label": "Back to conversations", onclick: onBack }, "←"),
      h("h2", { id: "gallery-title" }, "My media")),
    grid, more));
  let cursor = null;
  const load = async () => {
    const q = new URLSearchParams({ limit: "48" });
    if (cursor) q.set("cursor", cursor);
    try {
      const page = await app.api.get(`/v1/media?${q}`);
      for (const item of page.items) grid.append(galleryItem(app, item));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      if (!grid.children.length) grid.append(h("li", { class: "hint" }, "Nothing uploaded yet."));
    } catch (e) {
      toast(e.message, "error");
    }
  };
  more.addEventListener("click", load);
  main.focus();
  await load();
}

function galleryItem(app, item) {
  const li = h("li", { class: "gallery-item", dataset: { mediaId: item.media_id } });
  const figure = renderAttachment(app, { ...item, original: "exact" }, { compact: true });
  li.append(figure,
    h("span", { class: "name" }, item.file_name),
    h("span", { class: "hint" }, `${formatBytes(item.size)} · ${timeOf(item.created_at)}`),
    h("div", { class: "buttons" },
      h("button", { type: "button", "aria-label": `Copy link to ${item.file_name}`, onclick: async () => {
        try {
          const url = new URL(await app.urls.get(item.media_id), location.href).href;
          await navigator.clipboard.writeText(url);
          toast("Link copied. It works for about an hour.");
        } catch (e) {
          toast(`Could not copy the link: ${e.message}`, "error");
        }
      } }, "Copy link"),
      h("button", { type: "button", "aria-label": `Delete ${item.file_name}`, onclick: async () => {
        if (!window.confirm(`Delete ${item.file_name}? Messages it was sent in keep it.`)) return;
        try {
          await app.api.del(`/v1/media/${encodeURIComponent(item.media_id)}`);
          li.remove();
          toast(`${item.file_name} deleted.`);
        } catch (e) {
          toast(e.message, "error");
        }
      } }, "Delete")));
  return li;
}
