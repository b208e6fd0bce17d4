// xtermref.mjs: the ground truth for package vt's tests.
//
// Reads one JSON case per line on stdin:
//   {"cols":80,"rows":24,"scrollback":10000,"ops":[["w","<base64 bytes>"],["r",cols,rows],...]}
// feeds the bytes to a fresh @xterm/headless Terminal (writes awaited, resizes
// applied in between), and prints one JSON dump per case on stdout, in order.
// Usage: node xtermref.mjs <path to node_modules/@xterm/headless>
import { createRequire } from 'node:module';
import readline from 'node:readline';

const require = createRequire(import.meta.url);
const { Terminal } = require(process.argv[2]);

const FLAGS = (c) =>
  (c.isBold() ? 1 : 0) | (c.isDim() ? 2 : 0) | (c.isItalic() ? 4 : 0) | (c.isBlink() ? 8 : 0) |
  (c.isInverse() ? 16 : 0) | (c.isInvisible() ? 32 : 0) | (c.isStrikethrough() ? 64 : 0) |
  (c.isOverline() ? 128 : 0) | (c.isProtected() ? 256 : 0);

const HAS_EXT = 0x10000000;

function linkOf(core, bg, ext) {
  if (!(bg & HAS_EXT) || !ext || !ext.urlId) return '';
  const d = core._oscLinkService.getLinkData(ext.urlId);
  return d ? (d.id || '') + ';' + d.uri : '';
}

function cellKey(core, c) {
  const fg = c.fg >>> 0, bg = c.bg >>> 0;
  const ul = c.getUnderlineStyle();
  const ulc = ul && (bg & HAS_EXT) ? (c.extended.underlineColor >>> 0) : 0;
  return `${c.getWidth()}|${fg & 0x3ffffff}|${bg & 0x3ffffff}|${FLAGS(c)}|${ul}|${ulc}|${linkOf(core, bg, c.extended)}|${c.getChars()}`;
}

const EMPTY = '1|0|0|0|0|0||';

function dumpBuffer(term, core, buf) {
  const lines = [];
  for (let y = 0; y < buf.lines.length; y++) {
    const line = buf.lines.get(y);
    const cells = [];
    const n = Math.min(line.length, term.cols);
    for (let x = 0; x < n; x++) {
      cells.push(cellKey(core, line.loadCell(x, new cellCtor())));
    }
    while (cells.length && cells[cells.length - 1] === EMPTY) cells.pop();
    lines.push([line.isWrapped ? 1 : 0, cells]);
  }
  const tabs = [];
  for (let x = 0; x < term.cols; x++) if (buf.tabs[x]) tabs.push(x);
  return {
    lines,
    ybase: buf.ybase,
    x: buf.x,
    y: buf.y,
    scrollTop: buf.scrollTop,
    scrollBottom: buf.scrollBottom,
    savedX: buf.savedX,
    savedY: buf.savedY,
    savedFg: buf.savedCurAttrData.fg >>> 0,
    savedBg: (buf.savedCurAttrData.bg & ~HAS_EXT) >>> 0,
    savedCharset: charsetKey(buf.savedCharset),
    tabs,
  };
}

// The public API's getCell returns the internal CellData: dump() borrows its class.
let cellCtor = null;

function charsetKey(cs) {
  if (!cs) return '';
  let s = '';
  for (let c = 0x20; c < 0x7f; c++) {
    const ch = String.fromCharCode(c);
    if (cs[ch]) s += ch + '=' + cs[ch].codePointAt(0) + ',';
  }
  return s;
}

function dump(term) {
  const core = term._core;
  const buffers = core._bufferService.buffers;
  const probe = term.buffer.normal.getLine(0).getCell(0);
  cellCtor = probe.constructor;
  const ih = core._inputHandler;
  const cur = ih._curAttrData;
  const dm = core.coreService.decPrivateModes;
  const cs = core._charsetService;
  return {
    cols: term.cols,
    rows: term.rows,
    active: buffers.active === buffers.alt ? 'alternate' : 'normal',
    normal: dumpBuffer(term, core, buffers.normal),
    alt: dumpBuffer(term, core, buffers.alt),
    cursorHidden: core.coreService.isCursorHidden,
    cursorStyle: dm.cursorStyle || '',
    cursorBlink: dm.cursorBlink === undefined ? -1 : (dm.cursorBlink ? 1 : 0),
    modes: term.modes,
    mouseEncoding: core.coreMouseService.activeEncoding,
    title: ih._windowTitle,
    iconName: ih._iconName,
    convertEol: !!term.options.convertEol,
    cursorBlinkOpt: !!term.options.cursorBlink,
    pen: [cur.fg >>> 0, (cur.bg & ~HAS_EXT) >>> 0, cur.extended.underlineStyle, cur.extended.underlineColor >>> 0, linkOf(core, HAS_EXT, cur.extended)],
    charsets: [0, 1, 2, 3].map((g) => charsetKey(cs._charsets[g])),
    glevel: cs.glevel,
    charset: charsetKey(cs.charset),
    joinState: ih._parser.precedingJoinState,
    parserState: ih._parser.currentState,
  };
}

function write(term, data) {
  return new Promise((resolve) => term.write(data, resolve));
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const text of rl) {
  if (!text.trim()) continue;
  const c = JSON.parse(text);
  const term = new Terminal({ cols: c.cols, rows: c.rows, scrollback: c.scrollback ?? 10000, allowProposedApi: true });
  for (const op of c.ops) {
    if (op[0] === 'w') await write(term, Buffer.from(op[1], 'base64'));
    else if (op[0] === 'r') term.resize(op[1], op[2]);
  }
  process.stdout.write(JSON.stringify(dump(term)) + '\n');
  term.dispose();
}
