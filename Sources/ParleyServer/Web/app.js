// Parley's browser client: the native protocol's JSON over a WebSocket (docs/PROTOCOL.md).
// Plain JavaScript, no build step. Every piece of user text reaches the page through
// textContent, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const lower = (s) => s.toLowerCase();

const ERRORS = {
  INVALID_CREDENTIALS: 'Wrong user name or password.',
  USERNAME_EXISTS: 'That name is taken: choose another.',
  INVALID_USERNAME: 'A name is 1–32 letters, digits, _ - or .',
  PASSWORD_TOO_SHORT: 'The password is too short: at least 8 characters.',
  PASSWORD_TOO_LONG: 'The password is too long: at most 72 bytes.',
  RATE_LIMITED: 'Too many attempts: wait a moment, then try again.',
  SERVER_BUSY: 'The server is busy: try again in a moment.',
  REGISTRATION_CLOSED: 'This server does not take new registrations.',
  GUESTS_DISABLED: 'This server does not allow guests.',
  TOO_MANY_CONNECTIONS: 'The server has too many connections: try again later.',
  SERVER_SHUTTING_DOWN: 'The server is shutting down.',
  GUEST_NOT_ALLOWED: 'Guests cannot do that.',
};
const sentence = (text) => (text ? text.charAt(0).toUpperCase() + text.slice(1) : '');
const describe = (error) => {
  if (error.code === 'KICKED') return kickedText(error);
  if (error.code === 'BANNED') return bannedText(error);
  return ERRORS[error.code] || error.message || error.code;
};

// An operator's doing in words, from the error's own fields (who, why, until when), each of them
// optional; with none, the server's message.
function kickedText(error) {
  if (!error.by && !error.reason) return sentence(error.message) || 'You were disconnected by an operator.';
  return `You were kicked${error.by ? ' by ' + error.by : ''}${error.reason ? ': ' + error.reason : '.'}`;
}
function bannedText(error) {
  if (!error.by && !error.reason && !error.until) return sentence(error.message) || 'You are banned from this server.';
  return `This account is banned${error.by ? ' by ' + error.by : ''}${error.until ? ' until ' + formatDateTime(error.until) : ''}`
    + (error.reason ? ': ' + error.reason : '.');
}

const store = {
  get token() { return localStorage.getItem('parley.token'); },
  get user() { return localStorage.getItem('parley.user'); },
  save(user, token) { localStorage.setItem('parley.user', user); if (token) localStorage.setItem('parley.token', token); },
  clear() { localStorage.removeItem('parley.token'); localStorage.removeItem('parley.user'); },
  forgetToken() { localStorage.removeItem('parley.token'); },
  // Login tokens given up while offline: the server still honours them until told `revoke`.
  get revokes() {
    try {
      const list = JSON.parse(localStorage.getItem('parley.pendingRevoke') || '[]');
      return Array.isArray(list) ? list.filter((t) => typeof t === 'string') : [];
    } catch { return []; }
  },
  set revokes(list) {
    if (list.length) localStorage.setItem('parley.pendingRevoke', JSON.stringify([...new Set(list)]));
    else localStorage.removeItem('parley.pendingRevoke');
  },
  get open() { return sessionStorage.getItem('parley.open') || 'room:general'; },
  set open(key) { sessionStorage.setItem('parley.open', key); },
};

// ---------------------------------------------------------------- connection

class Link {
  constructor(onFrame, onState) {
    this.onFrame = onFrame;
    this.onState = onState;
    this.nextId = 1;
    this.pending = new Map();
    this.ws = null;
    this.delay = 500;
    this.wanted = true;
  }
  open() {
    this.wanted = true;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => { this.delay = 500; };
    ws.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (frame.id !== undefined && this.pending.has(frame.id)) {
        const { resolve, reject } = this.pending.get(frame.id);
        this.pending.delete(frame.id);
        if (frame.type === 'error') reject(frame); else resolve(frame);
        return;
      }
      this.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const { reject } of this.pending.values()) reject({ code: 'DISCONNECTED', message: 'the connection dropped' });
      this.pending.clear();
      this.onState('closed', event);
      if (this.wanted) {
        setTimeout(() => { if (this.wanted && !this.ws) this.open(); }, this.delay);
        this.delay = Math.min(this.delay * 2, 8000);
      }
    };
  }
  close() { this.wanted = false; if (this.ws) this.ws.close(1000); }
  get connected() { return this.ws && this.ws.readyState === WebSocket.OPEN; }
  post(frame) { if (this.connected) this.ws.send(JSON.stringify(frame)); }
  request(frame) {
    return new Promise((resolve, reject) => {
      if (!this.connected) { reject({ code: 'DISCONNECTED', message: 'not connected' }); return; }
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, id }));
    });
  }
}

// ---------------------------------------------------------------- state

const app = {
  me: null,          // my name as the server shows it
  guest: false,
  hello: null,
  convs: new Map(),  // key -> conversation
  openKey: store.open,
  online: new Set(), // lower-case names known to be online
  names: new Map(),  // lower-case -> shown name
  onlineCount: 0,
  everyone: true,
  newest: 0,         // the newest message id received: resume point after a dropped connection
  acked: 0,
  loggedIn: false,
  resuming: false,   // logged in before on this page: a reconnect, not a new visit
  replaying: false,  // between welcome and replay_end: render once at the end
  freshReplay: false, // this replay is what was missed while away (not a reconnect): show the divider
  groupInfo: new Map(), // lower group -> {owner, inviteOnly, members: [...] }
  followed: new Set(),
  backoff: 0,        // seconds of the last wait after RATE_LIMITED (doubles while it lasts)
  retry: null,       // cancels the countdown to the next automatic login
  hold: null,        // cancels the countdown that keeps the sign-in buttons off
  motd: '',          // the server's welcome message, sent at every login
  removed: null,     // the KICKED or BANNED error that ended the session: no reconnecting by itself
  refused: null,     // why an automatic login was refused for good (BANNED): not tried again by itself
};

function keyOf(message) {
  if (message.room) return lower(message.room) === 'general' ? 'room:general' : 'room:' + lower(message.room);
  const other = lower(message.from) === lower(app.me) ? message.to : message.from;
  return 'dm:' + lower(other);
}

function conv(key, create = true) {
  let c = app.convs.get(key);
  if (!c && create) {
    const [kind, rest] = [key.slice(0, key.indexOf(':')), key.slice(key.indexOf(':') + 1)];
    c = {
      key, kind: kind === 'dm' ? 'private' : (rest === 'general' ? 'general' : 'group'),
      name: rest === 'general' ? 'General' : rest,
      items: [],          // messages (by id) and notices, oldest first
      ids: new Set(),
      unread: 0, mention: false, readThrough: 0,
      more: null,         // whether older history exists (null: not asked yet)
      loading: false, divider: null,
    };
    app.convs.set(key, c);
  }
  return c;
}

// Names as the server shows them (registered case), learnt from what it sends.
function learn(name) {
  if (name) app.names.set(lower(name), name);
  return name;
}
function showName(name) {
  return app.names.get(lower(name)) || name;
}

// ---------------------------------------------------------------- frames from the server

let link;

function onFrame(f) {
  switch (f.type) {
    case 'hello':
      app.hello = f;
      $('server-name').textContent = `Server ${f.server}`;
      $('guest').hidden = !f.guests;
      $('register').hidden = !f.registration;
      revokePending().then(autoLogin);
      break;
    case 'message': addMessage(f, f.replay === true); break;
    case 'replay_more': {
      const key = f.room ? keyOf({ room: f.room }) : 'dm:' + lower(f.with);
      conv(key).more = true;
      break;
    }
    case 'replay_end':
      app.replaying = false;
      app.freshReplay = false;
      openConv(app.openKey);
      break;
    case 'presence': onPresence(f); break;
    case 'online_count':
      app.onlineCount = f.count; app.everyone = f.everyone; renderCount();
      break;
    case 'group': onGroupEvent(f); break;
    case 'invited':
      notice(conv('room:' + lower(f.group)), `${f.by} invited you to ${f.group}`);
      conv('room:' + lower(f.group)).invited = true;
      renderSidebar();
      break;
    case 'ping': link.post({ type: 'pong' }); break;
    case 'shutdown': banner('The server is restarting: reconnecting…'); break;
    case 'notice': operatorNotice(f); break;
    case 'motd': app.motd = typeof f.text === 'string' ? f.text : ''; renderMotd(); break;
    case 'error':
      if (f.code === 'LOGGED_OUT') signedOut(f.message || 'You were logged out.');
      else if (f.code === 'KICKED' || f.code === 'BANNED') removed(f);
      else if (f.code === 'TOO_MANY_CONNECTIONS' || f.code === 'SERVER_BUSY') setStatus(describe(f));
      else if (f.code !== 'SERVER_SHUTTING_DOWN') chatStatus(describe(f));
      break;
  }
}

function addMessage(m, replayed) {
  const key = keyOf(m);
  const c = conv(key);
  learn(m.from);
  if (m.to) learn(m.to);
  if (c.kind === 'private') c.name = showName(key.slice(3));
  if (c.ids.has(m.messageId)) return;
  c.ids.add(m.messageId);
  if (m.messageId > app.newest) app.newest = m.messageId;
  const mine = lower(m.from) === lower(app.me || '');
  const item = { id: m.messageId, time: m.time, from: m.from, text: m.text, kind: c.kind, mine };
  insert(c, item);
  if (replayed && app.freshReplay && !mine && c.divider === null) c.divider = m.messageId;
  if (!mine && m.messageId > c.readThrough) {
    if (key !== app.openKey || document.hidden) {
      c.unread += 1;
      if (mentions(m.text)) c.mention = true;
    } else {
      c.readThrough = m.messageId;
    }
  }
  if (m.room && c.kind === 'group' && !c.joined) c.joined = true;
  scheduleAck();
  if (!app.replaying) { renderMessage(c, item); renderSidebar(); renderTitle(); }
}

function insert(c, item) {
  let i = c.items.length;
  while (i > 0 && (c.items[i - 1].id || 0) > item.id) i--;
  c.items.splice(i, 0, item);
}

function mentions(text) {
  if (!app.me) return false;
  const escaped = app.me.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  return new RegExp(`(^|[^\\w.-])@?${escaped}($|[^\\w-])`, 'i').test(text);
}

function notice(c, text) {
  c.items.push({ notice: true, text, time: new Date().toISOString(), id: null });
  if (c.key === app.openKey && !app.replaying) renderMessages();
}

// A system notice from an operator, to everyone online: a highlighted line in General and, so
// that it is seen wherever one is, in the open conversation too.
function operatorNotice(f) {
  const time = new Date().toISOString();
  for (const key of new Set(['room:general', app.openKey])) {
    const c = conv(key);
    c.items.push({ system: true, by: f.by || '', text: typeof f.text === 'string' ? f.text : '', time, id: null });
    if (c.key === app.openKey && !app.replaying) renderMessages();
  }
}

let ackTimer = null;
function scheduleAck() {
  if (ackTimer) return;
  ackTimer = setTimeout(() => {
    ackTimer = null;
    if (app.loggedIn && app.newest > app.acked) { app.acked = app.newest; link.post({ type: 'ack', through: app.newest }); }
  }, 500);
}

function onPresence(f) {
  const changes = f.changes || [];
  if (f.snapshot) {
    app.online = new Set(changes.filter((c) => c.online).map((c) => lower(c.username)));
  }
  for (const change of changes) {
    const name = learn(change.username);
    const key = lower(name);
    const was = app.online.has(key);
    if (change.online) app.online.add(key); else app.online.delete(key);
    if (!f.snapshot && f.id === undefined && was !== change.online && key !== lower(app.me || '')) {
      const text = `${name} is ${change.online ? 'online' : 'offline'}`;
      if (app.convs.has('dm:' + key)) notice(conv('dm:' + key), text);
      notice(conv('room:general'), text);
    }
  }
  if (app.everyone) app.onlineCount = app.online.size;
  renderCount(); renderSidebar(); renderPeople(); renderHeader();
}

function onGroupEvent(f) {
  const c = conv('room:' + lower(f.group));
  c.name = f.group;
  const info = app.groupInfo.get(lower(f.group));
  const who = f.username ? learn(f.username) : '';
  const isMe = who && lower(who) === lower(app.me);
  switch (f.event) {
    case 'joined': notice(c, `${who} joined ${f.group}`); if (isMe) c.joined = true; break;
    case 'left': notice(c, `${who} left ${f.group}`); if (isMe) c.joined = false; break;
    case 'removed':
      notice(c, `${who} was removed from ${f.group}${f.by ? ' by ' + f.by : ''}`);
      if (isMe) c.joined = false;
      break;
    case 'owner': notice(c, `${who} now owns ${f.group}`); if (info) info.owner = who; break;
    case 'mode':
      notice(c, `${f.group} is now ${f.inviteOnly ? 'invite only' : 'open to everyone'}`);
      if (info) info.inviteOnly = f.inviteOnly;
      break;
    case 'deleted': notice(c, `${f.group} was deleted`); c.joined = false; break;
  }
  if (c.key === app.openKey) loadMembers();
  renderSidebar();
}

// ---------------------------------------------------------------- signing in

function setStatus(text) { $('signin-status').textContent = text; }
function chatStatus(text) {
  $('chat-status').textContent = text;
  clearTimeout(chatStatus.timer);
  chatStatus.timer = setTimeout(() => { $('chat-status').textContent = ''; }, 6000);
}
function banner(text) { $('banner').textContent = text; $('banner').hidden = !text; }

function autoLogin() {
  if (app.loggedIn || !link.connected) return;
  const token = store.token, user = store.user;
  if (app.refused) {
    // Refused for good on this page (banned): the reason stays at the sign-in form.
    banner('');
    showSignin();
    setStatus(app.refused);
  } else if (token && user) {
    login({ username: user, token, since: app.resuming ? app.newest : undefined }, true);
  } else if (app.resuming && app.guest && app.me) {
    login({ guestName: app.me }, true);
  } else {
    banner('');
    showSignin();
  }
}

// Tells the server to forget the tokens given up while offline, before any login; each leaves
// the list once answered ok (a dropped connection leaves the rest for the next one).
async function revokePending() {
  for (const token of store.revokes) {
    try {
      await link.request({ type: 'revoke', token });
      store.revokes = store.revokes.filter((t) => t !== token);
    } catch (error) {
      if (error.code === 'DISCONNECTED') return;
    }
  }
}

// Counts whole seconds down: tick(n) now and each second while n > 0, then done(). Returns a
// function that cancels it.
function countdown(seconds, tick, done) {
  let left = seconds;
  tick(left);
  const timer = setInterval(() => {
    left -= 1;
    if (left > 0) tick(left); else { clearInterval(timer); done(); }
  }, 1000);
  return () => clearInterval(timer);
}

// How long to wait after RATE_LIMITED: the server's retryAfter when it says, else doubling from
// 1 s; at most a minute.
function retryDelay(error) {
  app.backoff = Math.min(Math.max(app.backoff * 2, 1), 60);
  const wait = typeof error.retryAfter === 'number' && error.retryAfter > 0 ? error.retryAfter : app.backoff;
  return Math.max(1, Math.min(Math.ceil(wait), 60));
}

// RATE_LIMITED on something the user typed: the wait is shown and the buttons are off meanwhile.
function holdOff(error, buttons, show) {
  for (const b of buttons) b.disabled = true;
  return countdown(retryDelay(error), (n) => show(`Too many attempts: try again in ${n} s.`), () => {
    for (const b of buttons) b.disabled = false;
    show('You can try again now.');
  });
}

async function login(credentials, automatic) {
  setStatus('');
  const frame = credentials.guestName !== undefined
    ? { type: 'guest', name: credentials.guestName }
    : { type: 'login', username: credentials.username, ack: true };
  if (credentials.password !== undefined) { frame.password = credentials.password; frame.remember = true; }
  if (credentials.token !== undefined) frame.token = credentials.token;
  if (credentials.since) frame.since = credentials.since;
  try {
    app.replaying = frame.type === 'login';
    app.freshReplay = !app.resuming;
    const welcome = await link.request(frame);
    stopWaiting();
    app.backoff = 0;
    app.me = learn(welcome.username);
    app.guest = welcome.guest === true;
    app.loggedIn = true;
    app.refused = null;
    if (!app.guest) store.save(welcome.username, welcome.token);
    if (app.guest) app.replaying = false;
    banner('');
    enterChat();
    if (app.resuming) notice(conv(app.openKey), 'Reconnected.');
    app.resuming = true;
  } catch (error) {
    app.replaying = false;
    if (error.code === 'DISCONNECTED') return;
    if (error.code === 'RATE_LIMITED') { rateLimited(error, automatic); return; }
    if (error.code === 'BANNED') {
      // The reason (who, why, until when) at the sign-in form; an automatic login is not tried
      // again on this page (a reload tries once more), so a ban is never a reconnecting loop.
      if (automatic) { resetState(); app.refused = describe(error); }
      banner('');
      showSignin();
      setStatus(describe(error));
      return;
    }
    if (automatic && error.code === 'INVALID_CREDENTIALS') store.clear();
    if (automatic && error.code !== 'INVALID_CREDENTIALS') { banner(describe(error)); return; }
    showSignin();
    setStatus(describe(error));
  }
}

// Automatic logins try again by themselves after the wait; a typed password waits for the user.
function rateLimited(error, automatic) {
  if (automatic) {
    if (app.retry) app.retry();
    app.retry = countdown(retryDelay(error), (n) => banner(`Too many attempts; retrying in ${n} s`), () => {
      app.retry = null;
      banner('');
      autoLogin();
    });
  } else {
    showSignin();
    if (app.hold) app.hold();
    app.hold = holdOff(error, [$('login'), $('register')], setStatus);
  }
}

function stopWaiting() {
  if (app.retry) { app.retry(); app.retry = null; }
  if (app.hold) { app.hold(); app.hold = null; }
  for (const b of [$('login'), $('register')]) b.disabled = false;
}

// Forgets who was logged in on this page, ready for the sign-in form.
function resetState() {
  stopWaiting();
  Object.assign(app, { me: null, guest: false, loggedIn: false, resuming: false, replaying: false, freshReplay: false,
    newest: 0, acked: 0, onlineCount: 0, everyone: true, backoff: 0, removed: null });
  for (const collection of [app.convs, app.online, app.groupInfo, app.followed]) collection.clear();
  $('chat').classList.remove('show-sidebar', 'show-people');
  closeAccount();
  closeRemoved();
}

// An operator ended this session (KICKED) or banned the account or the address (BANNED), and
// the server closes the connection: the page says who did it and why (and until when), and
// does not reconnect by itself. "Reconnect" (in the dialog) is the way back, by hand: after a
// kick it logs in again with the token; under a ban the sign-in form shows the refusal.
function removed(f) {
  link.close();
  const text = describe(f);
  const inChat = app.loggedIn || !$('chat').hidden;
  app.removed = f;
  app.loggedIn = false;
  app.followed.clear();
  stopWaiting();
  closeAccount();
  banner(text);
  if (!inChat) {
    // Refused before any login (an address ban): the reason at the sign-in form too.
    showSignin();
    setStatus(text);
    return;
  }
  $('removed-title').textContent = f.code === 'KICKED' ? 'You were kicked' : 'You are banned';
  $('removed-text').textContent = text;
  if (!$('removed').open) $('removed').showModal();
}

function closeRemoved() {
  if ($('removed').open) $('removed').close();
}

function reconnectByHand() {
  closeRemoved();
  app.removed = null;
  banner('Connecting…');
  link.open();
}

// The server ended this session (LOGGED_OUT: the password changed, "log out everywhere", or
// ended from another session) and revoked its token: back to the sign-in form, with the reason,
// and no automatic login with that token when the connection comes back.
function signedOut(text) {
  store.forgetToken();
  resetState();
  banner('');
  showSignin();
  setStatus(text);
}

// "Log out": the token goes on the pending-revoke list first, and leaves it once the server has
// ended the session (which forgets the token). Offline, or if the connection drops on the way, it
// stays there for the next connection (see revokePending), so that the server never keeps
// honouring a token that nobody holds any more.
async function logOut() {
  const token = store.token;
  store.clear();
  if (token) store.revokes = [...store.revokes, token];
  if (app.loggedIn) {
    try {
      await link.request({ type: 'logout' });
      store.revokes = store.revokes.filter((t) => t !== token);
    } catch { /* revoked at the next connection */ }
  }
  if (link.connected) { location.reload(); return; }
  // Offline: the page cannot be loaded again from the server, so it starts over here.
  const wasRemoved = app.removed !== null;
  resetState();
  showSignin();
  banner('Offline: reconnecting…');
  // After a kick or a ban the page had stopped reconnecting: it connects again to revoke the
  // token (and logs in as nobody).
  if (wasRemoved) link.open();
}

function showSignin() {
  $('signin').hidden = false;
  $('chat').hidden = true;
  if (store.user && !$('username').value) $('username').value = store.user;
}

function signinHandlers() {
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const username = $('username').value.trim(), password = $('password').value;
    if (!username || !password) { setStatus('Enter a user name and a password.'); return; }
    login({ username, password });
  });
  $('register').addEventListener('click', async () => {
    const username = $('username').value.trim(), password = $('password').value;
    if (!username || !password) { setStatus('Choose a user name and a password to register.'); return; }
    setStatus('');
    try {
      await link.request({ type: 'register', username, password });
      await login({ username, password });
    } catch (error) { setStatus(describe(error)); }
  });
  $('guest').addEventListener('click', () => {
    const name = $('username').value.trim();
    if (!name) { setStatus('Enter the name to use as a guest.'); return; }
    login({ guestName: name });
  });
}

// ---------------------------------------------------------------- the chat

function enterChat() {
  $('signin').hidden = true;
  $('chat').hidden = false;
  $('password').value = '';
  $('me').textContent = app.me + (app.guest ? ' (guest)' : '');
  for (const id of ['browse-groups', 'new-group-form', 'account-open']) $(id).hidden = app.guest;
  conv('room:general');
  if (!app.guest) loadMyGroups();
  if (!app.convs.has(app.openKey)) app.openKey = 'room:general';
  openConv(app.openKey);
  $('composer').focus();
}

async function loadMyGroups() {
  let after;
  for (;;) {
    const reply = await link.request(after ? { type: 'my_groups', after } : { type: 'my_groups' }).catch(() => null);
    if (!reply) return;
    for (const g of reply.groups) {
      const c = conv('room:' + lower(g.name));
      c.name = g.name; c.joined = true;
      app.groupInfo.set(lower(g.name), { owner: g.owner, inviteOnly: g.inviteOnly });
    }
    if (!reply.more || reply.groups.length === 0) break;
    after = reply.groups[reply.groups.length - 1].name;
  }
  renderSidebar();
}

function openConv(key) {
  const c = conv(key);
  app.openKey = key;
  store.open = key;
  markRead(c);
  $('chat').classList.remove('show-sidebar');
  $('browse').hidden = true;
  renderSidebar();
  renderHeader();
  renderMessages(true);
  if (!app.replaying && (c.more === null || c.items.filter((i) => i.id).length < 30)) loadOlder(c);
  if (c.kind === 'private') follow([c.name]);
  loadMembers();
}

function markRead(c) {
  c.unread = 0; c.mention = false;
  const last = c.items.filter((i) => i.id).pop();
  if (last) c.readThrough = Math.max(c.readThrough, last.id);
  renderTitle();
}

async function loadOlder(c) {
  if (c.loading || c.more === false || (c.kind === 'private' && app.guest)) return;
  if (c.kind === 'group' && c.joined === false) return;
  c.loading = true;
  const oldest = c.items.find((i) => i.id);
  const target = c.kind === 'private' ? { with: c.name } : { room: c.kind === 'general' ? 'general' : c.name };
  const frame = { type: 'history', ...target, limit: 50 };
  if (oldest) frame.before = oldest.id;
  const list = $('messages');
  const fromBottom = list.scrollHeight - list.scrollTop;
  try {
    const reply = await link.request(frame);
    for (const m of reply.messages) {
      if (c.ids.has(m.messageId)) continue;
      c.ids.add(m.messageId);
      learn(m.from);
      insert(c, { id: m.messageId, time: m.time, from: m.from, text: m.text, kind: c.kind, mine: lower(m.from) === lower(app.me) });
      if (m.messageId > c.readThrough && c.key === app.openKey) c.readThrough = m.messageId;
    }
    c.more = reply.more === true;
  } catch (error) {
    if (error.code !== 'DISCONNECTED') c.more = false;
  }
  c.loading = false;
  if (c.key === app.openKey) {
    renderMessages();
    list.scrollTop = list.scrollHeight - fromBottom;
  }
}

async function follow(names) {
  const wanted = names.filter((n) => !app.followed.has(lower(n)));
  if (!wanted.length || app.guest) return;
  wanted.forEach((n) => app.followed.add(lower(n)));
  try {
    const reply = await link.request({ type: 'follow', users: wanted });
    onPresence({ changes: reply.changes, id: reply.id });
  } catch { wanted.forEach((n) => app.followed.delete(lower(n))); }
}

async function loadMembers() {
  const c = conv(app.openKey);
  if (c.kind === 'group' && c.joined !== false && !app.guest) {
    const members = [];
    let after, head;
    for (;;) {
      const reply = await link.request(after ? { type: 'group_members', group: c.name, after } : { type: 'group_members', group: c.name }).catch(() => null);
      if (!reply) break;
      head = reply;
      members.push(...reply.members);
      if (!reply.more || !reply.members.length) break;
      after = reply.members[reply.members.length - 1].username;
    }
    if (head) {
      c.name = head.group;
      app.groupInfo.set(lower(head.group), { owner: head.owner, inviteOnly: head.inviteOnly, members });
      for (const m of members) { learn(m.username); if (m.online) app.online.add(lower(m.username)); else app.online.delete(lower(m.username)); }
    }
  } else if (c.kind === 'general' && !app.everyone) {
    const reply = await link.request({ type: 'who', limit: 200 }).catch(() => null);
    if (reply) { for (const u of reply.users) { learn(u); app.online.add(lower(u)); } app.onlineCount = reply.count; }
  }
  renderHeader(); renderPeople(); renderCount();
}

async function send(text) {
  const c = conv(app.openKey);
  const target = c.kind === 'private' ? { to: c.name } : { room: c.kind === 'general' ? 'general' : c.name };
  try {
    const stored = await link.request({ type: 'send', ...target, text });
    addMessage(stored, false);
    return true;
  } catch (error) {
    chatStatus(error.code === 'DISCONNECTED' ? 'Not sent: you are offline. It is still in the box; send it again once reconnected.' : describe(error));
    return false;
  }
}

async function groupRequest(frame, done) {
  try { const reply = await link.request(frame); if (done) done(reply); return reply; } catch (error) { chatStatus(describe(error)); return null; }
}

// ---------------------------------------------------------------- rendering

function formatTime(iso) {
  const d = new Date(iso);
  const now = new Date();
  const hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === now.toDateString() ? hm : d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + hm;
}

// A moment in full, in local time: "5 Dec 2026, 11:00" (the text as given when it is no date).
function formatDateTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString([], { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

// The welcome message, above General's messages while one is logged in.
function renderMotd() {
  const open = conv(app.openKey, false);
  $('motd').textContent = app.motd;
  $('motd').hidden = !app.motd || !app.loggedIn || !open || open.kind !== 'general';
}

function messageElement(c, item) {
  if (item.system) {
    const li = el('li', 'msg kind-system');
    const time = el('time', 'time', formatTime(item.time));
    time.dateTime = item.time;
    li.append(time, el('span', 'label', item.by ? `Notice from ${item.by}` : 'Notice'), el('span', 'text', item.text));
    return li;
  }
  const li = el('li', 'msg kind-' + (item.notice ? 'notice' : item.kind));
  if (item.notice) { li.textContent = item.text; return li; }
  li.dataset.id = item.id;
  const time = el('time', 'time', formatTime(item.time));
  time.dateTime = item.time;
  const from = el('span', 'from', showName(item.from));
  from.dataset.user = item.from;
  li.append(time, from, el('span', 'text', item.text));
  if (!item.mine && mentions(item.text)) li.classList.add('mentions-me');
  return li;
}

function renderMessages(toBottom) {
  const c = conv(app.openKey);
  const list = $('messages');
  const atBottom = toBottom || list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const nodes = [];
  if (c.loading) nodes.push(el('li', 'loading', 'Loading…'));
  else if (c.more) nodes.push(el('li', 'loading', 'Scroll up for older messages'));
  for (const item of c.items) {
    if (c.divider !== null && item.id === c.divider) nodes.push(el('li', 'divider', 'new since you were away'));
    nodes.push(messageElement(c, item));
  }
  list.replaceChildren(...nodes);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function renderMessage(c, item) {
  if (c.key !== app.openKey) return;
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const last = c.items[c.items.length - 1];
  if (last !== item) { renderMessages(); return; }
  list.append(messageElement(c, item));
  if (atBottom || item.mine) list.scrollTop = list.scrollHeight;
}

function convItem(c) {
  const li = el('li', 'conv' + (c.key === app.openKey ? ' active' : '') + (c.unread ? ' has-unread' : ''));
  li.dataset.key = c.key;
  if (c.kind === 'private') li.append(el('span', 'dot' + (app.online.has(lower(c.name)) ? ' online' : '')));
  li.append(el('span', 'name', c.kind === 'group' ? '# ' + c.name : showName(c.name)));
  if (c.mention) li.append(el('span', 'mention', '@'));
  if (c.unread) li.append(el('span', 'unread', String(c.unread)));
  if (c.invited && !c.joined) {
    const join = el('button', 'link', 'join');
    join.addEventListener('click', (e) => { e.stopPropagation(); joinGroup(c.name); });
    li.append(join);
  }
  li.addEventListener('click', () => openConv(c.key));
  return li;
}

function sortedConvs(kind) {
  return [...app.convs.values()].filter((c) => c.kind === kind && (kind !== 'group' || c.joined || c.invited || c.key === app.openKey))
    .sort((a, b) => lower(a.name).localeCompare(lower(b.name)));
}

function renderSidebar() {
  $('rooms').replaceChildren(convItem(conv('room:general')));
  $('groups').replaceChildren(...sortedConvs('group').map(convItem));
  $('privates').replaceChildren(...sortedConvs('private').map(convItem));
}

function renderTitle() {
  const total = [...app.convs.values()].reduce((n, c) => n + c.unread, 0);
  document.title = (total ? `(${total}) ` : '') + 'Parley';
}

function renderCount() {
  $('online-count').textContent = `${app.onlineCount || app.online.size} online`;
}

function renderHeader() {
  const c = conv(app.openKey);
  $('conv-title').textContent = c.kind === 'group' ? '# ' + c.name : (c.kind === 'private' ? showName(c.name) : 'General');
  const info = app.groupInfo.get(lower(c.name));
  let text = '';
  if (c.kind === 'private') text = app.online.has(lower(c.name)) ? 'online' : 'offline';
  else if (c.kind === 'group' && info && info.members) {
    const on = info.members.filter((m) => app.online.has(lower(m.username))).length;
    text = `${info.members.length} members, ${on} online · owner ${info.owner}${info.inviteOnly ? ' · invite only' : ''}`;
  } else if (c.kind === 'general') text = `${app.onlineCount || app.online.size} online`;
  $('conv-info').textContent = text;
  $('leave-group').hidden = !(c.kind === 'group' && c.joined);
  $('composer').disabled = c.kind === 'group' && c.joined === false;
  renderMotd();
}

function personItem(name, online, extra) {
  const li = el('li');
  li.append(el('span', 'dot' + (online ? ' online' : '')));
  const who = el('span', 'who', showName(name));
  who.dataset.user = name;
  li.append(who);
  if (extra) extra(li);
  return li;
}

function renderPeople() {
  const c = conv(app.openKey);
  const info = app.groupInfo.get(lower(c.name));
  const list = [];
  let title = 'Online';
  if (c.kind === 'group' && info && info.members) {
    title = 'Members';
    const owner = lower(info.owner) === lower(app.me);
    for (const m of info.members) {
      list.push(personItem(m.username, app.online.has(lower(m.username)), (li) => {
        if (m.owner) li.append(el('span', 'tag', 'owner'));
        if (owner && !m.owner) {
          const remove = el('button', 'remove', 'remove');
          remove.addEventListener('click', () => groupRequest({ type: 'group_remove', group: c.name, user: m.username }));
          const transfer = el('button', 'transfer', 'make owner');
          transfer.addEventListener('click', () => groupRequest({ type: 'group_transfer', group: c.name, user: m.username }));
          li.append(remove, transfer);
        }
      }));
    }
    $('owner-tools').hidden = !owner;
    $('invite-only').checked = info.inviteOnly === true;
  } else {
    $('owner-tools').hidden = true;
    const names = c.kind === 'private' ? [c.name, app.me] : [...app.online];
    for (const n of names.sort((a, b) => lower(a).localeCompare(lower(b)))) list.push(personItem(n, app.online.has(lower(n))));
    title = c.kind === 'private' ? 'People' : 'Online';
  }
  $('people-title').textContent = title;
  $('people-list').replaceChildren(...list);
}

async function joinGroup(name) {
  await groupRequest({ type: 'group_join', group: name }, () => {
    const c = conv('room:' + lower(name));
    c.joined = true; c.invited = false; c.more = null;
    openConv(c.key);
  });
}

async function browseGroups() {
  const reply = await groupRequest({ type: 'groups' });
  if (!reply) return;
  $('browse-list').replaceChildren(...reply.groups.map((g) => {
    const li = el('li');
    li.append(el('span', 'who', `# ${g.name} (${g.members})${g.inviteOnly ? ' · invite only' : ''}`));
    if (!g.joined) {
      const join = el('button', 'join', 'join');
      join.addEventListener('click', () => joinGroup(g.name));
      li.append(join);
    }
    return li;
  }));
  $('browse').hidden = false;
  $('chat').classList.add('show-people');
}

// ---------------------------------------------------------------- the account

function accountStatus(id, text, ok) {
  $(id).textContent = text;
  $(id).classList.toggle('ok', ok === true);
}

function openAccount() {
  $('chat').classList.remove('show-sidebar');
  $('account-user').value = app.me || '';
  accountStatus('password-status', '');
  $('sessions-list').replaceChildren();
  $('account').showModal();
  loadSessions();
}

function closeAccount() {
  if ($('account').open) $('account').close();
  for (const id of ['current-password', 'new-password', 'confirm-password']) $(id).value = '';
}

async function loadSessions() {
  accountStatus('sessions-status', '');
  let reply;
  try {
    reply = await link.request({ type: 'sessions' });
  } catch (error) {
    accountStatus('sessions-status', error.code === 'DISCONNECTED' ? 'Offline: the list comes back once reconnected.' : describe(error));
    return;
  }
  const sessions = [...reply.sessions].sort((a, b) => (b.current === true) - (a.current === true) || a.since.localeCompare(b.since));
  $('sessions-list').replaceChildren(...sessions.map(sessionItem));
}

function sessionItem(s) {
  const li = el('li', s.current ? 'current' : '');
  li.dataset.session = s.session;
  li.append(el('span', 'where', `${s.transport} · ${s.address}`));
  const since = el('time', 'muted', 'since ' + formatTime(s.since));
  since.dateTime = s.since;
  li.append(since);
  if (s.current) {
    li.append(el('span', 'tag', 'this device'));
  } else {
    const end = el('button', 'end', 'End');
    end.setAttribute('aria-label', `End the ${s.transport} session from ${s.address}`);
    end.addEventListener('click', async () => {
      end.disabled = true;
      try {
        await link.request({ type: 'end_session', session: s.session });
        li.remove();
        accountStatus('sessions-status', 'Session ended.', true);
      } catch (error) {
        end.disabled = false;
        if (error.code === 'BAD_REQUEST') { accountStatus('sessions-status', 'That session had already ended.'); loadSessions(); }
        else accountStatus('sessions-status', error.code === 'DISCONNECTED' ? 'You are offline: try again once reconnected.' : describe(error));
      }
    });
    li.append(end);
  }
  return li;
}

async function changePassword() {
  const current = $('current-password').value, password = $('new-password').value;
  const say = (text, ok) => accountStatus('password-status', text, ok);
  if (!current || !password) { say('Enter your current password and a new one.'); return; }
  if (password !== $('confirm-password').value) { say('The two new passwords differ.'); return; }
  say('');
  try {
    await link.request({ type: 'change_password', current, password });
  } catch (error) {
    if (error.code === 'RATE_LIMITED') { holdOff(error, [$('change-password')], say); return; }
    say(error.code === 'INVALID_CREDENTIALS' ? 'The current password is wrong.'
      : error.code === 'DISCONNECTED' ? 'You are offline: try again once reconnected.' : describe(error));
    return;
  }
  for (const id of ['current-password', 'new-password', 'confirm-password']) $(id).value = '';
  say('Password changed. Your other sessions are logged out.', true);
  loadSessions();
}

async function logOutEverywhere() {
  try {
    await link.request({ type: 'logout', everywhere: true });
  } catch (error) {
    accountStatus('sessions-status', error.code === 'DISCONNECTED' ? 'You are offline: try again once reconnected.' : describe(error));
    return;
  }
  store.clear();
  location.reload();
}

function removedHandlers() {
  $('removed-reconnect').addEventListener('click', reconnectByHand);
  $('removed-close').addEventListener('click', closeRemoved);
}

function accountHandlers() {
  $('account-open').addEventListener('click', openAccount);
  $('account-close').addEventListener('click', closeAccount);
  $('account').addEventListener('close', closeAccount);
  $('password-form').addEventListener('submit', (e) => { e.preventDefault(); changePassword(); });
  $('refresh-sessions').addEventListener('click', loadSessions);
  $('logout-everywhere').addEventListener('click', logOutEverywhere);
}

// ---------------------------------------------------------------- wiring

function chatHandlers() {
  const composer = $('composer');
  const counter = $('counter');
  const updateCounter = () => {
    const max = (app.hello && app.hello.maxText) || 4000;
    const length = [...composer.value].length;
    counter.hidden = length < max * 0.8;
    counter.textContent = `${length}/${max}`;
    counter.classList.toggle('over', length > max);
    composer.style.height = 'auto';
    composer.style.height = Math.min(composer.scrollHeight + 2, 160) + 'px';
  };
  composer.addEventListener('input', updateCounter);
  composer.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); $('composer-form').requestSubmit(); }
  });
  $('composer-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = composer.value;
    if (!text.trim()) return;
    const max = (app.hello && app.hello.maxText) || 4000;
    if ([...text].length > max) { chatStatus(`A message is at most ${max} characters.`); return; }
    composer.value = '';
    updateCounter();
    if (!(await send(text)) && !composer.value) { composer.value = text; updateCounter(); }
  });
  $('messages').addEventListener('scroll', () => {
    const c = conv(app.openKey);
    if ($('messages').scrollTop < 60 && c.more) loadOlder(c);
  });
  document.addEventListener('click', (e) => {
    const user = e.target.dataset && e.target.dataset.user;
    if (user && lower(user) !== lower(app.me || '') && !app.guest) {
      conv('dm:' + lower(user)).name = showName(user);
      openConv('dm:' + lower(user));
    }
  });
  $('new-group-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('new-group').value.trim();
    if (!name) return;
    await groupRequest({ type: 'group_create', group: name, inviteOnly: $('new-group-invite').checked }, (reply) => {
      $('new-group').value = '';
      const c = conv('room:' + lower(reply.group || name));
      c.name = reply.group || name; c.joined = true; c.more = false;
      openConv(c.key);
    });
  });
  $('new-private-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('new-private').value.trim();
    if (!name) return;
    $('new-private').value = '';
    const c = conv('dm:' + lower(name));
    c.name = showName(name);
    openConv(c.key);
  });
  $('leave-group').addEventListener('click', () => {
    const c = conv(app.openKey);
    groupRequest({ type: 'group_leave', group: c.name }, () => { c.joined = false; openConv('room:general'); });
  });
  $('invite-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const user = $('invite-user').value.trim();
    if (!user) return;
    groupRequest({ type: 'group_invite', group: conv(app.openKey).name, user }, () => { $('invite-user').value = ''; chatStatus(`Invited ${user}.`); });
  });
  $('invite-only').addEventListener('change', (e) => {
    groupRequest({ type: 'group_mode', group: conv(app.openKey).name, inviteOnly: e.target.checked });
  });
  $('browse-groups').addEventListener('click', browseGroups);
  $('show-members').addEventListener('click', () => { $('chat').classList.toggle('show-people'); loadMembers(); });
  $('toggle-sidebar').addEventListener('click', () => $('chat').classList.toggle('show-sidebar'));
  $('logout').addEventListener('click', logOut);
  document.addEventListener('keydown', (e) => {
    if (!app.loggedIn) return;
    if (e.altKey && (e.key === 'ArrowUp' || e.key === 'ArrowDown')) {
      e.preventDefault();
      const order = [conv('room:general'), ...sortedConvs('group'), ...sortedConvs('private')];
      const i = order.findIndex((c) => c.key === app.openKey);
      const next = order[(i + (e.key === 'ArrowUp' ? order.length - 1 : 1)) % order.length];
      openConv(next.key);
    } else if (e.key === 'Escape') {
      markRead(conv(app.openKey));
      renderSidebar();
    }
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && app.loggedIn) { markRead(conv(app.openKey)); renderSidebar(); }
  });
}

function onState(state) {
  if (state === 'closed') {
    const was = app.loggedIn;
    app.loggedIn = false;
    app.followed.clear();
    renderMotd();
    if (app.removed) return; // kicked or banned: the banner says so, and nothing reconnects
    if (was || app.retry) banner('Offline: reconnecting…');
    if (app.retry) { app.retry(); app.retry = null; } // the next connection's hello logs in
  }
}

signinHandlers();
chatHandlers();
accountHandlers();
removedHandlers();
link = new Link(onFrame, onState);
window.parley = { app, link }; // for tests and the curious
link.open();
