// Memory of loadModel in headless Chromium, for a converted model folder (docs/performance.md,
// "Loading from shards: memory"). Usage:
//
//   node tools/bench/shard-heap.mjs MODEL_DIR [--concurrency N]
//
// Serves MODEL_DIR with tests/browser/model-server.ts (another origin than the page), opens
// tests/browser/pages/cache.html from a Vite dev server in a persistent Chromium profile (a real
// IndexedDB quota), and loads the model twice: from the network, then from the cache. Every
// 25 ms it samples, through the Chrome DevTools Protocol, Performance.getMetrics JSHeapUsedSize
// (V8's heap: objects, not ArrayBuffer contents) and Runtime.getHeapUsage usedSize +
// backingStorageSize (the heap plus ArrayBuffer backing stores: what the shards' bytes occupy),
// and reads the renderer process's resident-set peak (VmHWM) from /proc.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_FLAGS, WEBGPU_FLAGS } from '../chromium.mjs';
import { procStatus, rendererPids } from './renderer-memory.mjs';
import { createServer } from 'vite';

const args = process.argv.slice(2);
const modelDir = args[0] && resolve(args[0]);
if (!modelDir) {
  console.error('usage: node tools/bench/shard-heap.mjs MODEL_DIR [--concurrency N]');
  process.exit(2);
}
const ci = args.indexOf('--concurrency');
const concurrency = ci >= 0 ? Number(args[ci + 1]) : undefined;

const FLAGS = [...CHROMIUM_FLAGS, ...WEBGPU_FLAGS];

/** @typedef {typeof import('../../tests/browser/pages/cache-page.ts').cachePage} CachePage */

const MiB = 2 ** 20;
const fmt = (/** @type {number} */ b) => `${(b / MiB).toFixed(1)} MiB`;

/** @type {import('../../src/manifest.ts').Manifest} */
const manifest = JSON.parse(await readFile(join(modelDir, 'manifest.json'), 'utf8'));
const shardSizes = manifest.shards.map((s) => s.bytes);
const total = shardSizes.reduce((a, b) => a + b, 0);

const vite = await createServer({
  configFile: false,
  root: process.cwd(),
  logLevel: 'error',
  server: { host: '127.0.0.1', port: 0, hmr: false },
  optimizeDeps: { noDiscovery: true, include: [] },
});
await vite.listen();
// Listening (not in middleware mode) on a TCP port: the server's address is an AddressInfo.
const address = /** @type {import('node:net').AddressInfo} */ (vite.httpServer?.address());
const base = `http://127.0.0.1:${address.port}`;
const { startModelServer } = await vite.ssrLoadModule('/tests/browser/model-server.ts');
const models = await startModelServer(dirname(modelDir));
const url = `${models.url}/${basename(modelDir)}/manifest.json`;

const profile = await mkdtemp(join(tmpdir(), 'molm-heap-profile-'));
const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: FLAGS });
try {
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`${base}/tests/browser/pages/cache.html`);
  await page.waitForFunction(() => document.getElementById('out')?.textContent === 'ready');
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  // The page's renderer: the largest one (a spare renderer may idle beside it).
  /** @type {number | undefined} */
  let renderer;
  let rendererRss = -1;
  for (const pid of await rendererPids(profile)) {
    const st = await procStatus(pid);
    if (st && st.rss > rendererRss) [renderer, rendererRss] = [pid, st.rss];
  }

  const sample = async () => {
    const { metrics } = await cdp.send('Performance.getMetrics');
    const h = await cdp.send('Runtime.getHeapUsage');
    const jsHeap = metrics.find((m) => m.name === 'JSHeapUsedSize')?.value;
    if (jsHeap === undefined) throw new Error('Performance.getMetrics gave no JSHeapUsedSize');
    return { jsHeap, withBuffers: h.usedSize + (h.backingStorageSize ?? 0) };
  };

  const measure = async (/** @type {string} */ label) => {
    await cdp.send('HeapProfiler.collectGarbage');
    const before = await sample();
    // Resets VmHWM to the current RSS (Linux), so the peak below is this load's.
    await writeFile(`/proc/${renderer}/clear_refs`, '5').catch(() => {});
    const rssBefore = await procStatus(renderer);
    let peak = { jsHeap: 0, withBuffers: 0 };
    let running = true;
    const sampler = (async () => {
      while (running) {
        try {
          const s = await sample();
          peak = { jsHeap: Math.max(peak.jsHeap, s.jsHeap), withBuffers: Math.max(peak.withBuffers, s.withBuffers) };
        } catch {
          // the page is busy; next time
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    const t0 = Date.now();
    // tests/browser/pages/cache.html sets window.cachePage.
    const result = await page.evaluate(
      ([u, c]) => /** @type {{ cachePage: CachePage }} */ (/** @type {unknown} */ (window)).cachePage.load({ url: u, concurrency: c, keepProgress: false }),
      /** @type {[string, number | undefined]} */ ([url, concurrency]),
    );
    const ms = Date.now() - t0;
    running = false;
    await sampler;
    if (result.error) throw new Error(`${label}: ${result.error.name}: ${result.error.message}`);
    const rss = await procStatus(renderer);
    const ready = result.events.at(-1);
    if (ready?.type !== 'ready') throw new Error(`${label}: the load's last event is ${ready?.type}, not ready`);
    console.log(
      `${label}: ${(ms / 1000).toFixed(1)} s, network ${fmt(ready.networkBytes)}, cache ${fmt(ready.cachedBytes)}\n` +
        `  JSHeapUsedSize peak ${fmt(peak.jsHeap)} (before ${fmt(before.jsHeap)})\n` +
        `  heap + ArrayBuffers peak ${fmt(peak.withBuffers)} (before ${fmt(before.withBuffers)}; +${fmt(peak.withBuffers - before.withBuffers)} = ${((peak.withBuffers - before.withBuffers) / Math.max(...shardSizes)).toFixed(2)} × the largest shard)\n` +
        `  renderer process RSS before ${fmt(rssBefore?.rss ?? NaN)}, peak during the load (VmHWM) ${fmt(rss?.hwm ?? NaN)}`,
    );
  };

  console.log(
    `model ${modelDir}: ${fmt(total)} in ${shardSizes.length} shards (largest ${fmt(Math.max(...shardSizes))}), concurrency ${concurrency ?? 'default'}`,
  );
  console.log(`chromium ${context.browser()?.version() ?? ''} (headless, SwiftShader WebGPU)`);
  await measure('first load (network → IndexedDB → GPU)');
  const kinds = await page.evaluate(async () => {
    // Vite's URL of idb-keyval, not a module specifier that TypeScript resolves: its types by name.
    const idbKeyval = '/node_modules/idb-keyval/dist/index.js';
    const { createStore, values } = /** @type {typeof import('idb-keyval')} */ (await import(idbKeyval));
    const all = await values(createStore('molm-web-shards', 'shards'));
    return { blobs: all.filter((v) => v instanceof Blob).length, arrays: all.filter((v) => ArrayBuffer.isView(v)).length };
  });
  console.log(`  stored: ${kinds.blobs} shards as Blobs, ${kinds.arrays} as Uint8Arrays (after a refused Blob write)`);
  await measure('second load (IndexedDB → GPU)');
} finally {
  await context.close();
  await models.close();
  await vite.close();
  await rm(profile, { recursive: true, force: true });
}
