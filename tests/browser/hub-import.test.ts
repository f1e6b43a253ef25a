import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthesize } from '../../src/cli/synth.ts';
import { createEngine } from '../../src/node.ts';
import { parseHubRepo } from '../../src/checkpoint/hub.ts';
import { importKey } from '../../src/shards/hub-store-import.ts';
import { DEFAULT_SHARD_BYTES, planShards, tensorsToPlace } from '../../src/shards/plan.ts';
import { parseConfig } from '../../src/config.ts';
import { memoryShardStore } from '../../src/store/shard-store.ts';
import { type PickledTensorSpec, stateDictPickle, writeZip } from '../fuzz/pickle.ts';
import { type HubStandIn, startHubStandIn } from '../hub-server.ts';
import { callPage, launchBrowser, startViteServer, watchPage } from './harness.ts';
import type { HubCreateRequest, HubCreateResult } from './pages/hub-import-page.ts';

// Issue 17 item 1 in headless Chromium: createEngine({ model: 'test-org/NAME', hubUrl }) on a
// page imports a Hugging Face repo from the hub stand-in (302 to a CDN origin with Range, ETag and
// CORS) inside the engine's Web Worker, converts it and stores the shards in the page's
// IndexedDB, then runs it on the wasm engine. The repo: tiny-molm's shape with the real
// tokenizer's vocabulary, widened (n_embd 64, 4 layers, ffd_hidden 2560) so that its f32 copy
// (55 MiB) fills two 32 MiB shards, the first ending inside layer 2: an import stopped there has
// layers 2 and 3 and lm_head left to read. (Few, large tensors: the stand-in hashes the whole
// file for the ETag of every request, so each tensor read costs a pass over the file.)

// The harness's browser, plus one switch: Chromium 150 reports a static quota to
// navigator.storage.estimate() (usage + 4 GiB, StaticStorageQuota) whatever the origin's real
// quota is, so the quota DevTools sets (Storage.overrideQuotaForOrigin) would reach IndexedDB's
// writes but not the estimate the import checks first. Without the feature the estimate reports
// the real quota, as it did before.
const env = {} as { browser: Browser; base: string; server: ViteDevServer };
beforeAll(async () => {
  const { server, url } = await startViteServer();
  env.server = server;
  env.base = url;
  env.browser = await launchBrowser(['--disable-features=StaticStorageQuota']);
});
afterAll(async () => {
  await env.browser?.close();
  await env.server?.close();
});

const FIXTURES = join(__dirname, '..', 'fixtures');
const TOKENIZER = join(FIXTURES, 'tokenizer', 'tokenizer.json');
const PROMPT = 'The committee said that';
const GREEDY = { maxNewTokens: 12, temperature: 0 };
const ST = 'test-org/tiny-molm-st';
const BIN = 'test-org/tiny-molm-bin';

let dir: string;
let st: string;
let bin: string;
/** Closed after the first import: the second page load must need nothing from it. */
let hubA: HubStandIn;
let hubB: HubStandIn;
/** The f32 checkpoint's greedy text on the Node engine, from the local folder. */
let nodeF32Text: string;
/** The converted f32 copy's size and its first shard's (the plan's). */
let f32Bytes: number;
let firstShardBytes: number;
/** What a resumed f32 import reads: the tensors with a piece in the second shard. */
let secondShardTensorBytes: number;

/** Where a safetensors file's tensor bytes start: after its 8-byte length and its JSON header. */
function safetensorsDataStart(file: string): number {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(8);
    readSync(fd, head, 0, 8, 0);
    return 8 + Number(head.readBigUInt64LE(0));
  } finally {
    closeSync(fd);
  }
}

/** Writes `st`'s tensors (F32) as a pytorch_model.bin: a torch.save zip, one storage per tensor. */
function safetensorsToBin(stFile: string, binFile: string): void {
  const raw = readFileSync(stFile);
  const headerBytes = Number(raw.readBigUInt64LE(0));
  const header = JSON.parse(raw.subarray(8, 8 + headerBytes).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const specs: PickledTensorSpec[] = [];
  const storages: { name: string; data: Uint8Array }[] = [];
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F32') throw new Error(`${name}: ${t.dtype}, expected F32`);
    const key = String(specs.length);
    const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    const numel = t.shape.reduce((a, b) => a * b, 1);
    specs.push({ name, shape: t.shape, stride, offset: 0, numel, key });
    const at = 8 + headerBytes;
    storages.push({ name: `archive/data/${key}`, data: raw.subarray(at + t.data_offsets[0], at + t.data_offsets[1]) });
  }
  const enc = new TextEncoder();
  writeFileSync(
    binFile,
    writeZip([
      { name: 'archive/data.pkl', data: stateDictPickle(specs) },
      { name: 'archive/byteorder', data: enc.encode('little') },
      ...storages,
      { name: 'archive/version', data: enc.encode('3\n') },
    ]),
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'molm-hub-import-'));
  st = join(dir, 'st');
  bin = join(dir, 'bin');
  const configPath = join(dir, 'source-config.json');
  const config = JSON.parse(readFileSync(join(FIXTURES, 'golden/tiny-molm/config.json'), 'utf8'));
  // A wider init than the default 0.02 so the logits spread and greedy picks are far from ties.
  Object.assign(config, { vocab_size: 50295, n_embd: 64, n_layer: 4, ffd_hidden: 2560, n_ctx: 128, initializer_range: 0.2 });
  writeFileSync(configPath, JSON.stringify(config));
  const plan = planShards(tensorsToPlace(parseConfig(config), 'f32'));
  f32Bytes = plan.totalBytes;
  firstShardBytes = plan.shardBytes[0];
  secondShardTensorBytes = plan.tensors.filter((t) => t.pieces.some((p) => p.shard === 1)).reduce((a, t) => a + t.pieces.reduce((b, p) => b + p.bytes, 0), 0);
  expect(plan.shardBytes).toHaveLength(2);
  await synthesize({ configPath, outDir: st, dtype: 'F32', seed: 17 });
  writeFileSync(join(st, 'tokenizer.json'), readFileSync(TOKENIZER));
  await synthesize({ configPath, outDir: bin, dtype: 'F32', seed: 17 });
  safetensorsToBin(join(bin, 'model.safetensors'), join(bin, 'pytorch_model.bin'));
  rmSync(join(bin, 'model.safetensors'));
  const repoFiles = (folder: string, weights: string) => ({
    'config.json': join(folder, 'config.json'),
    'tokenizer.json': TOKENIZER,
    [weights]: join(folder, weights),
  });
  hubA = await startHubStandIn();
  hubB = await startHubStandIn();
  for (const hub of [hubA, hubB]) {
    hub.addRepo(ST, repoFiles(st, 'model.safetensors'));
    hub.addRepo(BIN, repoFiles(bin, 'pytorch_model.bin'));
  }
  // The independent host: Node's wasm engine reading the local folder (safetensors, f32).
  const node = await createEngine({ model: st, backend: 'wasm' });
  try {
    nodeF32Text = (await node.complete(PROMPT, GREEDY)).text;
  } finally {
    await node.dispose();
  }
}, 180_000);

afterAll(async () => {
  await hubA?.close().catch(() => {});
  await hubB?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** What a hub fetches while the loader probes for checkpoint forms a repo lacks: 404 EntryNotFound, expected. */
const PROBES = /\/resolve\/main\/(model\.safetensors(\.index\.json)?|pytorch_model\.bin(\.index\.json)?)$/;

interface Session {
  page: Page;
  problems: string[];
  create(r: Omit<HubCreateRequest, 'prompt' | 'greedy'>): Promise<HubCreateResult>;
  call<T>(fn: string, ...args: unknown[]): Promise<T>;
}

async function openPage(context: BrowserContext): Promise<Session> {
  const page = await context.newPage();
  const problems = watchPage(page, PROBES);
  await page.goto(`${env.base}/tests/browser/pages/hub-import.html`);
  await page.waitForFunction(() => document.getElementById('out')?.textContent === 'ready');
  const call = <T>(fn: string, ...args: unknown[]) => callPage<T>(page, 'hubImportPage', fn, ...args);
  return { page, problems, call, create: (r) => call<HubCreateResult>('create', { prompt: PROMPT, greedy: GREEDY, ...r }) };
}

const ok = (r: HubCreateResult) => expect(r.error, r.error && `${r.error.name}: ${r.error.message}`).toBeUndefined();

interface CacheView {
  models: { url: string; bytes: number; cachedBytes: number; complete: boolean }[];
  stored: number;
}

/** Requests any page of a context sends to a hub stand-in (the hub or its CDN). */
function hubRequests(context: BrowserContext, hub: HubStandIn): string[] {
  const seen: string[] = [];
  const origins = [new URL(hub.hubUrl).origin, new URL(hub.cdnUrl).origin];
  context.on('request', (q) => {
    if (origins.includes(new URL(q.url()).origin)) seen.push(q.url());
  });
  return seen;
}

describe('createEngine({ model: "ORG/NAME" }) in headless Chromium: the hub repo imported into IndexedDB in the worker', () => {
  let context: BrowserContext;
  beforeAll(async () => {
    context = await env.browser.newContext();
  });
  afterAll(async () => {
    await context?.close();
  });

  it('imports a safetensors repo as f32 with progress, gives the Node engine’s text, then loads from IndexedDB with the stand-in closed', async () => {
    const s = await openPage(context);
    const r = await s.create({ model: ST, hubUrl: hubA.hubUrl, dtype: 'f32' });
    ok(r);
    expect(r.engineClass).toBe('WorkerEngine');
    expect(r.backend).toBe('wasm');
    expect(r.text).toBe(nodeF32Text);
    expect(r.text!.length).toBeGreaterThan(0);

    // Progress: one event per tensor, bytes only growing, ending with everything written.
    const ev = r.imports;
    expect(ev.length).toBeGreaterThan(10);
    const total = ev[0].totalBytes;
    expect(total).toBe(f32Bytes);
    expect(total).toBeGreaterThan(DEFAULT_SHARD_BYTES); // two shards
    for (let i = 1; i < ev.length; i++) {
      expect(ev[i].writtenBytes).toBeGreaterThanOrEqual(ev[i - 1].writtenBytes);
      expect(ev[i].readBytes).toBeGreaterThanOrEqual(ev[i - 1].readBytes);
      expect(ev[i].totalBytes).toBe(total);
    }
    expect(ev.every((e) => e.type === 'import' && e.repo === ST && e.resumedBytes === 0)).toBe(true);
    expect(ev.every((e) => e.secondsLeft === null || e.secondsLeft >= 0)).toBe(true);
    const last = ev.at(-1)!;
    expect(last.writtenBytes).toBe(total);
    expect(last.secondsLeft).toBe(0);
    expect(last.tensor).toBe('lm_head.weight');
    // f32 from f32: the bytes read are the bytes written.
    expect(last.readBytes).toBe(total);
    // The weights came through the CDN with Range requests, one hub request for the file.
    expect(hubA.count('hub', `${ST}/main/model.safetensors`)).toBe(1);
    expect(hubA.requests.filter((q) => q.server === 'cdn' && q.method === 'GET' && q.file.endsWith('model.safetensors')).every((q) => q.status === 206)).toBe(
      true,
    );

    const key = importKey(parseHubRepo(ST), hubA.hubUrl, 'f32');
    const cached = await s.call<CacheView>('cache');
    expect(cached.models).toEqual([expect.objectContaining({ url: key, bytes: total, cachedBytes: total, complete: true })]);
    expect(cached.stored).toBe(3); // two shards and tokenizer.json
    expect(s.problems).toEqual([]);
    await s.page.close();

    // A second page load, the stand-in closed: the model and its tokenizer come from IndexedDB.
    await hubA.close();
    const seen = hubRequests(context, hubA);
    const again = await openPage(context);
    const r2 = await again.create({ model: ST, hubUrl: hubA.hubUrl, dtype: 'f32' });
    ok(r2);
    expect(r2.imports).toEqual([]);
    expect(r2.text).toBe(nodeF32Text);
    expect(seen).toEqual([]);
    expect(again.problems).toEqual([]);
    await again.page.close();
  });

  it('an import stopped midway resumes on the next createEngine from the stored shard, with the same text', async () => {
    const s = await openPage(context);
    const before = hubB.requests.length;
    // Stopped once the first shard is stored (the event after the tensor that opens the second).
    const r = await s.create({ model: ST, hubUrl: hubB.hubUrl, dtype: 'f32', abortAtWrittenBytes: firstShardBytes + 1 });
    expect(r.error?.name).toBe('AbortError');
    const stoppedAt = r.imports.at(-1)!;
    expect(stoppedAt.writtenBytes).toBeLessThan(stoppedAt.totalBytes);
    const key = importKey(parseHubRepo(ST), hubB.hubUrl, 'f32');
    const partial = (await s.call<CacheView>('cache')).models.find((m) => m.url === key);
    expect(partial?.complete).toBe(false);
    expect(partial?.cachedBytes).toBe(firstShardBytes);
    expect(hubB.requests.length).toBeGreaterThan(before);

    const r2 = await s.create({ model: ST, hubUrl: hubB.hubUrl, dtype: 'f32' });
    ok(r2);
    expect(r2.imports[0].resumedBytes).toBe(firstShardBytes);
    expect(r2.imports[0].writtenBytes).toBeGreaterThan(firstShardBytes);
    const last = r2.imports.at(-1)!;
    expect(last.writtenBytes).toBe(last.totalBytes);
    expect(last.secondsLeft).toBe(0);
    // The first shard's tensors were not read again; the one that spans both shards was.
    expect(last.readBytes).toBe(secondShardTensorBytes);
    expect(last.readBytes).toBeLessThan(last.totalBytes - firstShardBytes + (4 << 20));
    expect(r2.text).toBe(nodeF32Text);
    const done = (await s.call<CacheView>('cache')).models.find((m) => m.url === key);
    expect(done).toMatchObject({ complete: true, cachedBytes: last.totalBytes });
    expect(s.problems).toEqual([]);
    await s.page.close();
  });

  it('a pytorch_model.bin repo of the same tensors gives the same text', async () => {
    const s = await openPage(context);
    const r = await s.create({ model: BIN, hubUrl: hubB.hubUrl, dtype: 'f32' });
    ok(r);
    expect(r.text).toBe(nodeF32Text);
    const last = r.imports.at(-1)!;
    expect(last).toMatchObject({ writtenBytes: f32Bytes, totalBytes: f32Bytes, readBytes: f32Bytes, secondsLeft: 0 });
    const key = importKey(parseHubRepo(BIN), hubB.hubUrl, 'f32');
    expect((await s.call<CacheView>('cache')).models.find((m) => m.url === key)?.complete).toBe(true);
    // Only Range reads of the zip: no request fetched pytorch_model.bin whole.
    const reads = hubB.requests.filter((q) => q.server === 'cdn' && q.method === 'GET' && q.file === `${BIN}/main/pytorch_model.bin`);
    expect(reads.length).toBeGreaterThan(1);
    expect(reads.every((q) => q.status === 206)).toBe(true);
    expect(s.problems).toEqual([]);
    await s.page.close();
  });
});

describe('the storage quota in the browser', () => {
  it('a quota below the converted size: QuotaError before any shard is stored; the model cached before stays and loads', async () => {
    // Chromium's own quota for the origin (DevTools' "custom storage quota"), set before the
    // page opens IndexedDB (as in faults.test.ts): room for the q4 copy, not for the f32 one.
    const quota = Math.round(f32Bytes * 0.7);
    const context = await env.browser.newContext();
    const origin = new URL(env.base).origin;
    const blank = await context.newPage();
    const cdp = await context.newCDPSession(blank);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: quota });
    const s = await openPage(context);
    try {
      // Cached first: the repo at the default dtype, q4 (the Node engine's q4 import gives the same text).
      const first = await s.create({ model: ST, hubUrl: hubB.hubUrl });
      ok(first);
      const node = await createEngine({ model: ST, hubUrl: hubB.hubUrl, backend: 'wasm', store: memoryShardStore() });
      try {
        expect(first.text).toBe((await node.complete(PROMPT, GREEDY)).text);
      } finally {
        await node.dispose();
      }
      const q4Key = importKey(parseHubRepo(ST), hubB.hubUrl, 'q4');
      const before = await s.call<CacheView>('cache');
      expect(before.models).toEqual([expect.objectContaining({ url: q4Key, complete: true })]);
      const estimate = await s.call<{ usage: number; quota: number }>('estimate');
      expect(estimate.quota).toBe(quota);
      expect(estimate.quota - estimate.usage).toBeLessThan(f32Bytes);

      const requestsBefore = hubB.requests.length;
      const r = await s.create({ model: ST, hubUrl: hubB.hubUrl, dtype: 'f32' });
      expect(r.error?.name).toBe('QuotaError');
      expect(r.error?.message).toMatch(/^The model needs \d+(\.\d+)? MB more, the browser offers \d+(\.\d+)? MB; .*q4/);
      expect(r.imports).toEqual([]);
      // Nothing stored: no record for the f32 copy, no shard, no tensor read from the hub.
      expect(await s.call<CacheView>('cache')).toEqual(before);
      const weightReads = hubB.requests.slice(requestsBefore).filter((q) => q.server === 'cdn' && q.file.endsWith('model.safetensors') && q.method === 'GET');
      // The safetensors header is read (it gives the tensors to plan); no byte of a tensor is.
      const dataStart = safetensorsDataStart(join(st, 'model.safetensors'));
      expect(weightReads.length).toBeGreaterThan(0);
      for (const q of weightReads)
        expect(Number(/^bytes=\d+-(\d+)$/.exec(q.range ?? '')?.[1] ?? Number.POSITIVE_INFINITY), q.range ?? 'whole file').toBeLessThan(dataStart);

      // The q4 copy is still there and loads, with no import and the same text.
      const again = await s.create({ model: ST, hubUrl: hubB.hubUrl, dtype: 'q4' });
      ok(again);
      expect(again.imports).toEqual([]);
      expect(again.text).toBe(first.text);
      expect(s.problems).toEqual([]);
    } finally {
      await cdp.send('Storage.overrideQuotaForOrigin', { origin }).catch(() => {});
      await context.close();
    }
  });
});
