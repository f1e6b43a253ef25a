import { defineConfig } from 'vitest/config';

// One Vite configuration for the demo (dev server and build) and the tests (Vitest).
// WGSL files are imported with `?raw`, so the same shader sources reach the browser bundle,
// the Node CLI bundle (vite.cli.config.ts) and the tests without a separate build step.
export default defineConfig({
  root: '.',
  // The demo lives in demo/; public/ (the built-in model) is served at the site root.
  publicDir: 'public',
  server: { host: '127.0.0.1', port: 5173 },
  // The engine's Web Worker (src/engine/worker.ts) is an ES module, like the page.
  worker: { format: 'es' },
  build: {
    outDir: 'dist/demo',
    rollupOptions: { input: { demo: 'demo/index.html' } },
  },
  test: {
    include: ['tests/**/*.test.ts'],
    // GPU tests share one SwiftShader adapter on 2 CPU cores: run files one after another.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    setupFiles: ['tests/setup.ts'],
  },
});
