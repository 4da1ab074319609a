// Attachments inline: an image's thumbnail in a box of its aspect ratio
// (kept while it processes, so nothing jumps when it arrives), the viewer
// with the `preview` variant, a video's poster and its `h264_720p`
// transcode (the browser seeks with Range requests on the download URL),
// a voice note's `opus` variant, anything else as a download. A media item
// whose processing failed is offered as its original, to download.
import { formatBytes } from "./api.js";
import { h, clear, toast } from "./dom.js";

function variant(a, name) {
  return (a.variants || []).find((v) => v.name === name);
}

function kindOf(a) {
  const top = (a.content_type || "").split("/")[0];
  return ["image", "video", "audio"].includes(top) ? top : "file";
}

function ratioOf(a) {
  const w = Number(a.width);
  const hgt = Number(a.height);
  if (w > 0 && hgt > 0) return `${w} / ${hgt}`;
  const v = variant(a, "thumb") || variant(a, "poster");
  if (v?.width && v?.height) return `${v.width} / ${v.height}`;
  return null;
}

export function renderAttachment(app, a, { compact = false } = {}) {
  const figure = h("figure", {
    class: `attachment ${kindOf(a)}${compact ? " compact" : ""}`,
    dataset: { mediaId: a.media_id, status: a.status || "", kind: kindOf(a) },
  });
  fill(app, figure, a, compact);
  return figure;
}

/** A media item changed (its processing finished): every place it shows. */
export function updateAttachment(app, a) {
  if (!a) return;
  for (const figure of document.querySelectorAll(`figure[data-media-id="${CSS.escape(a.media_id)}"]`)) {
    figure.dataset.status = a.status || "";
    fill(app, figure, a, figure.classList.contains("compact"));
  }
}

function fill(app, figure, a, compact) {
  const name = a.file_name || "file";
  const caption = a.caption ? h("figcaption", {}, a.caption) : null;
  const failed = a.status === "failed" || a.blocked;
  const kind = kindOf(a);
  if (failed || kind === "file") {
    clear(figure, downloadButton(app, a), caption,
      failed && a.blocked ? h("p", { class: "hint" }, "Blocked by the service's operators.") :
        failed ? h("p", { class: "hint" }, "Could not be processed; the original is here to download.") : null);
    return;
  }
  const ratio = ratioOf(a);
  const box = h("div", {
    class: `media-box${ratio ? "" : " unknown-ratio"}`,
    style: ratio ? { aspectRatio: ratio } : {},
  });
  if (a.status !== "ready") {
    box.append(h("span", { class: "processing", role: "status" },
      kind === "video" ? "Video processing…" : kind === "audio" ? "Voice note processing…" : "Processing…"));
    clear(figure, box, caption);
    return;
  }
  if (kind === "image") {
    const img = h("img", { alt: a.caption || name, decoding: "async" });
    const thumb = variant(a, "thumb") ? "thumb" : undefined;
    app.urls.get(a.media_id, thumb).then((url) => { img.src = url; }).catch(() => {});
    img.addEventListener("load", () => {
      if (!ratio && img.naturalWidth) box.style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
      box.classList.remove("unknown-ratio");
      figure.dataset.loaded = "true";
    });
    const open = h("button", { type: "button", class: "open-media", "aria-label": `Open ${name}` }, img);
    open.addEventListener("click", () => openViewer(app, a));
    box.append(open);
    clear(figure, box, caption);
  } else if (kind === "video") {
    const video = h("video", {
      controls: true, preload: "metadata", playsInline: true,
      "aria-label": a.caption || name,
    });
    const source = variant(a, "h264_720p") ? "h264_720p" : undefined;
    if (variant(a, "poster")) {
      app.urls.get(a.media_id, "poster").then((url) => { video.poster = url; }).catch(() => {});
    }
    app.urls.get(a.media_id, source).then((url) => { video.src = url; }).catch(() => {});
    box.append(video);
    clear(figure, box, caption, compact ? null : downloadButton(app, a, "Download original"));
  } else {
    const audio = h("audio", { controls: true, preload: "metadata", "aria-label": a.caption || name });
    const source = variant(a, "opus") ? "opus" : undefined;
    app.urls.get(a.media_id, source).then((url) => { audio.src = url; }).catch(() => {});
    clear(figure, audio, caption);
  }
}

function downloadButton(app, a, label) {
  const name = a.file_name || "file";
  return h("button", {
    type: "button", class: "download",
    onclick: async () => {
      try {
        const url = await app.urls.get(a.media_id);
        const link = h("a", { href: url, download: name, hidden: true });
        document.body.append(link);
        link.click();
        link.remove();
      } catch (e) {
        toast(e.message, "error");
      }
    },
  },
  h("span", { "aria-hidden": "true" }, "⬇ "),
  label || name,
  h("span", { class: "size" }, ` (${formatBytes(a.size)})`));
}

/** The image viewer: the `preview` variant, larger, in a modal dialog. */
export function openViewer(app, a) {
  const name = a.file_name || "image";
  const img = h("img", { alt: a.caption || name });
  const preview = variant(a, "preview") ? "preview" : undefined;
  app.urls.get(a.media_id, preview).then((url) => { img.src = url; }).catch((e) => toast(e.message, "error"));
  const dialog = h("dialog", { class: "viewer", "aria-label": name },
    h("div", { class: "viewer-bar" },
      h("span", {}, name),
      downloadButton(app, a, "Download original"),
      h("button", { type: "button", class: "close", "aria-label": "Close viewer", onclick: () => dialog.close() }, "✕")),
    img,
    a.caption ? h("p", {}, a.caption) : null);
  dialog.addEventListener("close", () => dialog.remove());
  dialog.addEventListener("click", (ev) => {
    if (ev.target === dialog) dialog.close();
  });
  document.body.append(dialog);
  dialog.showModal();
}
