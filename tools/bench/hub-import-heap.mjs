// The JS heap of a hub import in headless Chromium (docs/hub.md, "In the browser"). Usage:
//
//   node tools/bench/hub-import-heap.mjs [--config FILE] [--layers L] [--dtype q4|q8|f16|bf16|f32] [--repo DIR] [--keep] [--no-generate] [--gc]
//
// Synthesises a random bf16 checkpoint of a released config (--config, default tests/fixtures/
// configs/molm-350m-4b.json; molm-700m-4b.json and molm-700m-8b.json are the others) with L layers
// (default 2; the config's n_layer is the full model: 24 for the 350M-4B and 700M-4B, about 8 GB,
// 48 for the 700M-8B, about 16 GB), full width, so
// the largest tensors are the real ones; or reads one synthesised before (--repo DIR, with its
// config.json and model.safetensors; --keep leaves the synthesised one in place and prints its
// path; its config.json is the one read). Serves it as `bench-org/NAME` (NAME: the config file's
// name, e.g. molm-350m-4b) from a hub stand-in on 127.0.0.1 (a "hub" that
// answers /ORG/NAME/resolve/REV/FILE with a 302 to a "CDN" origin that serves the bytes with Range,
// ETag and CORS, as tests/hub-server.ts does, but streaming each range from the file: that one
// holds whole files in memory and hashes them for every request's ETag, fine for fixtures, not
// for GBs). Opens tests/browser/pages/hub-import.html from a Vite dev server in a persistent
// Chromium profile (a real IndexedDB quota) launched with --enable-precise-memory-info, and calls
// createEngine({ model, hubUrl, dtype, backend: 'wasm', worker: false }) there: the import runs
// on the page's thread, so the page's heap is the import's. Samples during the import:
//   - performance.memory.usedJSHeapSize in the page, every 5 ms and at each progress event
//     (V8's heap: objects, not ArrayBuffer contents);
//   - over the DevTools protocol every 25 ms, Runtime.getHeapUsage usedSize + backingStorageSize
//     (the heap plus ArrayBuffer backing stores: where the source tensor, the shard being filled
//     and the converted pieces live);
//   - the renderer's resident-set peak (VmHWM, reset before the import).
// Then reports the import's time, what IndexedDB holds (the origin's storage usage and the
// profile's IndexedDB folder on disk), and unless --no-generate the load from IndexedDB and the
// time to the first of 4 greedy tokens on the page's wasm engine. With --gc, Chromium runs with
// --js-flags=--expose-gc and the page collects garbage after each tensor, so the peaks are what
// the import holds rather than what V8 had not collected yet.
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_FLAGS } from '../chromium.mjs';
import { procStatus, rendererPids } from './renderer-memory.mjs';
import { createServer as createViteServer } from 'vite';

const args = process.argv.slice(2);
const option = (/** @type {string} */ name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const CONFIG = resolve(option('--config') ?? 'tests/fixtures/configs/molm-350m-4b.json');
const configName = basename(CONFIG).replace(/\.json$/, '');
const fullLayers = JSON.parse(await readFile(CONFIG, 'utf8')).n_layer;
const layers = Number(option('--layers') ?? 2);
const dtype = option('--dtype') ?? 'q4';
const reuse = option('--repo');
const keep = args.includes('--keep');
const generate = !args.includes('--no-generate');
const gcBetweenTensors = args.includes('--gc');
if (!Number.isInteger(layers) || layers < 1 || layers > fullLayers) {
  console.error(
    `usage: node tools/bench/hub-import-heap.mjs [--config FILE] [--layers 1..${fullLayers}] [--dtype q4|q8|f16|bf16|f32] [--repo DIR] [--keep] [--no-generate] [--gc]`,
  );
  process.exit(2);
}

const TOKENIZER = resolve('tests/fixtures/tokenizer/tokenizer.json');
const REPO = `bench-org/${configName}`;
const MiB = 2 ** 20;
const fmt = (/** @type {number} */ b) => `${(b / MiB).toFixed(1)} MiB`;
const secs = (/** @type {number} */ ms) => `${(ms / 1000).toFixed(1)} s`;

const vite = await createViteServer({
  configFile: false,
  root: process.cwd(),
  publicDir: 'public',
  logLevel: 'error',
  server: { host: '127.0.0.1', port: 0, hmr: false },
  optimizeDeps: { noDiscovery: true, include: [] },
  worker: { format: 'es' },
});
await vite.listen();
const address = /** @type {import('node:net').AddressInfo} */ (vite.httpServer?.address());
const base = `http://127.0.0.1:${address.port}`;

/** @type {string[]} */
const cleanup = [];
let repoDir = reuse ? resolve(reuse) : '';
if (!repoDir) {
  repoDir = await mkdtemp(join(tmpdir(), 'molm-hub-heap-repo-'));
  if (!keep) cleanup.push(repoDir);
  const { synthesize } = await vite.ssrLoadModule('/src/cli/synth.ts');
  const t0 = Date.now();
  await synthesize({ configPath: CONFIG, layers, outDir: repoDir, dtype: 'BF16', seed: 1 });
  console.log(`synthesised ${repoDir} (${layers} layers, bf16) in ${secs(Date.now() - t0)}`);
}
const weights = join(repoDir, 'model.safetensors');
const files = { 'config.json': join(repoDir, 'config.json'), 'model.safetensors': weights, 'tokenizer.json': TOKENIZER };

// The plan of the converted copy: its shards, and the largest source tensor with its stored size.
const { parseConfig } = await vite.ssrLoadModule('/src/config.ts');
const { planShards, tensorsToPlace } = await vite.ssrLoadModule('/src/shards/plan.ts');
const { storageBytes } = await vite.ssrLoadModule('/src/storage-types.ts');
const config = parseConfig(JSON.parse(await readFile(files['config.json'], 'utf8')));
/** @type {import('../../src/shards/plan.ts').ShardPlan} */
const plan = planShards(tensorsToPlace(config, dtype));
const count = (/** @type {number[]} */ shape) => shape.reduce((x, y) => x * y, 1);
const largest = plan.tensors.reduce((a, t) => (count(t.shape) > count(a.shape) ? t : a));
const largestSource = storageBytes(largest.shape, 'bf16');
const largestStored = storageBytes(largest.shape, largest.storage);
const sourceBytes = (await stat(weights)).size;

// The hub stand-in, streaming: hub → 302 → CDN (Range, ETag, CORS).
const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Content-Length, Content-Range, Accept-Ranges, ETag, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, X-Error-Code',
};
const served = { hub: 0, cdn: 0, bytes: 0 };
/** @param {(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => Promise<void>} handler */
async function listen(handler) {
  const server = createServer((req, res) => {
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        ...CORS,
        'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
        'Access-Control-Allow-Headers': 'Range',
        'Access-Control-Max-Age': '600',
      });
      res.end();
      return;
    }
    handler(req, res).catch((e) => {
      res.writeHead(500, CORS);
      res.end(String(e));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', () => r(undefined)));
  const a = /** @type {import('node:net').AddressInfo} */ (server.address());
  return { server, url: `http://127.0.0.1:${a.port}` };
}
const etag = async (/** @type {string} */ path) => {
  const s = await stat(path);
  return { size: s.size, etag: `"${s.size.toString(16)}-${Math.floor(s.mtimeMs).toString(16)}"` };
};
const cdn = await listen(async (req, res) => {
  served.cdn++;
  const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.split('/').at(-1) ?? '');
  const path = /** @type {Record<string, string>} */ (files)[name];
  if (!path) {
    res.writeHead(403, CORS);
    res.end('AccessDenied');
    return;
  }
  const { size, etag: tag } = await etag(path);
  const headers = { ...CORS, 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', ETag: tag };
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  const start = m ? Number(m[1]) : 0;
  const end = m && m[2] !== '' ? Math.min(Number(m[2]), size - 1) : size - 1;
  if (m && (start >= size || end < start)) {
    res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` });
    res.end();
    return;
  }
  res.writeHead(m ? 206 : 200, { ...headers, 'Content-Length': end - start + 1, ...(m && { 'Content-Range': `bytes ${start}-${end}/${size}` }) });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  served.bytes += end - start + 1;
  createReadStream(path, { start, end }).pipe(res);
});
const hub = await listen(async (req, res) => {
  served.hub++;
  const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/([^/]+)$/.exec(new URL(req.url ?? '/', 'http://x').pathname);
  const id = m ? `${m[1]}/${m[2]}` : '';
  const path = m && id === REPO && decodeURIComponent(m[3]) === 'main' ? /** @type {Record<string, string>} */ (files)[decodeURIComponent(m[4])] : undefined;
  if (!m || id !== REPO) {
    res.writeHead(401, { ...CORS, 'X-Error-Code': 'RepoNotFound' });
    res.end('Repository not found');
    return;
  }
  if (!path) {
    res.writeHead(404, { ...CORS, 'X-Error-Code': 'EntryNotFound' });
    res.end('Entry not found');
    return;
  }
  const { size, etag: tag } = await etag(path);
  res.writeHead(302, {
    ...CORS,
    Location: `${cdn.url}/repos/${id}/main/${encodeURIComponent(m[4])}?Signature=bench`,
    ETag: tag,
    'X-Linked-Etag': tag,
    'X-Linked-Size': size,
    'Content-Length': 0,
  });
  res.end();
});

const FLAGS = [...CHROMIUM_FLAGS, '--enable-precise-memory-info', ...(gcBetweenTensors ? ['--js-flags=--expose-gc'] : [])];
const profile = await mkdtemp(join(tmpdir(), 'molm-hub-heap-profile-'));
cleanup.push(profile);
const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: FLAGS });
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => console.error(`pageerror: ${e.message}`));
  await page.goto(`${base}/tests/browser/pages/hub-import.html`);
  await page.waitForFunction(() => document.getElementById('out')?.textContent === 'ready');
  const cdp = await context.newCDPSession(page);
  /** @type {number | undefined} */
  let renderer;
  let rendererRss = -1;
  for (const pid of await rendererPids(profile)) {
    const st = await procStatus(pid);
    if (st && st.rss > rendererRss) [renderer, rendererRss] = [pid, st.rss];
  }
  const estimate = () => page.evaluate(() => navigator.storage.estimate().then((e) => ({ usage: e.usage ?? 0, quota: e.quota ?? 0 })));

  console.log(
    `chromium ${context.browser()?.version() ?? ''} (headless), ${REPO}: ${configName}, ${config.nLayer} of ${fullLayers} layers, bf16 source ${fmt(sourceBytes)}`,
  );
  console.log(
    `converted (${dtype}): ${fmt(plan.totalBytes)} in ${plan.shardBytes.length} shards of at most ${fmt(Math.max(...plan.shardBytes))}; ` +
      `largest tensor ${largest.name} [${largest.shape}]: ${fmt(largestSource)} bf16, ${fmt(largestStored)} ${largest.storage}`,
  );

  await cdp.send('HeapProfiler.collectGarbage');
  const { usedSize: heapBefore, backingStorageSize: buffersBefore = 0 } = await cdp.send('Runtime.getHeapUsage');
  const storageBefore = await estimate();
  await writeFile(`/proc/${renderer}/clear_refs`, '5').catch(() => {});
  /** @type {{ t: number; heap: number; withBuffers: number }[]} */
  const samples = [];
  let running = true;
  const sampler = (async () => {
    while (running) {
      try {
        const h = await cdp.send('Runtime.getHeapUsage');
        samples.push({ t: Date.now(), heap: h.usedSize, withBuffers: h.usedSize + (h.backingStorageSize ?? 0) });
      } catch {
        // busy; next time
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  const hwmDuring = async () => (await procStatus(renderer))?.hwm ?? Number.NaN;
  const r = await page.evaluate(
    ([model, hubUrl, d, gen, gc]) =>
      /** @type {any} */ (window).hubImportPage.heapRun({
        model,
        hubUrl,
        dtype: d,
        prompt: 'The committee said that',
        greedy: { maxNewTokens: gen ? 4 : 1, temperature: 0 },
        gcBetweenTensors: gc,
      }),
    /** @type {const} */ ([REPO, hub.url, dtype, generate, gcBetweenTensors]),
  );
  running = false;
  await sampler;
  const hwm = await hwmDuring();
  if (r.error) throw new Error(`${r.error.name}: ${r.error.message}`);
  const importEnd = r.phases.import.end || r.phases.load.end;
  const during = samples.filter((s) => s.t >= r.phases.import.start && s.t <= importEnd);
  const peak = (/** @type {'heap' | 'withBuffers'} */ k) => Math.max(...during.map((s) => s[k]));
  const storageAfter = await estimate();
  let idbOnDisk = Number.NaN;
  try {
    idbOnDisk = Number(execFileSync('du', ['-sb', join(profile, 'Default', 'IndexedDB')], { encoding: 'utf8' }).split('\t')[0]);
  } catch {
    // no such folder
  }
  const importMs = importEnd - r.phases.import.start;
  console.log(
    `import: ${secs(importMs)} (${(sourceBytes / MiB / (importMs / 1000)).toFixed(1)} MiB/s of source), ${r.imports} progress events, ` +
      `read ${fmt(r.last.readBytes)}, stored ${fmt(r.last.writtenBytes)} of ${fmt(r.last.totalBytes)}; hub ${served.hub} requests, CDN ${served.cdn} requests, ${fmt(served.bytes)}`,
  );
  console.log(
    `  page usedJSHeapSize (performance.memory, ${r.phases.import.samples} samples): before ${fmt(r.before)}, peak ${fmt(r.phases.import.peak)} (+${fmt(r.phases.import.peak - r.before)})`,
  );
  console.log(
    `  CDP Runtime.getHeapUsage (${during.length} samples): heap before ${fmt(heapBefore)}, peak ${fmt(peak('heap'))}; ` +
      `heap + ArrayBuffers before ${fmt(heapBefore + buffersBefore)}, peak ${fmt(peak('withBuffers'))} ` +
      `(+${fmt(peak('withBuffers') - heapBefore - buffersBefore)} = ${((peak('withBuffers') - heapBefore - buffersBefore) / MiB).toFixed(0)} MiB ` +
      `against shard ${fmt(Math.max(...plan.shardBytes))} + largest tensor ${fmt(largestSource)} bf16 + ${fmt(largestStored)} ${largest.storage})`,
  );
  /** @type {{ tensor: string; peak: number; after: number }[]} */
  const perTensor = r.tensors;
  const top = [...perTensor].sort((a, b) => b.peak - a.peak).slice(0, 3);
  console.log(`  highest per tensor (usedJSHeapSize while it was read, converted and stored${gcBetweenTensors ? ', garbage collected after each' : ''}):`);
  for (const t of top) console.log(`    ${t.tensor}: peak ${fmt(t.peak)}, after it ${fmt(t.after)}`);
  console.log(`  renderer RSS before ${fmt(rendererRss)}, peak (VmHWM, import and load) ${fmt(hwm)}`);
  console.log(
    `IndexedDB: origin usage ${fmt(storageBefore.usage)} → ${fmt(storageAfter.usage)} (+${fmt(storageAfter.usage - storageBefore.usage)}), quota ${fmt(storageAfter.quota)}; ` +
      `profile IndexedDB folder on disk ${fmt(idbOnDisk)}`,
  );
  if (generate) {
    const loadMs = r.phases.load.end - (r.phases.load.start || r.phases.import.start);
    console.log(
      `load from IndexedDB (wasm, page thread): ${secs(loadMs)}, page usedJSHeapSize peak ${fmt(r.phases.load.peak)}; first token after ${secs(r.firstTokenMs)}, ` +
        `${r.usage.completionTokens} tokens: ${JSON.stringify(r.text)} (${r.device})`,
    );
  }
  if (keep && !reuse) console.log(`kept the synthesised repo: ${repoDir}`);
} finally {
  await context.close();
  hub.server.close();
  cdn.server.close();
  await vite.close();
  for (const d of cleanup) await rm(d, { recursive: true, force: true });
}
