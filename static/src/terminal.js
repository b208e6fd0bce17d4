// Web terminal: a full-window xterm.js attached to a reconnecting PTY on a
// workspace agent through the server's websocket relay (package terminal).
//
// The page provides one element:
//
//   <div id="terminal"
//        data-ws-path="/api/v2/workspaceagents/{agent}/pty"  (required; a path
//                      on this origin, or a full ws:// or wss:// URL for a proxy)
//        data-agent-id="{agent uuid}"        (optional; logged, not used)
//        data-agent-name="{name}"            (optional; shown in the title)
//        data-command="htop"                 (optional; else ?command= of the page URL;
//                                             empty: the agent's login shell)
//        data-renderer="dom|webgl"></div>    (optional; overrides DEFAULT_RENDERER)
//
// The reconnect id lives in the page URL (?reconnect=<uuid>): it is created
// when absent and written back with history.replaceState, so that a reload
// re-attaches to the same session and its screen.
//
// Wire protocol (see terminal/relay.go): we send JSON text messages
// {"data":"..."}, {"height":R,"width":C} (this tab's own size: what fits
// its window), {"ack":N} (N bytes of output rendered since the last ack;
// the first {"ack":0} turns flow control on: the agent then reads the
// program's output only as fast as the fastest tab draws it, so Ctrl+C
// stops a flood at once) and {"claim":true} (the user types or clicks in
// this tab: the session takes this tab's size) and {"visible":false|true}
// (a hidden tab gets no output, then the current screen); we receive binary
// messages of raw output, text messages {"size":{"width","height",
// "active"}} (the session's size, in order with the output) and a text
// message {"exit_code":N} when the session's process exits (then close
// 1000). Any other close is retried with exponential backoff.
//
// Several tabs on one session: the session has one size, the size of the
// tab the user last typed or clicked in (or focused). Every tab shows the
// session at that size: a bigger window shows it in its top-left corner
// with the rest blank, a smaller one scrolls. When the active tab closes,
// the most recently active remaining tab gives the size.
//
// window.term is the xterm.js Terminal, for tests.

import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebglAddon } from "@xterm/addon-webgl";

// DEFAULT_RENDERER is xterm.js's renderer: "dom" (built in) or "webgl"
// (@xterm/addon-webgl, falling back to DOM if WebGL is unavailable or its
// context is lost). Chosen by measurement in Debian's headless Chromium
// (software WebGL, 2 cores, 1280x800, ~158x41 cells): 8.4 MB of coloured
// lines written in 64 KiB chunks with one animation frame each took
// 3.5-5.4 s with DOM and 12-15 s with WebGL (three rounds each). Machines
// with a GPU may prefer WebGL: override per page with data-renderer, or
// per load with ?renderer=dom|webgl.
const DEFAULT_RENDERER = "dom";

const FONT_KEY = "coder.terminal.fontSize";
const FONT_DEFAULT = 14;
const FONT_MIN = 8;
const FONT_MAX = 32;

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
// Acknowledge rendered output in batches of this many bytes (or when the
// write queue drains); the relay allows 256 KiB unacknowledged.
const ACK_BATCH = 32 * 1024;

const el = document.getElementById("terminal");
if (!el) throw new Error("terminal: no #terminal element");

const pageURL = new URL(window.location.href);
const command = el.dataset.command || pageURL.searchParams.get("command") || "";

function newReconnectID() {
  const id = crypto.randomUUID();
  const u = new URL(window.location.href);
  u.searchParams.set("reconnect", id);
  history.replaceState(history.state, "", u);
  return id;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
let reconnectID = pageURL.searchParams.get("reconnect");
if (!reconnectID || !UUID_RE.test(reconnectID)) reconnectID = newReconnectID();

if (el.dataset.agentName) document.title = `${el.dataset.agentName} — Terminal`;

// --- status pill and restart button -------------------------------------

const status = document.createElement("div");
status.className = "terminal-status";
status.dataset.testid = "terminal-status";
status.setAttribute("role", "status");
status.setAttribute("aria-live", "polite");
const statusText = document.createElement("span");
const restart = document.createElement("button");
restart.type = "button";
restart.className = "terminal-restart";
restart.dataset.testid = "terminal-restart";
restart.textContent = "Restart session";
restart.hidden = true;
status.append(statusText, restart);
document.body.append(status);

let quietTimer = 0;
function setStatus(text, state) {
  statusText.textContent = text;
  status.dataset.state = state;
  status.classList.remove("quiet");
  clearTimeout(quietTimer);
  // "connected" fades away; the other states stay visible.
  if (state === "connected") quietTimer = setTimeout(() => status.classList.add("quiet"), 2000);
}

// --- terminal ---------------------------------------------------------------

function storedFontSize() {
  const n = Number(localStorage.getItem(FONT_KEY));
  return Number.isInteger(n) && n >= FONT_MIN && n <= FONT_MAX ? n : FONT_DEFAULT;
}

const term = new Terminal({
  fontFamily: '"DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, "Liberation Mono", monospace',
  fontSize: storedFontSize(),
  scrollback: 10000,
  // No blink: with the DOM renderer a blinking cursor delayed each echoed
  // keystroke by about one frame (term-bench echo p50 30.3 ms blinking,
  // 7.2 ms not, in the same run on the same machine).
  cursorBlink: false,
  macOptionIsMeta: true,
  theme: { background: "#0d1117", foreground: "#e6edf3", cursor: "#e6edf3", selectionBackground: "#264f78" },
});
window.term = term;
const fit = new FitAddon();
term.loadAddon(fit);
term.open(el);

const renderer = pageURL.searchParams.get("renderer") || el.dataset.renderer || DEFAULT_RENDERER;
if (renderer === "webgl") {
  try {
    const webgl = new WebglAddon();
    webgl.onContextLoss(() => webgl.dispose()); // back to DOM
    term.loadAddon(webgl);
  } catch (err) {
    console.warn("terminal: WebGL renderer unavailable, using DOM", err);
  }
}
el.dataset.renderer = renderer;

// --- sizes: this tab's own size, the session's size ------------------------

// ownSize is what fits this tab's window; sessionSize the session's size
// once the agent has told us (null with an agent that does not: then the
// terminal takes our own size, as before).
let ownSize = null;
let sessionSize = null;
let sessionActive = false;

// fitOwn measures this tab's own size and shows the session's (or, until
// it is known, our own).
function fitOwn() {
  // proposeDimensions is undefined while the element is hidden.
  const d = fit.proposeDimensions();
  if (!d || !d.cols || !d.rows) return false;
  ownSize = { cols: d.cols, rows: d.rows };
  if (sessionSize) showSize(sessionSize.cols, sessionSize.rows);
  else showSize(ownSize.cols, ownSize.rows);
  return true;
}

// refit follows a change of the window or font: it also tells the session.
function refit() {
  if (fitOwn() && conn) sendOwnSize(conn);
}

function showSize(cols, rows) {
  if (term.cols !== cols || term.rows !== rows) term.resize(cols, rows);
}

// sendOwnSize tells the session this tab's size (once per change).
function sendOwnSize(c) {
  const s = ownSize || { cols: term.cols, rows: term.rows };
  if (c.sentSize && c.sentSize.cols === s.cols && c.sentSize.rows === s.rows) return;
  c.sentSize = s;
  send(c, { height: s.rows, width: s.cols });
}

// onSessionSize handles {"size":{...}}: resize once the output before it
// is parsed, so the redraw after it lands at the new size.
function onSessionSize(size) {
  term.write("", () => {
    sessionSize = { cols: size.width, rows: size.height };
    sessionActive = !!size.active;
    showSize(sessionSize.cols, sessionSize.rows);
  });
}

// claim makes this tab the active one when the user works in it.
function claim() {
  if (conn && !sessionActive && conn.ws.readyState === WebSocket.OPEN) send(conn, { claim: true });
}
// sendVisibility tells the session whether this tab is visible: a hidden
// tab (whose timers, and so xterm.js's parsing, run once a second) gets no
// output and holds nobody back; shown again, it gets the current screen.
function sendVisibility(c) {
  const visible = document.visibilityState !== "hidden";
  if (c.sentVisible === visible || (c.sentVisible === undefined && visible)) return;
  c.sentVisible = visible;
  send(c, { visible });
}
document.addEventListener("visibilitychange", () => {
  if (conn && conn.ws.readyState === WebSocket.OPEN) sendVisibility(conn);
});

// For tests: this tab's own size, the session's, and whether it is active.
window.termSizes = () => ({ own: ownSize, session: sessionSize, active: sessionActive });
el.addEventListener("keydown", claim, true);
el.addEventListener("mousedown", claim, true);
window.addEventListener("focus", claim);

fitOwn();
let fitFrame = 0;
window.addEventListener("resize", () => {
  cancelAnimationFrame(fitFrame);
  fitFrame = requestAnimationFrame(refit);
});
term.focus();

function setFontSize(n) {
  n = Math.min(FONT_MAX, Math.max(FONT_MIN, n));
  term.options.fontSize = n;
  if (n === FONT_DEFAULT) localStorage.removeItem(FONT_KEY);
  else localStorage.setItem(FONT_KEY, String(n));
  refit();
}

// Keys: Ctrl+= / Ctrl+- / Ctrl+0 change the font size; Ctrl+Shift+C copies,
// Ctrl+Shift+V and Shift+Insert paste (the browser's paste event, which
// xterm.js handles); Cmd+C / Cmd+V on macOS are left to the browser.
term.attachCustomKeyEventHandler((ev) => {
  if (ev.type !== "keydown") return true;
  const ctrl = ev.ctrlKey && !ev.altKey && !ev.metaKey;
  if (ctrl && !ev.shiftKey && (ev.key === "=" || ev.key === "+")) {
    ev.preventDefault();
    setFontSize(term.options.fontSize + 1);
    return false;
  }
  if (ctrl && (ev.key === "-" || ev.key === "_")) {
    ev.preventDefault();
    setFontSize(term.options.fontSize - 1);
    return false;
  }
  if (ctrl && !ev.shiftKey && ev.key === "0") {
    ev.preventDefault();
    setFontSize(FONT_DEFAULT);
    return false;
  }
  if (ctrl && ev.shiftKey && (ev.key === "C" || ev.key === "c")) {
    ev.preventDefault();
    copySelection();
    return false;
  }
  if ((ctrl && ev.shiftKey && (ev.key === "V" || ev.key === "v")) || (ev.shiftKey && ev.key === "Insert")) {
    return false; // let the browser fire its paste event
  }
  if (ev.metaKey && (ev.key === "c" || ev.key === "v")) return false;
  return true;
});

function copySelection() {
  const text = term.getSelection();
  if (!text || !navigator.clipboard) return;
  navigator.clipboard.writeText(text).catch(() => {
    // Clipboard access needs focus and a secure context; nothing to do.
  });
}
term.onSelectionChange(() => {
  if (term.hasSelection()) copySelection();
});

// --- connection ---------------------------------------------------------------

function wsURL() {
  const path = el.dataset.wsPath;
  if (!path) throw new Error("terminal: #terminal lacks data-ws-path");
  const u = new URL(path, window.location.href);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  u.searchParams.set("reconnect", reconnectID);
  u.searchParams.set("width", String((ownSize || term).cols));
  u.searchParams.set("height", String((ownSize || term).rows));
  if (command) u.searchParams.set("command", command);
  return u.toString();
}

let conn = null; // the current connection's state
let attempt = 0; // failed attempts since the last good connection
let retryTimer = 0;
let countdownTimer = 0;
let ended = false;

function send(c, msg) {
  if (c.ws.readyState === WebSocket.OPEN) c.ws.send(JSON.stringify(msg));
}

function flushAck(c) {
  if (c.pendingAck > 0 && c === conn) {
    send(c, { ack: c.pendingAck });
    c.pendingAck = 0;
  }
}

// hadSession: this page has shown a session, so a new one means the old
// one is gone.
let hadSession = false;

function connect() {
  clearTimeout(retryTimer);
  clearInterval(countdownTimer);
  ended = false;
  restart.hidden = true;
  setStatus(attempt === 0 ? "connecting" : "reconnecting", "connecting");
  const ws = new WebSocket(wsURL());
  ws.binaryType = "arraybuffer";
  const c = { ws, pendingAck: 0, writing: 0, gotData: false, exitCode: null };
  conn = c;

  ws.onopen = () => {
    if (c !== conn) return;
    send(c, { ack: 0 }); // turn flow control on
    sendOwnSize(c);
    sendVisibility(c);
    if (document.hasFocus()) send(c, { claim: true });
    // "connected" waits for the agent's screen: the server may still be
    // dialling the agent (after a server restart, for seconds).
  };
  ws.onmessage = (ev) => {
    if (c !== conn) return;
    if (typeof ev.data === "string") {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        console.warn("terminal: unexpected text message", ev.data);
        return;
      }
      if (msg.size) return onSessionSize(msg.size);
      if (typeof msg.exit_code === "number") c.exitCode = msg.exit_code;
      // A new session where this page already had one: the old one ended
      // while we were away (its process exited, it idled out, or the
      // workspace agent restarted).
      if (msg.session === "new" && hadSession) c.newSession = true;
      return;
    }
    if (!c.gotData) {
      c.gotData = true;
      attempt = 0; // the agent answered: reset the backoff
      if (c.newSession) {
        setStatus("new session: the previous one ended (the workspace agent may have restarted)", "notice");
        quietTimer = setTimeout(() => setStatus("connected", "connected"), 8000);
      } else {
        setStatus("connected", "connected");
      }
      hadSession = true;
    }
    const data = new Uint8Array(ev.data);
    c.writing++;
    term.write(data, () => {
      c.writing--;
      c.pendingAck += data.length;
      if (c.pendingAck >= ACK_BATCH || c.writing === 0) flushAck(c);
    });
  };
  ws.onclose = (ev) => {
    if (c !== conn) return;
    if (c.exitCode !== null) {
      // Say so once the output before the exit is on screen.
      const code = c.exitCode;
      term.write("", () => {
        if (c === conn) sessionEnded(code);
      });
      return;
    }
    scheduleReconnect(ev);
  };
  // onerror is always followed by onclose.
}

function sessionEnded(code) {
  ended = true;
  setStatus(`session ended (exit code ${code})`, "ended");
  restart.hidden = false;
}

function scheduleReconnect(ev) {
  const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt) * (0.8 + 0.4 * Math.random());
  attempt++;
  const until = Date.now() + delay;
  // Say why: the server's close reason (an offline agent closes with 1011
  // "cannot reach the workspace agent"), or a lost connection.
  const why = ev.reason || (ev.code === 1006 ? "connection lost" : "");
  const tick = () => {
    const s = Math.max(1, Math.ceil((until - Date.now()) / 1000));
    setStatus(`reconnecting in ${s} s${why ? ` (${why})` : ""}`, "reconnecting");
  };
  tick();
  countdownTimer = setInterval(tick, 1000);
  retryTimer = setTimeout(connect, delay);
  if (ev.code !== 1006) console.info(`terminal: closed ${ev.code} ${ev.reason}`);
}

// Reconnect at once when the network comes back or the tab is shown again.
function reconnectNow() {
  if (!ended && conn && conn.ws.readyState === WebSocket.CLOSED) {
    attempt = 0;
    connect();
  }
}
window.addEventListener("online", reconnectNow);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") reconnectNow();
});

restart.addEventListener("click", () => {
  reconnectID = newReconnectID();
  attempt = 0;
  term.reset();
  connect();
  term.focus();
});

term.onData((data) => {
  if (conn) send(conn, { data });
});
term.onBinary((data) => {
  if (conn) send(conn, { data });
});

connect();
