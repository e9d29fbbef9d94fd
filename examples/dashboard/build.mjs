// Bundles the page (src/main.jsx, React and the Trigger.dev hooks) into dist/app.js, which the
// example server (examples/dashboard.rs) serves beside index.html.
import { build } from "esbuild";

await build({
  entryPoints: ["src/main.jsx"],
  outfile: "dist/app.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  jsx: "automatic",
  minify: true,
  define: { "process.env.NODE_ENV": '"production"' },
  // Node-only code paths of the SDK (S2 writers over HTTP/2) import these lazily; a browser
  // never reaches them.
  external: ["node:*"],
  logLevel: "warning",
});
