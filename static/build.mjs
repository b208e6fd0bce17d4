// Builds the browser assets into static/dist with esbuild (from npm).
// Run by `make assets`; the output is embedded into the coder binary.
import { build } from "esbuild";

await build({
  entryPoints: {
    "app": "static/src/app.js",
    "terminal": "static/src/terminal.js",
    "app-style": "static/src/app.css",
    "terminal-style": "static/src/terminal-bundle.css",
  },
  outdir: "static/dist",
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  logLevel: "warning",
  entryNames: "[name]",
});
