// The web client as people use it, in Debian's Chromium: two people in a
// group exchanging a photo and a video, a device that goes offline and comes
// back, a large upload cut off by a reload and resumed, keyboard-only use,
// replies, edits, deletes, typing, presence, scroll-back and the gallery.
// No console error may appear anywhere in the suite.
import { test, expect } from "@playwright/test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";

const BASE = process.env.MEDIA_URL || "http://127.0.0.1:8080";
const FIXTURES = process.env.MEDIA_FIXTURES;
const SHOTS = process.env.MEDIA_SCREENSHOTS || "screenshots";
const ADMIN = process.env.MEDIA_ADMIN_TOKEN;
const MIB = 1024 * 1024;

const errors = [];

function watch(page, who) {
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`${who}: console error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => errors.push(`${who}: uncaught: ${err.message}`));
}

test.afterEach(() => {
  expect(errors, "no console errors").toEqual([]);
});

async function api(method, url, token, body) {
  const response = await fetch(`${BASE}${url}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!response.ok) throw new Error(`${method} ${url}: ${response.status} ${await response.text()}`);
  return response.status === 204 ? null : response.json();
}

async function devToken(user) {
  const response = await fetch(`${BASE}/dev/sign-in`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user }),
  });
  expect(response.status).toBe(200);
  return (await response.json()).token;
}

async function metric(name) {
  const text = await (await fetch(`${BASE}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = line.match(/^([a-z_]+)(\{[^}]*\})? (\S+)$/);
    if (m && m[1] === name) sum += Number(m[3]);
  }
  return sum;
}

/** A signed-in page: the development sign-in form, as a person fills it. */
async function signIn(browser, user, options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  watch(page, user);
  await page.goto("/");
  await page.getByLabel("User name").fill(user);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await expect(page.locator(".me")).toHaveText(user);
  await expect(page.locator("#connection")).toHaveAttribute("data-state", "live");
  return { context, page, token: await page.evaluate(() => localStorage.getItem("media.token")) };
}

async function startConversation(page, { kind, members, title }) {
  await page.getByRole("button", { name: "New conversation" }).click();
  await page.getByLabel("Kind").selectOption(kind);
  await page.getByLabel("With").fill(members.join(", "));
  if (title) await page.getByLabel("Group title").fill(title);
  await page.getByRole("button", { name: "Start" }).click();
  await expect(page.locator("#conversation-title")).toHaveText(title || members[0]);
}

async function send(page, text) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send" }).click();
  await expect(page.locator(".message.mine", { hasText: text }).last()).toHaveAttribute("data-status", /.+/);
}

/** Drops files on an element the way a desktop drag-and-drop does. */
async function dropFiles(page, selector, files) {
  const payload = files.map((f) => ({
    name: f.name, type: f.type, data: fs.readFileSync(f.path).toString("base64"),
  }));
  const transfer = await page.evaluateHandle((files) => {
    const dt = new DataTransfer();
    for (const f of files) {
      const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
      dt.items.add(new File([bytes], f.name, { type: f.type }));
    }
    return dt;
  }, payload);
  for (const type of ["dragenter", "dragover", "drop"]) {
    await page.dispatchEvent(selector, type, { dataTransfer: transfer });
  }
}

/** Every control the page shows has a name a screen reader can say. */
async function everyControlIsLabelled(page) {
  const unnamed = await page.locator("button, input, select, textarea, a[href]").evaluateAll((els) =>
    els.filter((el) => {
      if (el.type === "hidden" || el.closest("[hidden]")) return false;
      const labelled = el.labels?.length || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
      return !labelled && !el.textContent.trim();
    }).map((el) => el.outerHTML.slice(0, 120)));
  expect(unnamed, "controls without an accessible name").toEqual([]);
}

test("a group: a photo and a 10 s video dropped by Alice reach Bob live, thumbnail then poster, the video plays and seeks, Alice's ticks go to read", async ({ browser }) => {
  const alice = await signIn(browser, "alice");
  const bob = await signIn(browser, "bob");

  await startConversation(alice.page, { kind: "group", members: ["bob"], title: "Holiday" });
  // Bob's list gets the new group live.
  const bobItem = bob.page.locator(".conversation-item", { hasText: "Holiday" });
  await expect(bobItem).toBeVisible();

  await dropFiles(alice.page, ".drop-zone", [
    { name: "beach.jpg", type: "image/jpeg", path: path.join(FIXTURES, "beach.jpg") },
    { name: "waves.mp4", type: "video/mp4", path: path.join(FIXTURES, "waves.mp4") },
  ]);
  await expect(alice.page.locator(".tray .upload")).toHaveCount(2);
  await alice.page.getByLabel("Message", { exact: true }).fill("From the beach");
  await alice.page.getByRole("button", { name: "Send" }).click();
  const sent = alice.page.locator(".message.mine", { hasText: "From the beach" });
  await expect(sent).toHaveAttribute("data-status", /sent|delivered|read/);
  // The photo's box has its shape from the start, processed or not.
  await expect(sent.locator("figure.image .media-box")).toHaveAttribute("style", /aspect-ratio: 1280 \/ 960/);
  await expect(alice.page.locator(".tray .upload")).toHaveCount(0);

  // Live: the list shows the message before Bob opens anything.
  await expect(bobItem).toContainText("From the beach");
  await expect(bobItem.locator(".badge")).toHaveText("1");
  await bobItem.click();
  const got = bob.page.locator(".message", { hasText: "From the beach" });
  await expect(got.locator("figure.attachment")).toHaveCount(2);

  // The image's thumbnail, in a box of the photo's shape (1280×960), then
  // the video's poster.
  const image = got.locator("figure.image");
  await expect(image).toHaveAttribute("data-loaded", "true");
  const box = await image.locator(".media-box").boundingBox();
  expect(box.width / box.height).toBeCloseTo(4 / 3, 1);
  const thumbUrl = await api("GET", `/v1/media/${await image.getAttribute("data-media-id")}/content?variant=thumb&redirect=false`, bob.token);
  expect(await image.locator("img").getAttribute("src")).toBe(thumbUrl.url);
  const video = got.locator("figure.video video");
  await expect(video).toHaveAttribute("poster", /.+/);
  const videoId = await got.locator("figure.video").getAttribute("data-media-id");
  const transcode = await api("GET", `/v1/media/${videoId}/content?variant=h264_720p&redirect=false`, bob.token);
  await expect.poll(() => video.evaluate((v) => v.currentSrc)).toBe(new URL(transcode.url, BASE).href);

  // It plays, and seeking asks the store for a range.
  const ranges = [];
  bob.page.on("response", (r) => {
    if (r.request().headers().range) ranges.push(r.status());
  });
  await video.evaluate((v) => { v.muted = true; return v.play(); });
  await expect.poll(() => video.evaluate((v) => v.currentTime), { timeout: 30_000 }).toBeGreaterThan(1);
  await video.evaluate((v) => { v.currentTime = 8; });
  await expect.poll(() => video.evaluate((v) => v.currentTime), { timeout: 30_000 }).toBeGreaterThan(8);
  expect(ranges).toContain(206);

  // Bob has the conversation open: Alice's message is read.
  await expect(sent).toHaveAttribute("data-status", "read");
  await expect(sent.locator(".ticks")).toHaveAttribute("aria-label", "Read");

  // The viewer shows the preview variant; Escape closes it.
  await image.locator("button.open-media").click();
  const viewer = bob.page.locator("dialog.viewer img");
  const previewUrl = await api("GET", `/v1/media/${await image.getAttribute("data-media-id")}/content?variant=preview&redirect=false`, bob.token);
  await expect(viewer).toHaveAttribute("src", previewUrl.url);
  await bob.page.keyboard.press("Escape");
  await expect(viewer).toHaveCount(0);

  await everyControlIsLabelled(alice.page);
  await everyControlIsLabelled(bob.page);
  fs.mkdirSync(SHOTS, { recursive: true });
  await bob.page.screenshot({ path: path.join(SHOTS, "desktop-1280x800.png") });

  // The same conversation on a phone.
  const phone = await signIn(browser, "bob", { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await phone.page.locator(".conversation-item", { hasText: "Holiday" }).click();
  await expect(phone.page.locator(".message figure.image")).toHaveAttribute("data-loaded", "true");
  await expect(phone.page.locator(".message figure.video video")).toHaveAttribute("poster", /.+/);
  const width = await phone.page.evaluate(() => document.documentElement.scrollWidth);
  expect(width, "nothing wider than the phone's screen").toBeLessThanOrEqual(390);
  await everyControlIsLabelled(phone.page);
  await phone.page.screenshot({ path: path.join(SHOTS, "phone-390x844.png") });
  await phone.page.getByRole("button", { name: "Back to conversations" }).click();
  await expect(phone.page.locator(".conversation-item", { hasText: "Holiday" })).toBeVisible();

  // Instant dedup: the photo again is done at once, no byte sent.
  const bytesBefore = await metric("upload_bytes_received_total");
  await alice.page.locator("#file-picker").setInputFiles(path.join(FIXTURES, "beach.jpg"));
  await expect(alice.page.locator(".tray .upload .detail")).toHaveText("Already uploaded");
  await send(alice.page, "Same photo");
  await expect(alice.page.locator(".message.mine", { hasText: "Same photo" }).locator("figure.image")).toHaveCount(1);
  expect(await metric("upload_bytes_received_total")).toBe(bytesBefore);

  // Members and roles: Alice (the owner) adds Zed and makes Bob an admin.
  await alice.page.getByRole("button", { name: "Members" }).click();
  const members = alice.page.locator("dialog.dialog");
  await members.getByLabel("Add a member").fill("zed");
  await members.getByRole("button", { name: "Add", exact: true }).click();
  await expect(alice.page.locator("dialog.dialog").getByLabel("Role of zed")).toHaveValue("member");
  await alice.page.locator("dialog.dialog").getByLabel("Role of bob").selectOption("admin");
  await expect(alice.page.locator("dialog.dialog").getByLabel("Role of bob")).toHaveValue("admin");
  await alice.page.keyboard.press("Escape");
  await expect(alice.page.locator(".messages .system").last()).toHaveText("You made bob admin");
  await expect(bob.page.locator(".messages .system", { hasText: "alice added zed" })).toBeVisible();
  await expect(bob.page.locator("#presence")).toContainText("3 members");

  for (const c of [alice, bob, phone]) await c.context.close();
});

test("a device that goes offline gets the three messages it missed once each, in order, when it is back", async ({ browser }) => {
  const carol = await signIn(browser, "carol");
  const dave = await signIn(browser, "dave");
  await startConversation(carol.page, { kind: "direct", members: ["dave"] });
  await send(carol.page, "before");
  await dave.page.locator(".conversation-item", { hasText: "carol" }).click();
  const texts = dave.page.locator(".message .text");
  await expect(texts).toHaveText(["before"]);

  await dave.context.setOffline(true);
  await expect(dave.page.locator("#connection")).toHaveAttribute("data-state", "offline");
  for (const text of ["one", "two", "three"]) await send(carol.page, text);
  await dave.page.waitForTimeout(1500);
  await expect(texts).toHaveText(["before"]);

  await dave.context.setOffline(false);
  await expect(dave.page.locator("#connection")).toHaveAttribute("data-state", "live");
  await expect(texts).toHaveText(["before", "one", "two", "three"]);
  // Nothing arrives twice later either.
  await dave.page.waitForTimeout(1500);
  await expect(texts).toHaveText(["before", "one", "two", "three"]);
  // And Carol sees them read.
  await expect(carol.page.locator(".message.mine", { hasText: "three" })).toHaveAttribute("data-status", "read");
  for (const c of [carol, dave]) await c.context.close();
});

test("a 50 MiB upload cut off by a reload continues from the service's progress when the file is picked again", async ({ browser }) => {
  const erin = await signIn(browser, "erin");
  await startConversation(erin.page, { kind: "direct", members: ["frank"] });
  const file = path.join(os.tmpdir(), `media-browser-${crypto.randomUUID()}.bin`);
  fs.writeFileSync(file, crypto.randomBytes(50 * MIB));
  try {
    // Chunks 1–3 go through; the later ones are held, as on a network that
    // dies midway, until the page is reloaded.
    let held = 0;
    await erin.page.route((url) => /\/v1\/uploads\/[^/]+\/chunks\/([4-9]|\d\d+)$/.test(url.pathname), () => {
      held += 1;
    });
    // A link of 16 MiB/s up, so the bar has a rate and a time left to show.
    const cdp = await erin.context.newCDPSession(erin.page);
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 16 * MIB,
    });
    await erin.page.locator("#file-picker").setInputFiles(file);
    const upload = erin.page.locator(".tray .upload");
    await expect(upload).toHaveCount(1);
    await expect(upload.locator(".detail")).toHaveText(/^[\d.]+ MB of 52\.4 MB · [\d.]+ MB\/s · \d+ s left$/);
    const uploadId = await expect.poll(() => erin.page.evaluate(() => {
      for (const key of Object.keys(localStorage)) {
        if (key.startsWith("media.upload:")) return JSON.parse(localStorage.getItem(key)).upload_id;
      }
      return null;
    })).toBeTruthy().then(() => erin.page.evaluate(() => {
      const key = Object.keys(localStorage).find((k) => k.startsWith("media.upload:"));
      return JSON.parse(localStorage.getItem(key)).upload_id;
    }));
    await expect.poll(async () => (await api("GET", `/v1/uploads/${uploadId}`, erin.token)).received_chunks.length).toBe(3);
    await expect.poll(() => held).toBeGreaterThan(0);
    await expect(upload.locator(".detail")).toContainText("of 52.4 MB");
    // Pause stops it (what was in flight is cut off), resume goes on.
    await upload.getByRole("button", { name: /^Pause / }).click();
    await expect(upload).toHaveAttribute("data-state", "paused");
    await expect(upload.locator(".detail")).toContainText("Paused at 25.2 MB of 52.4 MB");
    const heldBefore = held;
    await upload.getByRole("button", { name: /^Resume / }).click();
    await expect(upload).toHaveAttribute("data-state", "uploading");
    await expect.poll(() => held).toBeGreaterThan(heldBefore);

    const before = await metric("upload_bytes_received_total");
    await erin.page.unrouteAll({ behavior: "ignoreErrors" });
    await erin.page.reload();
    await expect(erin.page.locator("#connection")).toHaveAttribute("data-state", "live");
    await erin.page.locator(".conversation-item", { hasText: "frank" }).click();
    await erin.page.locator("#file-picker").setInputFiles(file);
    await expect(upload.locator(".detail")).toContainText("resumed");
    await erin.page.getByRole("button", { name: "Send" }).click();
    const message = erin.page.locator(".message.mine figure.attachment");
    await expect(message).toHaveAttribute("data-media-id", /.+/);
    const after = await metric("upload_bytes_received_total");

    const sentAfterReload = after - before;
    console.log(`50 MiB upload: ${(sentAfterReload / MIB).toFixed(1)} MiB received by the service after the reload`);
    expect(sentAfterReload).toBeGreaterThan(0);
    expect(sentAfterReload, "bytes sent after the reload").toBeLessThan(50 * MIB);
    const session = await api("GET", `/v1/uploads/${uploadId}`, erin.token);
    expect(session.state).toBe("completed");
    const media = await api("GET", `/v1/media/${session.media_id}`, erin.token);
    expect(media.size).toBe(50 * MIB);
    await expect(message).toContainText(path.basename(file));
  } finally {
    fs.rmSync(file, { force: true });
  }
  await erin.context.close();
});

test("a host app's token in the URL fragment signs in and leaves the address bar at once", async ({ browser }) => {
  const token = await devToken("kim");
  const context = await browser.newContext();
  const page = await context.newPage();
  watch(page, "kim");
  const requested = [];
  page.on("request", (r) => requested.push(r.url()));
  await page.goto(`/#access_token=${token}`);
  await expect(page.locator(".me")).toHaveText("kim");
  expect(page.url()).not.toContain(token);
  // The socket carries it in its query (browsers cannot set its headers);
  // no other request does.
  expect(requested.filter((u) => u.includes(token) && !u.includes("/v1/realtime"))).toEqual([]);
  // No history entry keeps it: back is the page before.
  await page.goBack();
  expect(page.url()).toBe("about:blank");
  await context.close();
});

test("keyboard only: sign in, open a conversation, send a message", async ({ browser }) => {
  const alice = await devToken("alice");
  const conv = await api("POST", "/v1/conversations", alice, { kind: "direct", members: ["gina"] });
  await api("POST", `/v1/conversations/${conv.conversation_id}/messages`, alice, {
    client_message_id: crypto.randomUUID(), text: "hello gina",
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  watch(page, "gina");
  await page.goto("/");
  await expect(page.getByLabel("User name")).toBeFocused();
  await page.keyboard.type("gina");
  await page.keyboard.press("Enter");
  await expect(page.locator(".me")).toHaveText("gina");
  let found = false;
  for (let i = 0; i < 20 && !found; i += 1) {
    await page.keyboard.press("Tab");
    found = await page.evaluate(() => document.activeElement?.classList.contains("conversation-item"));
  }
  expect(found, "Tab reaches the conversation list").toBe(true);
  await expect(page.locator(":focus")).toContainText("alice");
  await page.keyboard.press("Enter");
  await expect(page.getByLabel("Message", { exact: true })).toBeFocused();
  await expect(page.locator(".message .text")).toHaveText(["hello gina"]);
  await page.keyboard.type("typed without a mouse");
  await page.keyboard.press("Enter");
  await expect(page.locator(".message.mine", { hasText: "typed without a mouse" })).toHaveAttribute("data-status", /sent|delivered|read/);
  await context.close();
});

test("replies, edits, deletes, typing and presence reach the other side live; history scrolls back; My media lists and deletes", async ({ browser }) => {
  const hank = await signIn(browser, "hank");
  const ivy = await signIn(browser, "ivy");
  // 45 older messages, so the history has pages to scroll back through.
  const conv = await api("POST", "/v1/conversations", hank.token, { kind: "direct", members: ["ivy"] });
  for (let i = 1; i <= 45; i += 1) {
    await api("POST", `/v1/conversations/${conv.conversation_id}/messages`, hank.token, {
      client_message_id: crypto.randomUUID(), text: `old ${i}`,
    });
  }
  await hank.page.locator(".conversation-item", { hasText: "ivy" }).click();
  await ivy.page.locator(".conversation-item", { hasText: "hank" }).click();
  const ivyTexts = ivy.page.locator(".message .text");
  await expect(ivyTexts).toHaveCount(30);
  await ivy.page.locator(".scroller").evaluate((s) => { s.scrollTop = 0; });
  await expect(ivyTexts).toHaveCount(45);
  await expect(ivyTexts.first()).toHaveText("old 1");

  // Presence and typing.
  await expect(hank.page.locator("#presence")).toHaveText("online");
  await ivy.page.getByLabel("Message", { exact: true }).pressSequentially("que");
  await expect(hank.page.locator("#typing")).toHaveText("ivy is typing…");
  await ivy.page.getByLabel("Message", { exact: true }).fill("question?");
  await ivy.page.getByLabel("Message", { exact: true }).press("Enter");
  await expect(hank.page.locator("#typing")).toHaveText("");

  // A reply, then an edit, then a delete for everyone.
  const question = hank.page.locator(".message", { hasText: "question?" });
  await question.hover();
  await question.getByRole("button", { name: "Reply" }).click();
  await send(hank.page, "answer");
  const answer = ivy.page.locator(".message", { hasText: "answer" });
  await expect(answer.locator(".quote")).toContainText("ivy: question?");
  const mine = hank.page.locator(".message.mine", { hasText: "answer" });
  await mine.hover();
  await mine.getByRole("button", { name: "Edit" }).click();
  await hank.page.getByLabel("Message", { exact: true }).fill("better answer");
  await hank.page.getByLabel("Message", { exact: true }).press("Enter");
  await expect(answer.locator(".text")).toHaveText("better answer");
  await expect(answer.locator(".edited")).toBeVisible();
  hank.page.once("dialog", (d) => d.accept());
  await hank.page.locator(".message.mine", { hasText: "better answer" }).hover();
  await hank.page.locator(".message.mine", { hasText: "better answer" }).getByRole("button", { name: "Delete" }).click();
  await expect(ivy.page.locator(".message .text.deleted")).toHaveText("This message was deleted.");

  // A voice note plays through its opus variant; an image that cannot be
  // processed is offered as its original, to download.
  const broken = path.join(os.tmpdir(), `broken-${crypto.randomUUID()}.jpg`);
  fs.writeFileSync(broken, Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), crypto.randomBytes(4000)]));
  await hank.page.locator("#file-picker").setInputFiles([path.join(FIXTURES, "voice.m4a"), broken]);
  await hank.page.getByRole("button", { name: "Send" }).click();
  fs.rmSync(broken, { force: true });
  const notes = ivy.page.locator(".message", { has: ivy.page.locator("figure.audio") });
  const audio = notes.locator("figure.audio audio");
  await expect(audio).toHaveAttribute("src", /.+/);
  const opus = await api("GET", `/v1/media/${await notes.locator("figure.audio").getAttribute("data-media-id")}/content?variant=opus&redirect=false`, ivy.token);
  expect(new URL(await audio.getAttribute("src"), BASE).href).toBe(new URL(opus.url, BASE).href);
  await audio.evaluate((a) => { a.muted = true; return a.play(); });
  await expect.poll(() => audio.evaluate((a) => a.currentTime)).toBeGreaterThan(0.3);
  const failed = notes.locator("figure.image");
  await expect(failed).toHaveAttribute("data-status", "failed");
  await expect(failed.getByRole("button", { name: /broken-.*\.jpg/ })).toBeVisible();

  // Ivy leaves: Hank sees when she was last there.
  await ivy.context.close();
  await expect(hank.page.locator("#presence")).toContainText("last seen");

  // My media: an upload (pasted) shows with its thumbnail, and can be deleted.
  await hank.page.getByLabel("Message", { exact: true }).evaluate((input, data) => {
    const dt = new DataTransfer();
    dt.items.add(new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], "beach.jpg", { type: "image/jpeg" }));
    input.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
  }, fs.readFileSync(path.join(FIXTURES, "beach.jpg")).toString("base64"));
  await expect(hank.page.locator(".tray .upload", { hasText: "beach.jpg" })).toBeVisible();
  await hank.page.getByRole("button", { name: "Send" }).click();
  await expect(hank.page.locator(".message.mine figure.image").last()).toHaveAttribute("data-loaded", "true");
  await hank.page.getByRole("button", { name: "My media" }).click();
  const item = hank.page.locator(".gallery-item", { hasText: "beach.jpg" });
  await expect(item.locator("figure")).toHaveAttribute("data-loaded", "true");
  await hank.context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await item.getByRole("button", { name: "Copy link to beach.jpg" }).click();
  const link = await hank.page.evaluate(() => navigator.clipboard.readText());
  expect((await fetch(link)).status).toBe(200);
  hank.page.once("dialog", (d) => d.accept());
  await item.getByRole("button", { name: "Delete beach.jpg" }).click();
  await expect(item).toHaveCount(0);
  const left = (await api("GET", "/v1/media", hank.token)).items.map((m) => m.file_name);
  expect(left).not.toContain("beach.jpg");
  expect(left).toContain("voice.m4a");
  await hank.context.close();
});
