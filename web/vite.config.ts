// The playground's build: one hashed script and stylesheet under /ui/assets/,
// which the strictpy binary embeds and serves (crates/server/build.rs).
import { defineConfig } from "vite";

export default defineConfig({
  // The server answers both `/` and `/ui/` with index.html, so assets are
  // addressed absolutely under /ui/.
  base: "/ui/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // Inlined assets would become data: URLs; keep every asset a file so the
    // Content-Security-Policy can stay at 'self'.
    assetsInlineLimit: 0,
    // No source maps in the binary.
    sourcemap: false,
    // The embedded page must not need a module preload polyfill (an inline
    // script); modern Chromium, Firefox and Safari support modules natively.
    modulePreload: { polyfill: false },
  },
});
