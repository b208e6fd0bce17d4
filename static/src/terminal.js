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
//        data-renderer="dom|webgl"           (optional; overrides DEFAULT_RENDERER)
//        data-owner="{user}" data-workspace="{name}"  (optional; where the page
//                      asks the server what is true when it cannot attach:
//                      stopped, starting, agent offline, deleted, logged out)
//        data-workspace-id="{uuid}" data-can-start="true"  (optional; the
//                      Start button of a stopped workspace)
//        data-access-origin="https://coder.example.com"  (optional; the only
//                      origin from which the server opens the websocket)
//        data-back-url="/@{user}/{workspace}"></div>  (optional; the workspace page)
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
// "active"}} (the session's size, in order with the output), a text
// message {"exit_code":N} when the session's process exits (then close
// 1000), and {"session":"new"} before the first screen of an attach that
// started its session. After any other close the page retries with a short
// backoff, or, when the server cannot reach the agent or the websocket does
// not open, first asks the workspace API why and says so (see checkState).
// Input typed while not attached is queued and sent after the re-attach.
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
const LINE_HEIGHT = 1.1;

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
const reconnectFromURL = Boolean(reconnectID && UUID_RE.test(reconnectID));
if (!reconnectFromURL) reconnectID = newReconnectID();

if (el.dataset.agentName) document.title = `${el.dataset.agentName} — Terminal`;

// --- status pill, its buttons, and the notice line -------------------------

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
// Start: offered when the workspace is stopped and the viewer may start it.
const startButton = document.createElement("button");
startButton.type = "button";
startButton.className = "terminal-restart";
startButton.dataset.testid = "terminal-start";
startButton.textContent = "Start workspace";
startButton.hidden = true;
// A link to what the user can do elsewhere: log in, or go back.
const statusLink = document.createElement("a");
statusLink.className = "terminal-link";
statusLink.dataset.testid = "terminal-link";
statusLink.hidden = true;
status.append(statusText, startButton, restart, statusLink);
// The notice line says what happened to input typed while disconnected.
const notice = document.createElement("div");
notice.className = "terminal-notice";
notice.dataset.testid = "terminal-notice";
notice.setAttribute("role", "status");
notice.hidden = true;
document.body.append(status, notice);

let quietTimer = 0;
function setStatus(text, state) {
  statusText.textContent = text;
  status.dataset.state = state;
  status.classList.remove("quiet");
  clearTimeout(quietTimer);
  startButton.hidden = true;
  statusLink.hidden = true;
  // "connected" fades away; the other states stay visible.
  if (state === "connected") quietTimer = setTimeout(() => status.classList.add("quiet"), 2000);
}

function showLink(text, href) {
  statusLink.textContent = text;
  statusLink.href = href;
  statusLink.hidden = false;
}

let noticeTimer = 0;
// showNotice shows text under the status pill until it is replaced or,
// with ms, for ms.
function showNotice(text, ms) {
  clearTimeout(noticeTimer);
  notice.textContent = text;
  notice.hidden = !text;
  if (text && ms) noticeTimer = setTimeout(() => showNotice(""), ms);
}

// --- terminal ---------------------------------------------------------------

function storedFontSize() {
  const n = Number(localStorage.getItem(FONT_KEY));
  return Number.isInteger(n) && n >= FONT_MIN && n <= FONT_MAX ? n : FONT_DEFAULT;
}

const term = new Terminal({
  fontFamily: '"DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, "Liberation Mono", monospace',
  fontSize: storedFontSize(),
  // Rows a little taller than the font's rounded ascent + descent: with
  // 1.0, Chromium rounds DejaVu Sans Mono's 14 px descent to 3 px, the
  // underscore lies just below it, and the DOM renderer's rows (overflow:
  // hidden, one cell high) cut it off: `for _, v` read `for  , v`.
  lineHeight: LINE_HEIGHT,
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
let attempt = 0; // failed attempts since the last good attach
let retryTimer = 0;
let countdownTimer = 0;
// ended: the session's process exited; halted: nothing to retry (the
// workspace or agent is gone, or this is the wrong address).
let ended = false;
let halted = false;
// waiting: the last failure was the workspace's state (stopped, starting,
// agent offline, logged out), so retries check that state first instead of
// opening a websocket that would fail the same way.
let waiting = false;

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
// one is gone. restartedFrom: the exit code of the session the user
// replaced with "Restart session" (null otherwise).
// A reconnect id from the URL (a reload, a bookmark) names a session the
// user had: count it as shown.
let hadSession = reconnectFromURL;
let restartedFrom = null;

function clearTimers() {
  clearTimeout(retryTimer);
  clearInterval(countdownTimer);
}

function connect() {
  if (halted) return;
  clearTimers();
  ended = false;
  waiting = false;
  restart.hidden = true;
  setStatus(hadSession || attempt > 0 ? "reconnecting…" : "connecting…", "connecting");
  const ws = new WebSocket(wsURL());
  ws.binaryType = "arraybuffer";
  const c = { ws, pendingAck: 0, writing: 0, gotData: false, exitCode: null, opened: false };
  conn = c;

  ws.onopen = () => {
    if (c !== conn) return;
    c.opened = true;
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
      // The agent started the session for this attach (it comes before
      // the first screen): where this page already had one, the old one
      // is gone.
      if (msg.session === "new") c.newSession = true;
      return;
    }
    if (!c.gotData) {
      c.gotData = true;
      attached(c);
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
    closed(c, ev);
  };
  // onerror is always followed by onclose.
}

// attached runs when the agent's first screen arrives: the backoff
// resets, the page says whose session this is, and the input typed while
// disconnected is sent, or dropped if the session is not the one it was
// typed for.
function attached(c) {
  attempt = 0;
  window.terminalAttaches = (window.terminalAttaches || 0) + 1; // for tests
  const lostSession = c.newSession && hadSession;
  if (lostSession && restartedFrom !== null) {
    setStatus(`You started a new session; the previous one had ended (exit code ${restartedFrom}).`, "notice");
    quietTimer = setTimeout(() => setStatus("connected", "connected"), 8000);
  } else if (lostSession) {
    setStatus(
      "This is a new session: the previous one is gone (its shell exited, it was left unattached too long, or the workspace agent restarted).",
      "notice",
    );
    quietTimer = setTimeout(() => setStatus("connected", "connected"), 8000);
  } else {
    setStatus("connected", "connected");
  }
  restartedFrom = null;
  hadSession = true;
  flushInputQueue(c, lostSession);
}

function sessionEnded(code) {
  ended = true;
  dropInputQueue();
  setStatus(`The session ended (exit code ${code}).`, "ended");
  restart.hidden = false;
}

// --- retries --------------------------------------------------------------------

// The retry delay starts small and grows slowly, so that the screen is
// back soon after the server or agent answers again; it resets after an
// attach, and the page retries at once when the tab is shown again or the
// network comes back. Jitter spreads the retries of many tabs.
const BACKOFF_FIRST_MS = 250;
const BACKOFF_FACTOR = 1.5;
const BACKOFF_MAX_MS = 2500;
const BACKOFF_JITTER = 0.2;
// How often the page checks a workspace that is stopped, starting, or
// whose agent is offline.
const STATE_POLL_MS = 1000;

function backoffDelay() {
  const d = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * BACKOFF_FACTOR ** attempt);
  attempt++;
  return d * (1 - BACKOFF_JITTER + 2 * BACKOFF_JITTER * Math.random());
}

// retryIn shows text(seconds left) and calls fn after delay ms.
function retryIn(delay, fn, text) {
  clearTimers();
  const until = Date.now() + delay;
  const tick = () => {
    const s = Math.max(1, Math.ceil((until - Date.now()) / 1000));
    setStatus(text(s), "reconnecting");
  };
  tick();
  countdownTimer = setInterval(tick, 250);
  retryTimer = setTimeout(fn, delay);
}

// closed decides what to do after a websocket closed without an exit.
function closed(c, ev) {
  if (ev.code !== 1006) console.info(`terminal: closed ${ev.code} ${ev.reason}`);
  switch (ev.code) {
    case 1001: // the server is shutting down or restarting
      retryIn(backoffDelay(), connect, (s) => `reconnecting in ${s} s (the server is restarting)`);
      return;
    case 1013: // the agent's session limit: the reason says what to do
    case 1003:
    case 1007:
    case 1009:
      retryIn(backoffDelay(), connect, (s) => `reconnecting in ${s} s (${ev.reason || `closed with code ${ev.code}`})`);
      return;
  }
  // 1006 (the handshake failed or the connection dropped) or 1011 (the
  // server cannot reach the agent): ask the server what is true.
  checkState(ev.reason || (c.opened ? "connection lost" : ""));
}

// --- the workspace's state --------------------------------------------------

const workspaceAPI =
  el.dataset.owner && el.dataset.workspace
    ? `/api/v2/users/${encodeURIComponent(el.dataset.owner)}/workspace/${encodeURIComponent(el.dataset.workspace)}`
    : "";
const agentName = el.dataset.agentName || "";
const backURL = el.dataset.backUrl || "/workspaces";

// workspaceState asks the server about the workspace and its agent, as the
// user sees them: {kind, message}, kind one of unreachable, login,
// deleted, no-agent, stopped, starting, offline, ok, error.
async function workspaceState() {
  if (!workspaceAPI) return { kind: "ok" };
  let res;
  try {
    res = await fetch(workspaceAPI, { headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" });
  } catch {
    return { kind: "unreachable" };
  }
  if (res.status === 401) return { kind: "login" };
  if (res.status === 404) return { kind: "deleted" };
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: a proxy's error page
  }
  if (!res.ok) {
    if (res.status >= 502 && res.status <= 504) return { kind: "unreachable" };
    return { kind: "error", message: (body && body.message) || `the server answered ${res.status}` };
  }
  const ag = (body.agents || []).find((a) => a.id === el.dataset.agentId);
  if (!ag) return { kind: "no-agent" };
  if (body.desired_state === "stopped") return { kind: "stopped", workspace: body };
  if (ag.status === "connected") return { kind: "ok" };
  if (ag.status === "connecting") return { kind: "starting", manual: body.provisioner === "manual" };
  return { kind: "offline" };
}

let checking = 0; // a check is in flight (its number)

// checkState shows what is true after a failure and decides when to try
// again. why is what the failed websocket said, for the case where the
// workspace looks fine.
async function checkState(why) {
  clearTimers();
  const n = ++checking;
  const st = await workspaceState();
  if (n !== checking || halted || (conn && conn.ws.readyState !== WebSocket.CLOSED)) return;
  const wasWaiting = waiting;
  waiting = false;
  const poll = () => {
    waiting = true;
    clearTimers();
    retryTimer = setTimeout(() => checkState(why), STATE_POLL_MS);
  };
  switch (st.kind) {
    case "ok":
      // The server sees the agent: retry the websocket, at once if the
      // page was waiting for this.
      if (wasWaiting) {
        attempt = 0;
        connect();
        return;
      }
      retryIn(backoffDelay(), connect, (s) => `reconnecting in ${s} s${why ? ` (${why})` : ""}`);
      return;
    case "unreachable":
      retryIn(backoffDelay(), connect, (s) => `reconnecting in ${s} s (cannot reach the server)`);
      return;
    case "error":
      retryIn(backoffDelay(), connect, (s) => `reconnecting in ${s} s (${st.message})`);
      return;
    case "login":
      setStatus("You are logged out. Log in again, here or in another tab, and this terminal reconnects by itself.", "waiting");
      showLink("Log in", "/login?redirect=" + encodeURIComponent(location.pathname + location.search));
      poll();
      return;
    case "deleted":
      halt("This workspace was deleted (or you can no longer open it): its terminal is gone.", "Back to workspaces", "/workspaces");
      return;
    case "no-agent":
      halt(`This workspace no longer has an agent named ${agentName}: open a terminal from the workspace page.`, "Workspace", backURL);
      return;
    case "stopped":
      setStatus("This workspace is stopped. Start it and this terminal reconnects by itself.", "waiting");
      if (el.dataset.canStart === "true") startButton.hidden = false;
      poll();
      return;
    case "starting":
      if (st.manual) {
        setStatus(
          `The workspace agent ${agentName} has not connected yet: run it on the workspace's machine (the workspace page shows how), and this terminal connects by itself.`,
          "waiting",
        );
      } else {
        setStatus(`The workspace is starting: waiting for its agent ${agentName} to connect…`, "waiting");
      }
      poll();
      return;
    case "offline":
      setStatus(
        `The workspace agent ${agentName} is not connected (it may be restarting, or its machine may be off or offline): this terminal reconnects when it is back.`,
        "waiting",
      );
      poll();
      return;
  }
}

// halt stops retrying and says why, with a link to what the user can do.
function halt(text, linkText, href) {
  halted = true;
  clearTimers();
  dropInputQueue();
  setStatus(text, "halted");
  showLink(linkText, href);
}

startButton.addEventListener("click", async () => {
  const id = el.dataset.workspaceId;
  startButton.disabled = true;
  setStatus("Starting the workspace…", "waiting");
  let msg = "";
  try {
    const res = await fetch(`/api/v2/workspaces/${encodeURIComponent(id)}/start`, {
      method: "POST",
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!res.ok) {
      let body = null;
      try {
        body = await res.json();
      } catch {
        // not JSON
      }
      msg = (body && body.message) || `the server answered ${res.status}`;
    }
  } catch {
    msg = "cannot reach the server; try again";
  }
  startButton.disabled = false;
  if (msg) {
    setStatus(`The workspace did not start: ${msg}`, "waiting");
    startButton.hidden = false;
    return;
  }
  attempt = 0;
  checkState("");
});

// Retry at once when the network comes back or the tab is shown again.
function retryNow() {
  if (ended || halted) return;
  if (conn && conn.ws.readyState !== WebSocket.CLOSED) return;
  attempt = 0;
  if (waiting) checkState("");
  else connect();
}
window.addEventListener("online", retryNow);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") retryNow();
});

restart.addEventListener("click", () => {
  restartedFrom = conn && conn.exitCode !== null ? conn.exitCode : null;
  reconnectID = newReconnectID();
  attempt = 0;
  term.reset();
  connect();
  term.focus();
});

// --- input typed while disconnected -----------------------------------------

// Keystrokes and pastes typed while the page is not attached wait here, up
// to INPUT_QUEUE_MAX bytes (UTF-8), and are sent in order after the
// re-attach; if the session turned out to be new, they are dropped and the
// page says so. Beyond the bound, input is dropped and the page says so.
const INPUT_QUEUE_MAX = 64 * 1024;
// Queued input is sent in messages of at most this many UTF-16 units: JSON
// escaping stays within the relay's 64 KiB message limit.
const INPUT_CHUNK = 8 * 1024;
const utf8 = new TextEncoder();
let inputQueue = [];
let inputQueueBytes = 0;
let inputDropped = 0;

function sendInput(data) {
  const c = conn;
  if (c && c.gotData && c.ws.readyState === WebSocket.OPEN) {
    c.ws.send(JSON.stringify({ data }));
    return;
  }
  if (ended || halted) return; // nothing will receive it
  const n = utf8.encode(data).length;
  if (inputQueueBytes + n > INPUT_QUEUE_MAX) {
    inputDropped++;
    showNotice(`Not connected: typing beyond the 64 KiB waiting to be sent is dropped (${inputDropped} keystrokes or pastes so far).`);
    return;
  }
  inputQueue.push(data);
  inputQueueBytes += n;
  window.terminalQueuedInput = inputQueue.length;
}

function dropInputQueue() {
  inputQueue = [];
  inputQueueBytes = 0;
  inputDropped = 0;
  window.terminalQueuedInput = 0;
}

// flushInputQueue sends the queue on c, or drops it when the session is
// not the one it was typed for.
function flushInputQueue(c, newSession) {
  const n = inputQueue.length;
  const dropped = inputDropped;
  const q = inputQueue;
  dropInputQueue();
  if (n === 0 && dropped === 0) return;
  if (newSession) {
    showNotice(`${n + dropped} keystrokes typed while disconnected were not sent: the session is new.`, 15000);
    return;
  }
  // Sent in order, in messages of at most INPUT_CHUNK units (never
  // splitting a surrogate pair).
  let rest = q.join("");
  while (rest) {
    let cut = Math.min(rest.length, INPUT_CHUNK);
    const code = rest.charCodeAt(cut - 1);
    if (cut < rest.length && code >= 0xd800 && code <= 0xdbff) cut--;
    send(c, { data: rest.slice(0, cut) });
    rest = rest.slice(cut);
  }
  if (dropped > 0) {
    showNotice(`Sent ${n} keystrokes typed while disconnected; ${dropped} typed after 64 KiB were waiting were dropped.`, 15000);
  } else {
    showNotice(`Sent ${n} keystrokes typed while disconnected.`, 5000);
  }
}

term.onData(sendInput);
term.onBinary(sendInput);

// The server opens the terminal's websocket only from a page at the
// dashboard's own address (its access URL): from any other address the
// handshake is refused, and retrying would never help.
const accessOrigin = el.dataset.accessOrigin || "";
if (accessOrigin && accessOrigin !== location.origin && !/^wss?:/.test(el.dataset.wsPath || "")) {
  halt(
    `This terminal opens only at ${accessOrigin}, the dashboard's address, not at ${location.origin}: open it there.`,
    "Open it there",
    accessOrigin + location.pathname + location.search,
  );
} else {
  connect();
}
