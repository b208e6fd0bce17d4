// Jupyter Notebook's terminal page, drawn with the dashboard's xterm.js.
//
// Debian's libjs-xterm ships a stub instead of xterm.js, so the terminal
// page of Debian's python3-notebook cannot draw. The default template's
// startup script puts a one-line terminal/js/main.min.js in Jupyter's
// extra_static_paths that loads this file from the dashboard
// ($CODER_ACCESS_URL/static/jupyter-terminal.js). It does what Jupyter's
// terminal/js/main.js and terminado.js do: show the page and attach an
// xterm.js to the terminal's websocket (terminado's JSON protocol:
// ["stdin", s] and ["set_size", rows, cols, h, w] out; ["stdout", s] and
// ["disconnect"] in). It is built as a classic script (not a module) so
// that it loads on an app's own host, another origin, without CORS.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import css from "@xterm/xterm/css/xterm.css";

function show(sel) {
  for (const el of document.querySelectorAll(sel)) el.style.display = "block";
}

function main() {
  const style = document.createElement("style");
  style.textContent = css + "\n#terminado-container{height:calc(100vh - 120px)}";
  document.head.appendChild(style);
  show("div#header, div#header-spacer");
  show("div#site");

  const body = document.body.dataset;
  const base = decodeURIComponent(body.baseUrl || "/").replace(/\/?$/, "/");
  let wsURL = decodeURIComponent(body.wsUrl || "");
  if (!wsURL) wsURL = location.protocol.replace("http", "ws") + "//" + location.host;
  wsURL += base + body.wsPath;

  const el = document.getElementById("terminado-container");
  const term = new Terminal();
  const fit = new FitAddon();
  term.loadAddon(fit);
  const ws = new WebSocket(wsURL);
  const sendSize = () => {
    fit.fit();
    ws.send(JSON.stringify(["set_size", term.rows, term.cols, window.innerHeight, window.innerWidth]));
  };
  ws.onopen = () => {
    term.onData((d) => ws.send(JSON.stringify(["stdin", d])));
    term.onTitleChange((t) => { document.title = t; });
    term.open(el);
    sendSize();
    term.focus();
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg[0] === "stdout") term.write(msg[1]);
      else if (msg[0] === "disconnect") term.write("\r\n\r\n[CLOSED]\r\n");
    };
  };
  window.onresize = () => { if (ws.readyState === WebSocket.OPEN) sendSize(); };
  // Exposed as Jupyter's own page does, for fiddling in the browser.
  window.terminal = { socket: ws, term };
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();
