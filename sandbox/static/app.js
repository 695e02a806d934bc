// The sandbox chat page: play users talking to the bot, privately or in groups. No build step,
// no framework. Live changes arrive over the /sandbox/events WebSocket; actions go to the
// control API. Everything the bot sends is rendered as text (textContent), and only http(s)
// URLs ever become live links.
"use strict";

const $ = (id) => document.getElementById(id);
const STREAM_IDLE_MS = 4000; // a bot message edited this recently is "still being written"
const state = {
  bot: null, users: [], groups: [], chat: null, speaker: null, messages: [],
  drafts: new Map(), replyTo: null, typingTimer: null, streamTimer: null, draftTtl: 30,
  // While a chat's transcript is being fetched, its live events wait here and are replayed on
  // top of the fetched state (else a typing event or a message arriving mid-load is lost).
  loading: null, backlog: [],
};

async function api(method, path, body) {
  const res = await fetch("/sandbox" + path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

function initials(name) { return (name || "?").trim().slice(0, 1).toUpperCase(); }
function fullName(u) { return [u.first_name, u.last_name].filter(Boolean).join(" "); }
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// Only http(s) URLs are followed; javascript:, data:, file: and the rest stay plain text.
function safeUrl(url) {
  try {
    const u = new URL(String(url), location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch (_) { return null; }
}

// --- users and groups ----------------------------------------------------------------------
async function loadUsers() {
  state.users = await api("GET", "/users");
  const chats = await api("GET", "/chats");
  state.groups = chats.filter((c) => c.type === "group" || c.type === "supergroup");
  renderSidebar();
  if (state.chat && state.chat.type !== "private") renderSpeakers();
}

function sidebarItem(testid, label, sub, active, onClick) {
  const li = el("li");
  li.setAttribute("data-testid", testid);
  if (active) li.classList.add("active");
  const av = el("div", "avatar", initials(label));
  const text = el("div");
  text.append(el("div", "", label), el("div", "sub", sub));
  li.append(av, text);
  li.addEventListener("click", onClick);
  return li;
}

function renderSidebar() {
  const users = $("user-list");
  users.replaceChildren();
  for (const u of state.users) {
    const active = state.chat && state.chat.id === u.id;
    const sub = (u.username ? "@" + u.username + " · " : "") + "id " + u.id;
    const li = sidebarItem("user-item", fullName(u) + (u.blocked ? " (blocked the bot)" : ""), sub, active,
      () => selectChat(u.id));
    li.dataset.userId = String(u.id);
    users.append(li);
  }
  const groups = $("group-list");
  groups.replaceChildren();
  for (const g of state.groups) {
    const active = state.chat && state.chat.id === g.id;
    const li = sidebarItem("group-item", g.title, `${g.type} · ${g.members.length} members · id ${g.id}`, active,
      () => selectChat(g.id));
    li.dataset.chatId = String(g.id);
    groups.append(li);
  }
}

function renderSpeakers() {
  const select = $("speaker-select");
  select.replaceChildren();
  for (const u of state.users) {
    const opt = el("option", "", fullName(u));
    opt.value = String(u.id);
    select.append(opt);
  }
  if (!state.users.some((u) => u.id === state.speaker) && state.users.length) state.speaker = state.users[0].id;
  select.value = String(state.speaker);
}

async function selectChat(id) {
  state.loading = id;
  state.backlog = [];
  try {
    await loadChat(id);
  } finally {
    if (state.loading === id) { state.loading = null; state.backlog = []; } // failed half-way
  }
}

async function loadChat(id) {
  const chat = await api("GET", `/chats/${id}`);
  if (state.loading !== id) return; // another chat was chosen meanwhile
  state.chat = chat;
  state.replyTo = null;
  localStorage.setItem("sandbox-chat", String(id));
  const isGroup = chat.type !== "private";
  $("speaker-box").hidden = !isGroup;
  if (isGroup) {
    if (!chat.members.includes(state.speaker)) state.speaker = chat.members[0] || (state.users[0] || {}).id;
    renderSpeakers();
  } else {
    state.speaker = id;
  }
  const user = state.users.find((u) => u.id === state.speaker);
  $("as-user").textContent = isGroup ? chat.title : (user ? "you are " + fullName(user) : "");
  for (const b of ["message-input", "send-button", "burst-button"]) $(b).disabled = false;
  renderSidebar();
  const messages = await api("GET", `/chats/${id}/messages`);
  const drafts = await api("GET", `/chats/${id}/drafts`);
  if (state.loading !== id) return;
  state.messages = messages;
  state.drafts = new Map();
  for (const d of drafts) if (d.state === "active") state.drafts.set(d.draft_id, d);
  setTyping(chat.typing ? 5 : 0);
  setStreaming(false);
  renderReply();
  renderMessages();
  const backlog = state.backlog;
  state.loading = null;
  state.backlog = [];
  for (const e of backlog) handleEvent(e); // upserts are idempotent: a fetched message is kept once
  $("message-input").focus();
}

// --- messages ----------------------------------------------------------------------------
const ENTITY_TAGS = { bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code", pre: "pre", spoiler: "span" };

function renderText(text, entities) {
  // JS strings are UTF-16 like Telegram's offsets; nested entities are shown flat.
  const frag = document.createDocumentFragment();
  let pos = 0;
  const ents = (entities || []).filter((e) => ENTITY_TAGS[e.type] || e.type === "text_link" || e.type === "url")
    .sort((a, b) => a.offset - b.offset);
  for (const e of ents) {
    if (e.offset < pos) continue;
    frag.append(text.slice(pos, e.offset));
    const part = text.slice(e.offset, e.offset + e.length);
    let node;
    if (e.type === "text_link" || e.type === "url") {
      const href = safeUrl(e.type === "url" ? part : e.url);
      if (href) {
        node = el("a", "", part);
        node.href = href;
        node.target = "_blank";
        node.rel = "noopener noreferrer";
      } else {
        node = el("span", "unsafe-link", part);
        node.setAttribute("data-testid", "unsafe-link");
        node.title = "not an http(s) link: shown as text";
      }
    } else {
      node = el(ENTITY_TAGS[e.type], "", part);
    }
    frag.append(node);
    pos = e.offset + e.length;
  }
  frag.append(text.slice(pos));
  return frag;
}

const MEDIA_ICONS = { photo: "🖼️", video: "🎬", voice: "🎤", audio: "🎵", video_note: "⏺️", document: "📄", animation: "🎞️" };

function mediaLine(m) {
  for (const [kind, icon] of Object.entries(MEDIA_ICONS)) {
    const v = m[kind];
    if (!v) continue;
    const file = Array.isArray(v) ? v[v.length - 1] : v;
    const bits = [file.file_name, file.mime_type, file.file_size !== undefined ? `${file.file_size} B` : null,
      file.duration !== undefined ? `${file.duration}s` : null].filter(Boolean);
    const line = el("div", "media-line");
    line.setAttribute("data-testid", "media");
    line.dataset.kind = kind;
    line.append(el("span", "media", icon), el("span", "media-meta", bits.join(" · ")));
    return line;
  }
  return null;
}

function keyboard(m) {
  const kb = m.reply_markup && m.reply_markup.inline_keyboard;
  if (!kb) return null;
  const box = el("div", "keyboard");
  box.setAttribute("data-testid", "inline-keyboard");
  for (const r of kb) {
    const rowEl = el("div", "kb-row");
    for (const btn of r) {
      const b = el("button", "", btn.text + (btn.url ? " ↗" : ""));
      b.type = "button";
      b.setAttribute("data-testid", "inline-button");
      if (btn.callback_data !== undefined) b.dataset.callbackData = btn.callback_data;
      if (btn.url !== undefined && !safeUrl(btn.url)) b.dataset.urlBlocked = "true";
      b.addEventListener("click", () => pressButton(m, btn));
      rowEl.append(b);
    }
    box.append(rowEl);
  }
  return box;
}

function bubble(m) {
  const fromBot = Boolean(m.from && m.from.is_bot);
  const row = el("div", "row " + (fromBot ? "bot" : "user"));
  const b = el("div", "bubble");
  b.setAttribute("data-testid", "message");
  b.dataset.from = fromBot ? "bot" : "user";
  b.dataset.messageId = String(m.message_id);
  if (m.media_group_id) b.dataset.mediaGroupId = m.media_group_id;
  if (state.chat && state.chat.type !== "private" && !fromBot && m.from) {
    const who = el("div", "sender", fullName(m.from));
    who.setAttribute("data-testid", "sender-name");
    b.append(who);
  }
  if (m.reply_to_message) {
    const q = el("div", "quote", (m.reply_to_message.text || m.reply_to_message.caption || "media").slice(0, 80));
    q.setAttribute("data-testid", "reply-quote");
    b.append(q);
  }
  const media = mediaLine(m);
  if (media) b.append(media);
  if (m.sticker) b.append(el("div", "media", m.sticker.emoji || "🙂"));
  const body = el("span", "text");
  body.setAttribute("data-testid", "message-text");
  if (m.text !== undefined) body.append(renderText(m.text, m.entities));
  else if (m.caption !== undefined) body.append(renderText(m.caption, m.caption_entities));
  b.append(body);
  const meta = el("span", "meta", (m.edit_date ? "edited " : "") + new Date((m.date || 0) * 1000).toTimeString().slice(0, 5));
  const reply = el("button", "reply-btn", "↩");
  reply.type = "button";
  reply.title = "Reply";
  reply.setAttribute("data-testid", "reply-button");
  reply.addEventListener("click", () => { state.replyTo = m; renderReply(); $("message-input").focus(); });
  meta.prepend(reply);
  b.append(meta);
  row.append(b);
  const kb = fromBot ? keyboard(m) : null;
  if (kb) row.append(kb);
  return row;
}

function draftBubble(d) {
  const row = el("div", "row bot");
  const b = el("div", "bubble draft");
  b.setAttribute("data-testid", "draft");
  b.dataset.draftId = String(d.draft_id);
  b.dataset.state = d.state;
  const body = el("span", "text");
  body.setAttribute("data-testid", "draft-text");
  if (d.text) body.append(renderText(d.text, d.entities));
  else body.textContent = "Thinking…";
  b.append(body);
  if (d.can_stop && d.state === "active") {
    const stop = el("button", "stop-draft", "■ Stop");
    stop.type = "button";
    stop.setAttribute("data-testid", "stop-draft");
    stop.addEventListener("click", () => api("POST", `/chats/${d.chat_id}/drafts/${d.draft_id}/stop`,
      { message_thread_id: d.message_thread_id }));
    b.append(stop);
  }
  row.append(b);
  return row;
}

function renderMessages() {
  const box = $("messages");
  box.replaceChildren();
  if (!state.messages.length && !state.drafts.size) {
    box.append(el("div", "empty", state.chat ? "No messages here yet. Say hi, or send /start." : "Pick a user on the left."));
  }
  for (const m of state.messages) box.append(bubble(m));
  for (const d of state.drafts.values()) box.append(draftBubble(d));
  box.scrollTop = box.scrollHeight;
}

function upsert(m) {
  // message_id 0 (ephemeral messages) identifies nothing: such messages are only appended
  const i = m.message_id === 0 ? -1 : state.messages.findIndex((x) => x.message_id === m.message_id);
  if (i >= 0) state.messages[i] = m;
  else state.messages.push(m);
  renderMessages();
}

async function pressButton(m, btn) {
  if (btn.url !== undefined) {
    const href = safeUrl(btn.url);
    if (href) window.open(href, "_blank", "noopener,noreferrer");
    else toast("Not an http(s) link: not opened");
    return;
  }
  if (btn.callback_data === undefined) { toast("This button type is not simulated"); return; }
  await api("POST", `/users/${state.speaker}/callback`, { message_id: m.message_id, data: btn.callback_data, chat_id: state.chat.id });
}

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

function setTyping(seconds) {
  clearTimeout(state.typingTimer);
  $("typing-indicator").hidden = seconds <= 0;
  if (seconds > 0) state.typingTimer = setTimeout(() => { $("typing-indicator").hidden = true; }, seconds * 1000);
}

function setStreaming(on) {
  clearTimeout(state.streamTimer);
  $("stream-bar").hidden = !on;
  if (on) state.streamTimer = setTimeout(() => { $("stream-bar").hidden = true; }, STREAM_IDLE_MS);
}

function renderReply() {
  $("reply-preview").hidden = !state.replyTo;
  if (state.replyTo) $("reply-text").textContent = "Replying to: " + (state.replyTo.text || state.replyTo.caption || "media").slice(0, 60);
}

// --- drafts (sendMessageDraft) --------------------------------------------------------------
function showDraft(d) {
  state.drafts.set(d.draft_id, d);
  clearTimeout(d.timer);
  d.timer = setTimeout(() => { state.drafts.delete(d.draft_id); renderMessages(); }, state.draftTtl * 1000);
  setTyping(0);
  renderMessages();
}

function endDraft(d) {
  const old = state.drafts.get(d.draft_id);
  if (old) clearTimeout(old.timer);
  if (d.state === "stopped" && d.keep_on_stop) state.drafts.set(d.draft_id, d);
  else state.drafts.delete(d.draft_id);
  renderMessages();
}

// --- live events -------------------------------------------------------------------------
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/sandbox/events`);
  ws.onopen = () => { $("connection").className = "conn on"; $("connection").dataset.state = "open"; };
  ws.onclose = () => {
    $("connection").className = "conn off";
    $("connection").dataset.state = "closed";
    setTimeout(connect, 1000);
  };
  ws.onmessage = (ev) => handleEvent(JSON.parse(ev.data));
}

function handleEvent(e) {
  if (state.loading !== null && e.chat_id === state.loading) { state.backlog.push(e); return; }
  const mine = e.chat_id !== undefined && state.chat && e.chat_id === state.chat.id;
  const business = e.message && e.message.business_connection_id; // another chat, same id
  switch (e.type) {
    case "hello": showBot(e.bot); break;
    case "message":
      if (mine && !business) {
        upsert(e.message);
        if (e.message.from && e.message.from.is_bot) setTyping(0);
      }
      break;
    case "edit":
      if (mine && !business) {
        upsert(e.message);
        if (e.message.from && e.message.from.is_bot) setStreaming(true);
      }
      break;
    case "draft": if (mine) showDraft(e.draft); break;
    case "draft_end": if (mine) endDraft(e.draft); break;
    case "delete":
      if (mine) { state.messages = state.messages.filter((m) => m.message_id !== e.message_id); renderMessages(); }
      break;
    case "typing": if (mine) setTyping(e.seconds); break;
    case "callback_answer": if (mine && e.text) toast(e.text); break;
    case "user": case "chat": loadUsers(); break;
    case "reset": state.chat = null; state.messages = []; state.drafts = new Map(); loadUsers(); renderMessages(); break;
  }
}

function showBot(bot) {
  state.bot = bot;
  $("bot-name").textContent = bot.first_name;
  $("bot-avatar").textContent = initials(bot.first_name);
  document.title = bot.first_name + " — Telegram sandbox";
}

// --- sending -----------------------------------------------------------------------------
function target() {
  const extra = { chat_id: state.chat.type === "private" ? undefined : state.chat.id };
  if (state.replyTo) extra.reply_to_message_id = state.replyTo.message_id;
  state.replyTo = null;
  renderReply();
  return extra;
}

function say(body) {
  if (!state.chat) return null;
  return api("POST", `/users/${state.speaker}/messages`, { ...target(), ...body });
}

function takeInput() {
  const input = $("message-input");
  const text = input.value;
  input.value = "";
  return text;
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function kindOf(file) {
  const t = file.type || "";
  if (t.startsWith("image/")) return "photo";
  if (t.startsWith("video/")) return "video";
  if (t.startsWith("audio/ogg")) return "voice";
  if (t.startsWith("audio/")) return "audio";
  return "document";
}

async function sendFiles(files) {
  if (!state.chat || !files.length) return;
  const items = [];
  for (const f of files) {
    items.push({ kind: kindOf(f), content_b64: await readFile(f), file_name: f.name, mime_type: f.type || undefined });
  }
  const caption = takeInput() || undefined;
  if (items.length === 1) await say({ media: items[0], caption });
  else await api("POST", `/users/${state.speaker}/album`, { ...target(), items: items.slice(0, 10), caption });
}

$("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("message-input").value;
  if (!text.trim() || !state.chat) return;
  takeInput();
  await say({ text });
});
$("message-input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("composer").requestSubmit(); }
});
$("burst-button").addEventListener("click", async () => {
  if (!state.chat) return;
  const lines = takeInput().split("\n").map((l) => l.trim()).filter(Boolean);
  if (!lines.length) return;
  await api("POST", `/users/${state.speaker}/burst`, { ...target(), messages: lines });
});
$("sticker-button").addEventListener("click", () => say({ sticker: "😀" }));
$("photo-button").addEventListener("click", () => say({ photo: true, caption: takeInput() || undefined }));
$("album-button").addEventListener("click", () => {
  if (!state.chat) return;
  const caption = takeInput() || undefined;
  const items = [1, 2, 3].map(() => ({ kind: "photo" }));
  api("POST", `/users/${state.speaker}/album`, { ...target(), items, caption });
});
$("file-input").addEventListener("change", async (ev) => {
  const files = Array.from(ev.target.files || []);
  ev.target.value = "";
  await sendFiles(files);
});
$("stop-generation").addEventListener("click", async () => {
  setStreaming(false);
  await say({ text: "/stop" });
});
$("reply-cancel").addEventListener("click", () => { state.replyTo = null; renderReply(); });
$("speaker-select").addEventListener("change", (ev) => { state.speaker = Number(ev.target.value); });
$("new-user").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("new-user-name").value.trim();
  const user = await api("POST", "/users", name ? { first_name: name } : {});
  $("new-user-name").value = "";
  await loadUsers();
  await selectChat(user.id);
});
$("new-group").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const title = $("new-group-title").value.trim() || "Sandbox group";
  const group = await api("POST", "/groups", { title, members: state.users.map((u) => u.id) });
  $("new-group-title").value = "";
  await loadUsers();
  await selectChat(group.id);
});

(async function start() {
  const info = await api("GET", "/info");
  showBot(info.bot);
  state.draftTtl = info.draft_ttl || 30;
  await loadUsers();
  const saved = Number(localStorage.getItem("sandbox-chat"));
  if (saved && (state.users.some((u) => u.id === saved) || state.groups.some((g) => g.id === saved))) await selectChat(saved);
  connect();
})();
