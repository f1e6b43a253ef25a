import { defineConfig } from 'vite';
import { VitePWA } from 'vite-plugin-pwa';

// The app: demo/ (the chat demo, an installable offline PWA) with public/ (the built-in model,
// icons) at the site root. `npm run demo` builds it, and the widget beside it
// (vite.widget.config.ts), into dist/app and serves that. vite.config.ts is the tests' config.
export default defineConfig({
  root: 'demo',
  publicDir: '../public',
  server: { host: '127.0.0.1', port: 5173 },
  preview: { host: '127.0.0.1', port: 4173 },
  // The engine's Web Worker (src/engine/worker.ts) is an ES module, like the page.
  worker: { format: 'es' },
  build: {
    outDir: '../dist/app',
    emptyOutDir: true,
    target: 'es2022',
    // The chat app, and the benchmark page (the browser's `molm bench`).
    rollupOptions: { input: { index: 'demo/index.html', bench: 'demo/bench.html' } },
  },
  plugins: [
    VitePWA({
      registerType: 'autoUpdate',
      injectRegister: 'script-defer',
      manifest: {
        name: 'molm-web: MoLM on WebGPU',
        short_name: 'molm-web',
        description: 'A MoLM mixture-of-experts language model on this device’s GPU: private, offline.',
        theme_color: '#1d4ed8',
        background_color: '#ffffff',
        display: 'standalone',
        start_url: '.',
        scope: '.',
        icons: [
          { src: 'icons/icon-192.png', sizes: '192x192', type: 'image/png' },
          { src: 'icons/icon-512.png', sizes: '512x512', type: 'image/png' },
          { src: 'icons/icon-maskable-512.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
          { src: 'icons/icon.svg', sizes: 'any', type: 'image/svg+xml' },
        ],
      },
      workbox: {
        // The app shell only (pages, scripts, the engine's worker, styles, icons). Weights are
        // not the service worker's: they live in the IndexedDB shard cache, which verifies,
        // resumes and evicts them, so a model is never stored twice.
        globPatterns: ['**/*.{html,js,css,svg,png,webmanifest}'],
        globIgnores: ['models/**', 'widget/**'],
        navigateFallback: 'index.html',
        cleanupOutdatedCaches: true,
        clientsClaim: true,
        skipWaiting: true,
      },
    }),
  ],
});
