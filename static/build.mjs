// Builds the browser assets into static/dist with esbuild (from npm).
// Run by `make assets`; the output is embedded into the coder binary.
import { build } from "esbuild";
import { existsSync } from "node:fs";

const entryPoints = {
  "app": "static/src/app.js",
  "app-style": "static/src/app.css",
};
if (existsSync("static/src/terminal.js")) {
  entryPoints["terminal"] = "static/src/terminal.js";
  entryPoints["terminal-style"] = "static/src/terminal-bundle.css";
} else {
  console.warn("static/src/terminal.js is missing: the web terminal page will not work");
}

await build({
  entryPoints,
  outdir: "static/dist",
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  logLevel: "warning",
  entryNames: "[name]",
});

// Jupyter's terminal page loads this one from an app's own host (another
// origin), so it is a classic script with its CSS inside, not a module.
await build({
  entryPoints: { "jupyter-terminal": "static/src/jupyter-terminal.js" },
  outdir: "static/dist",
  bundle: true,
  minify: true,
  format: "iife",
  loader: { ".css": "text" },
  target: ["chrome110", "firefox110", "safari16"],
  logLevel: "warning",
  entryNames: "[name]",
});
