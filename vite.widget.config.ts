import { defineConfig } from 'vite';

// The embeddable widget: src/widget/index.ts → dist/app/widget/molm-chat.js (ES module) and
// molm-chat.iife.js (a classic script, which another origin can load without CORS). The
// engine's worker is inlined (see src/widget/molm-chat.ts), so each file is self-contained.
// It builds into the demo's output so the site that serves the demo also serves the widget,
// with the built-in model at ../models/molm-brown/ relative to the script.
export default defineConfig({
  publicDir: false,
  // No checkpoint reading in the widget (hub import, local folders: src/engine/create.ts): it
  // loads converted models by URL, and its script, worker included, must stay within 150 KB gzipped.
  define: { __MOLM_READS_CHECKPOINTS__: 'false' },
  worker: { format: 'es' },
  build: {
    outDir: 'dist/app/widget',
    emptyOutDir: true,
    target: 'es2022',
    lib: {
      entry: 'src/widget/index.ts',
      name: 'MolmChat',
      formats: ['es', 'iife'],
      fileName: (format) => (format === 'es' ? 'molm-chat.js' : 'molm-chat.iife.js'),
    },
    rollupOptions: {
      // The classic script has no import.meta; src/widget/molm-chat.ts reads its URL from
      // document.currentScript there, so the bundler's warning about it is expected.
      onwarn(warning, warn) {
        if (warning.code !== 'EMPTY_IMPORT_META') warn(warning);
      },
    },
  },
});
