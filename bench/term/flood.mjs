#!/usr/bin/env node
// flood.mjs — Ctrl+C on a flood, as a user feels it, in a real browser:
// `yes` runs for a while, then Ctrl+C (a real key event); we measure, in
// the page, from the keydown to the frame in which the shell's prompt is
// drawn again, and the websocket bytes the page received in between
// (output that was in flight when the key was pressed).
//
//   node flood.mjs [--reps N (5)] [--flood-ms MS (2000)] [--chromium-arg ARG]... [--cookie NAME=VALUE]... NAME=URL...
//
// Every target is a loopback page with an xterm.js terminal running
// `bash --noprofile --norc`; targets take turns (A B A B ...), each run in
// a fresh headless Chromium (Debian's /usr/bin/chromium, never downloaded).
// Prints a table of medians and maxima, then one line "JSON {...}".

import { chromium } from "playwright-core";

const opts = { reps: 5, floodMs: 2000, args: [], cookies: [], targets: [] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--reps") opts.reps = Number(argv[++i]);
  else if (a === "--flood-ms") opts.floodMs = Number(argv[++i]);
  else if (a === "--chromium-arg") opts.args.push(argv[++i]);
  else if (a === "--cookie") opts.cookies.push(argv[++i]);
  else if (/^[\w.-]+=/.test(a)) {
    const [name, ...rest] = a.split("=");
    opts.targets.push({ name, url: rest.join("=") });
  } else {
    console.error(`flood.mjs: unknown argument ${a}`);
    process.exit(2);
  }
}
for (const t of opts.targets) {
  const host = new URL(t.url).hostname;
  if (!["127.0.0.1", "localhost", "[::1]"].includes(host)) {
    console.error(`flood.mjs: ${t.url} is not on loopback`);
    process.exit(2);
  }
}

const PROMPT = "FLOODP$ ";
const TERM_EXPRS = ["window.term", "window.wetty_term", "window.terminal", "window.xterm"];

// Runs in the page before its scripts: count websocket bytes received and
// note the Ctrl+C keydown.
function instrument() {
  const Orig = window.WebSocket;
  window.__wsBytes = 0;
  window.WebSocket = class extends Orig {
    constructor(...a) {
      super(...a);
      this.addEventListener("message", (e) => {
        const d = e.data;
        window.__wsBytes += typeof d === "string" ? d.length : d.byteLength ?? d.size ?? 0;
      });
    }
  };
  document.addEventListener(
    "keydown",
    (e) => {
      if (e.ctrlKey && (e.key === "c" || e.key === "C") && window.__armed) {
        window.__armed = false;
        window.__keyAt = performance.now();
        window.__bytesAtKey = window.__wsBytes;
      }
    },
    true,
  );
}

async function findTerm(page) {
  for (let i = 0; i < 400; i++) {
    for (const e of TERM_EXPRS) {
      if (await page.evaluate(`!!(${e} && ${e}.buffer && ${e}.buffer.active)`).catch(() => false)) return e;
    }
    await page.waitForTimeout(50);
  }
  throw new Error("no xterm.js Terminal found");
}

// lastLine is the text of the cursor's line.
const lastLine = (t) => `(() => { const b = ${t}.buffer.active; return b.getLine(b.baseY + b.cursorY).translateToString(true); })()`;

async function waitFor(page, expr, what, ms = 30000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await page.evaluate(expr).catch(() => false)) return;
    await page.waitForTimeout(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function once(target) {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", ...opts.args],
  });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    const u = new URL(target.url);
    if (opts.cookies.length) {
      await ctx.addCookies(opts.cookies.map((c) => {
        const [name, ...v] = c.split("=");
        return { name, value: v.join("="), domain: u.hostname, path: "/" };
      }));
    }
    await ctx.addInitScript(instrument);
    const page = await ctx.newPage();
    await page.goto(target.url);
    const t = await findTerm(page);
    await page.click(".xterm-screen").catch(() => {});
    await page.focus("textarea.xterm-helper-textarea").catch(() => {});
    // A known prompt.
    await page.keyboard.type(`PS1='${PROMPT}'`);
    await page.keyboard.press("Enter");
    await waitFor(page, `${lastLine(t)}.startsWith(${JSON.stringify(PROMPT)})`, "the prompt");
    await page.keyboard.type("yes");
    await page.keyboard.press("Enter");
    await waitFor(page, `${lastLine(t)} === "y"`, "the flood");
    await page.waitForTimeout(opts.floodMs);
    // Watch every frame from the key on for the prompt.
    await page.evaluate(`(() => {
      window.__armed = true; window.__promptAt = 0;
      const check = () => {
        if (window.__keyAt && ${lastLine(t)}.startsWith(${JSON.stringify(PROMPT)})) {
          window.__promptAt = performance.now(); window.__bytesAtPrompt = window.__wsBytes; return;
        }
        requestAnimationFrame(check);
      };
      requestAnimationFrame(check);
    })()`);
    await page.keyboard.press("Control+c");
    await waitFor(page, "window.__promptAt > 0", "the prompt after Ctrl+C");
    const r = await page.evaluate(`({ ms: window.__promptAt - window.__keyAt, bytes: window.__bytesAtPrompt - window.__bytesAtKey })`);
    return r;
  } finally {
    await browser.close();
  }
}

const results = Object.fromEntries(opts.targets.map((t) => [t.name, []]));
for (let rep = 0; rep < opts.reps; rep++) {
  for (const t of opts.targets) {
    try {
      const r = await once(t);
      results[t.name].push(r);
      console.error(`[flood] ${t.name} rep ${rep + 1}: prompt back after ${r.ms.toFixed(0)} ms, ${(r.bytes / 1024).toFixed(0)} KiB after the key`);
    } catch (err) {
      console.error(`[flood] ${t.name} rep ${rep + 1}: ${err.message}`);
    }
  }
}
const med = (xs) => {
  xs = [...xs].sort((a, b) => a - b);
  if (!xs.length) return null;
  return xs.length % 2 ? xs[(xs.length - 1) / 2] : (xs[xs.length / 2 - 1] + xs[xs.length / 2]) / 2;
};
const f = (x, d = 0) => (x == null ? "-" : x.toFixed(d));
const summary = {};
console.log(`\nCtrl+C on \`yes\` (after ${opts.floodMs} ms of flood): keydown -> prompt drawn, and bytes received in between; median (max) of runs`);
console.log("target".padEnd(12) + "runs".padEnd(6) + "prompt back ms".padEnd(22) + "KiB after the key");
for (const [name, rs] of Object.entries(results)) {
  const ms = rs.map((r) => r.ms), kb = rs.map((r) => r.bytes / 1024);
  summary[name] = { runs: rs.length, ms_p50: med(ms), ms_max: ms.length ? Math.max(...ms) : null, kib_p50: med(kb), kib_max: kb.length ? Math.max(...kb) : null };
  const s = summary[name];
  console.log(name.padEnd(12) + String(s.runs).padEnd(6) + `${f(s.ms_p50)} (${f(s.ms_max)})`.padEnd(22) + `${f(s.kib_p50)} (${f(s.kib_max)})`);
}
console.log("JSON " + JSON.stringify({ flood_ms: opts.floodMs, targets: summary }));
