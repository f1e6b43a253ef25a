import { defineConfig } from 'vitest/config';

// The tests' configuration (Vitest). The app has its own: vite.demo.config.ts (the demo and
// PWA), vite.widget.config.ts (the widget) and vite.cli.config.ts (the Node CLI and library).
// WGSL files are imported with `?raw`, so the same shader sources reach every bundle and the
// tests without a separate build step.
export default defineConfig({
  root: '.',
  publicDir: 'public',
  // The engine's Web Worker (src/engine/worker.ts) is an ES module, like the page.
  worker: { format: 'es' },
  test: {
    include: ['tests/**/*.test.ts'],
    // GPU tests share one SwiftShader adapter on 2 CPU cores: run files one after another.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
