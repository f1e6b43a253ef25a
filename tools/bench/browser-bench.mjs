// Runs the benchmark page (demo/bench.html) in headless Chromium on this machine's WebGPU
// (SwiftShader without a GPU) or on the WebAssembly CPU engine, and prints its results as JSON:
// the browser's `molm bench`.
//
//   node tools/bench/browser-bench.mjs [--model URL_OR_PATH] [--contexts 128,512,2048] [--new 32]
//                                      [--backend webgpu|wasm|auto] [--threads N]
//
// A model path (a converted folder) is served by the same Vite server as the page; the default
// is the built-in model. The server sends COOP/COEP, so the page is cross-origin isolated and
// the wasm engine gets its threads (--threads; default: the machine's cores).
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { createServer } from 'vite';

const { values: o } = parseArgs({
  options: {
    model: { type: 'string' },
    contexts: { type: 'string', default: '128,512,2048' },
    new: { type: 'string', default: '32' },
    backend: { type: 'string', default: 'webgpu' },
    threads: { type: 'string' },
  },
});
if (!['webgpu', 'wasm', 'auto'].includes(o.backend)) throw new Error(`--backend must be webgpu, wasm or auto, got ${o.backend}`);
const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
const server = await createServer({
  configFile: false,
  root: process.cwd(),
  publicDir: 'public',
  logLevel: 'error',
  server: { host: '127.0.0.1', port: 0, fs: { strict: false }, headers: isolation },
});
await server.listen();
// Listening (not in middleware mode) on a TCP port: the server's address is an AddressInfo.
const address = /** @type {import('node:net').AddressInfo} */ (server.httpServer?.address());
const base = `http://127.0.0.1:${address.port}`;
// A local folder is served through Vite's /@fs/ route.
const model = !o.model ? '' : /^https?:/.test(o.model) ? o.model : `${base}/@fs${resolve(o.model)}/`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: [
    '--headless=new',
    '--no-sandbox',
    '--enable-unsafe-webgpu',
    '--enable-unsafe-swiftshader',
    '--use-webgpu-adapter=swiftshader',
    '--enable-features=Vulkan',
    '--use-vulkan=swiftshader',
    '--use-angle=swiftshader',
  ],
});
try {
  const page = await browser.newPage();
  const q = new URLSearchParams({
    contexts: o.contexts,
    new: o.new,
    backend: o.backend,
    run: '1',
    ...(model && { model }),
    ...(o.threads && { threads: o.threads }),
  });
  await page.goto(`${base}/demo/bench.html?${q}`);
  await page.waitForFunction(() => 'benchResults' in window || 'benchError' in window, null, { timeout: 0 });
  // demo/bench.ts sets one of them.
  const out = await page.evaluate(() => {
    const w = /** @type {Window & { benchResults?: unknown, benchError?: string }} */ (window);
    return w.benchResults ?? w.benchError;
  });
  console.log(JSON.stringify(out, null, 1));
} finally {
  await browser.close();
  await server.close();
}
