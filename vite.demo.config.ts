import { defaultAllowedOrigins, defineConfig } from 'vite';
import { VitePWA } from 'vite-plugin-pwa';

/**
 * Cross-origin isolation (COOP + COEP): the page gets SharedArrayBuffer, so the WebAssembly
 * engine's compute threads share one memory; without it the engine runs on one thread. Every
 * response carries them (the engine's worker too: a worker's own response sets its COEP).
 * CORP `cross-origin` lets a cross-origin isolated page of another origin embed what this
 * server hosts (the widget's classic script) as a no-cors resource; CORS requests (the model's
 * files from the widget's worker, the ES module) get the CORS answer below instead.
 */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'cross-origin',
};

/**
 * CORS for the widget on a local page of another origin (Vite's default origins: localhost and
 * 127.0.0.1, any port), with the response headers the shard loader reads (sizes, resumes).
 */
const WIDGET_HOST_CORS = { origin: defaultAllowedOrigins, exposedHeaders: ['Content-Length', 'Content-Range', 'Accept-Ranges', 'ETag'] };

// The app: demo/ (the chat demo, an installable offline PWA) with public/ (the built-in model,
// icons) at the site root. `npm run demo` builds it, and the widget beside it
// (vite.widget.config.ts), into dist/app and serves that. vite.config.ts is the tests' config.
export default defineConfig({
  root: 'demo',
  publicDir: '../public',
  server: { host: '127.0.0.1', port: 5173, headers: ISOLATION_HEADERS, cors: WIDGET_HOST_CORS },
  preview: { host: '127.0.0.1', port: 4173, headers: ISOLATION_HEADERS, cors: WIDGET_HOST_CORS },
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
        name: 'molm-web: MoLM on this device',
        short_name: 'molm-web',
        description:
          'A MoLM mixture-of-experts language model on this device (its GPU through WebGPU, or its processor through WebAssembly): private, offline.',
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
