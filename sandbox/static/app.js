// The sandbox chat page: play a user talking to the bot. No build step, no framework.
// Live changes arrive over the /sandbox/events WebSocket; actions go to the control API.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { bot: null, users: [], current: null, messages: [], typingTimer: null };

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

// --- users -------------------------------------------------------------------------------
async function loadUsers() {
  state.users = await api("GET", "/users");
  renderUsers();
}

function renderUsers() {
  const list = $("user-list");
  list.replaceChildren();
  for (const u of state.users) {
    const li = document.createElement("li");
    li.dataset.testid = "user-item";
    li.setAttribute("data-testid", "user-item");
    li.dataset.userId = String(u.id);
    if (state.current === u.id) li.classList.add("active");
    const av = document.createElement("div");
    av.className = "avatar";
    av.textContent = initials(u.first_name);
    const text = document.createElement("div");
    const name = document.createElement("div");
    name.textContent = fullName(u) + (u.blocked ? " (blocked the bot)" : "");
    const sub = document.createElement("div");
    sub.className = "sub";
    sub.textContent = (u.username ? "@" + u.username + " · " : "") + "id " + u.id;
    text.append(name, sub);
    li.append(av, text);
    li.addEventListener("click", () => selectUser(u.id));
    list.append(li);
  }
}

async function selectUser(id) {
  state.current = id;
  localStorage.setItem("sandbox-user", String(id));
  const user = state.users.find((u) => u.id === id);
  $("as-user").textContent = user ? "you are " + fullName(user) : "";
  $("message-input").disabled = false;
  $("send-button").disabled = false;
  renderUsers();
  state.messages = await api("GET", `/chats/${id}/messages`);
  const chat = await api("GET", `/chats/${id}`);
  setTyping(chat.typing ? 5 : 0);
  renderMessages();
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
    let el;
    if (e.type === "text_link" || e.type === "url") {
      el = document.createElement("a");
      el.href = e.url || part;
      el.target = "_blank";
      el.rel = "noopener";
    } else {
      el = document.createElement(ENTITY_TAGS[e.type]);
    }
    el.textContent = part;
    frag.append(el);
    pos = e.offset + e.length;
  }
  frag.append(text.slice(pos));
  return frag;
}

function bubble(m) {
  const fromBot = Boolean(m.from && m.from.is_bot);
  const row = document.createElement("div");
  row.className = "row " + (fromBot ? "bot" : "user");
  const b = document.createElement("div");
  b.className = "bubble";
  b.setAttribute("data-testid", "message");
  b.dataset.from = fromBot ? "bot" : "user";
  b.dataset.messageId = String(m.message_id);
  if (m.photo) {
    const media = document.createElement("div");
    media.className = "media";
    media.textContent = "🖼️";
    b.append(media);
  }
  if (m.sticker) {
    const media = document.createElement("div");
    media.className = "media";
    media.textContent = m.sticker.emoji || "🙂";
    b.append(media);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.setAttribute("data-testid", "message-text");
  if (m.text !== undefined) body.append(renderText(m.text, m.entities));
  else if (m.caption !== undefined) body.append(renderText(m.caption, m.caption_entities));
  b.append(body);
  const meta = document.createElement("span");
  meta.className = "meta";
  const d = new Date((m.date || 0) * 1000);
  meta.textContent = (m.edit_date ? "edited " : "") + d.toTimeString().slice(0, 5);
  b.append(meta);
  row.append(b);
  const kb = m.reply_markup && m.reply_markup.inline_keyboard;
  if (fromBot && kb) {
    const keyboard = document.createElement("div");
    keyboard.className = "keyboard";
    keyboard.setAttribute("data-testid", "inline-keyboard");
    for (const r of kb) {
      const rowEl = document.createElement("div");
      rowEl.className = "kb-row";
      for (const btn of r) {
        const el = document.createElement("button");
        el.type = "button";
        el.textContent = btn.text + (btn.url ? " ↗" : "");
        el.setAttribute("data-testid", "inline-button");
        if (btn.callback_data !== undefined) el.dataset.callbackData = btn.callback_data;
        el.addEventListener("click", () => pressButton(m, btn));
        rowEl.append(el);
      }
      keyboard.append(rowEl);
    }
    row.append(keyboard);
  }
  return row;
}

function renderMessages() {
  const box = $("messages");
  box.replaceChildren();
  if (!state.messages.length) {
    const hint = document.createElement("div");
    hint.className = "empty";
    hint.textContent = state.current ? "No messages here yet. Say hi, or send /start." : "Pick a user on the left.";
    box.append(hint);
  }
  for (const m of state.messages) box.append(bubble(m));
  box.scrollTop = box.scrollHeight;
}

function upsert(m) {
  const i = state.messages.findIndex((x) => x.message_id === m.message_id);
  if (i >= 0) state.messages[i] = m;
  else state.messages.push(m);
  renderMessages();
}

async function pressButton(m, btn) {
  if (btn.url) { window.open(btn.url, "_blank", "noopener"); return; }
  if (btn.callback_data === undefined) { toast("This button type is not simulated"); return; }
  await api("POST", `/users/${state.current}/callback`, { message_id: m.message_id, data: btn.callback_data });
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
  const mine = e.chat_id !== undefined && e.chat_id === state.current;
  switch (e.type) {
    case "hello": showBot(e.bot); break;
    case "message":
    case "edit":
      if (mine) {
        upsert(e.message);
        if (e.message.from && e.message.from.is_bot) setTyping(0);
      }
      break;
    case "delete":
      if (mine) { state.messages = state.messages.filter((m) => m.message_id !== e.message_id); renderMessages(); }
      break;
    case "typing": if (mine) setTyping(e.seconds); break;
    case "callback_answer": if (mine && e.text) toast(e.text); break;
    case "user": loadUsers(); break;
    case "reset": state.current = null; state.messages = []; loadUsers(); renderMessages(); break;
  }
}

function showBot(bot) {
  state.bot = bot;
  $("bot-name").textContent = bot.first_name;
  $("bot-avatar").textContent = initials(bot.first_name);
  document.title = bot.first_name + " — Telegram sandbox";
}

// --- wiring ------------------------------------------------------------------------------
$("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("message-input");
  const text = input.value;
  if (!text.trim() || !state.current) return;
  input.value = "";
  await api("POST", `/users/${state.current}/messages`, { text });
});
$("sticker-button").addEventListener("click", () => state.current && api("POST", `/users/${state.current}/messages`, { sticker: "😀" }));
$("photo-button").addEventListener("click", () => {
  if (!state.current) return;
  const caption = $("message-input").value || undefined;
  $("message-input").value = "";
  api("POST", `/users/${state.current}/messages`, { photo: true, caption });
});
$("new-user").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("new-user-name").value.trim();
  const user = await api("POST", "/users", name ? { first_name: name } : {});
  $("new-user-name").value = "";
  await loadUsers();
  await selectUser(user.id);
});

(async function start() {
  const info = await api("GET", "/info");
  showBot(info.bot);
  await loadUsers();
  const saved = Number(localStorage.getItem("sandbox-user"));
  if (saved && state.users.some((u) => u.id === saved)) await selectUser(saved);
  connect();
})();
