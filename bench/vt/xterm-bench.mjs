// xterm-bench.mjs: times @xterm/headless 6 on the stream files written by
// terminal/vt's benchmarks (seq.bin, vim.bin, htop.bin), fed in 64 KiB
// writes to an 80x24 terminal with 10,000 lines of scrollback, and measures
// its heap (JS heap plus ArrayBuffers, where cells live) for an empty terminal and for 10,000 coloured lines.
// Usage: node --expose-gc xterm-bench.mjs <node_modules/@xterm/headless> <dir>
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { Terminal } = require(process.argv[2]);
const dir = process.argv[3];

function feed(term, data) {
  return new Promise((resolve) => {
    for (let off = 0; off < data.length; off += 65536) {
      const chunk = data.subarray(off, Math.min(off + 65536, data.length));
      if (off + 65536 >= data.length) term.write(chunk, resolve);
      else term.write(chunk);
    }
    if (!data.length) resolve();
  });
}

for (const name of ['seq', 'vim', 'htop']) {
  const data = fs.readFileSync(path.join(dir, name + '.bin'));
  let best = Infinity;
  for (let rep = 0; rep < 3; rep++) {
    const term = new Terminal({ cols: 80, rows: 24, scrollback: 10000, allowProposedApi: true });
    const t0 = process.hrtime.bigint();
    await feed(term, data);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    best = Math.min(best, ms);
    term.dispose();
  }
  console.log(`xterm ${name} ${data.length} bytes ${(data.length / 1e6 / (best / 1000)).toFixed(2)} MB/s`);
}

const heap = () => { global.gc(); global.gc(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };
let h0 = heap();
const empty = new Terminal({ cols: 80, rows: 24, scrollback: 10000, allowProposedApi: true });
const emptyBytes = heap() - h0;
const lines = [];
for (let i = 0; i < 10000; i++) {
  const x = 'x'.repeat(i % 21);
  lines.push(`\x1b[38;5;${i % 256}m${String(i).padStart(6, '0')} \x1b[1;32m${'ab'.repeat(15)}\x1b[0;48;2;${i % 256};40;60m${'coloured background'.padEnd(20)}\x1b[0m \x1b[33m${x.padEnd(21)}\x1b[0m\r\n`);
}
h0 = heap();
const full = new Terminal({ cols: 80, rows: 24, scrollback: 10000, allowProposedApi: true });
await feed(full, Buffer.from(lines.join('')));
const fullBytes = heap() - h0;
console.log(`xterm memory empty ${(emptyBytes / 1e6).toFixed(2)} MB, 10k coloured lines ${(fullBytes / 1e6).toFixed(2)} MB`);
empty.dispose();
full.dispose();
