import { defineConfig } from "vite";

// The console is served by `meadowlark serve` at /console; `npm run build` writes it into
// the Python package, where it is committed (so `make run` needs no Node.js).
export default defineConfig({
  base: "/console/",
  build: {
    outDir: "../src/meadowlark/api/static/console",
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    reportCompressedSize: true,
  },
  // JSX with Preact's automatic runtime (no React, no Babel).
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  // `npm run dev`: the API of a local `make run` behind Vite's dev server.
  server: { proxy: { "/api": "http://127.0.0.1:8087" } },
});
