// Builds the web client into dist/: the page, one bundled script, one
// style sheet and the icon. media-api embeds dist/ at compile time.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

const out = new URL("./dist/", import.meta.url).pathname;
rmSync(out, { recursive: true, force: true });
mkdirSync(`${out}assets`, { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  format: "esm",
  target: ["chrome110", "firefox115", "safari16"],
  minify: true,
  sourcemap: "linked",
  outfile: `${out}assets/app.js`,
  logLevel: "warning",
});
cpSync("src/index.html", `${out}index.html`);
cpSync("src/app.css", `${out}assets/app.css`);
cpSync("src/icon.svg", `${out}assets/icon.svg`);
cpSync("src/clip.svg", `${out}assets/clip.svg`);
console.log(`web client built into ${out}`);
