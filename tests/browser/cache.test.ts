import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { convertModel } from '../../src/shards/convert.ts';
import type { Manifest } from '../../src/manifest.ts';
import type { LoadProgress } from '../../src/shards/load-model.ts';
import type { CachedModel } from '../../src/store/model-cache.ts';
import { callPage, useBrowser, watchPage } from './harness.ts';
import { startModelServer, type ModelServer } from './model-server.ts';
import type { LoadRequest, LoadResult } from './pages/cache-page.ts';

// loadModel in headless Chromium: the page comes from the Vite server, the models from
// model-server.ts on another port (cross-origin, like a CDN), the cache is the page's IndexedDB.
// Each test gets a fresh browser context, so a fresh, empty IndexedDB.

const env = useBrowser();
const GOLDEN = join(__dirname, '..', 'fixtures', 'golden');
const SHARD_BYTES = 64 * 1024;

let dir: string;
let server: ModelServer;
const manifests: Record<string, Manifest> = {};
const golden = { ids: [] as number[], tokens: [] as number[], logits: new Float32Array() };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'molm-cache-test-'));
  // A: the tiny-molm golden in f32 (7 shards of at most 64 KiB); B: another model.
  manifests.a = await convertModel({ source: nodeFileSource(join(GOLDEN, 'tiny-molm')), outDir: join(dir, 'a'), dtype: 'f32', shardBytes: SHARD_BYTES });
  manifests.b = await convertModel({
    source: nodeFileSource(join(GOLDEN, 'tiny-generic-bf16')),
    outDir: join(dir, 'b'),
    dtype: 'bf16',
    shardBytes: SHARD_BYTES,
  });
  // The same model under a second URL: same shards, same sha256.
  await cp(join(dir, 'a'), join(dir, 'a-copy'), { recursive: true });
  manifests['a-copy'] = manifests.a;
  server = await startModelServer(dir);
  const expected = JSON.parse(await readFile(join(GOLDEN, 'tiny-molm', 'expected.json'), 'utf8'));
  const raw = await readFile(join(GOLDEN, 'tiny-molm', 'expected_logits.f32'));
  golden.ids = expected.input_ids;
  golden.tokens = expected.greedy_new_tokens;
  golden.logits = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
});

afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const modelUrl = (name: string) => `${server.url}/${name}/manifest.json`;
const shardPath = (name: string, i: number) => `/${name}/${manifests[name].shards[i].file}`;
const totalOf = (name: string) => manifests[name].shards.reduce((a, s) => a + s.bytes, 0);

interface Session {
  context: BrowserContext;
  page: Page;
  problems: string[];
  load(r: Omit<LoadRequest, 'url'> & { name: string }): Promise<LoadResult>;
  call<T>(fn: string, ...args: unknown[]): Promise<T>;
}

async function session(): Promise<Session> {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  const problems = watchPage(page);
  await page.goto(`${env.base}/tests/browser/pages/cache.html`);
  await page.waitForFunction(() => document.getElementById('out')?.textContent === 'ready');
  const call = <T>(fn: string, ...args: unknown[]) => callPage<T>(page, 'cachePage', fn, ...args);
  return {
    context,
    page,
    problems,
    call,
    load: ({ name, ...r }) => call<LoadResult>('load', { url: modelUrl(name), ...r }),
  };
}

function expectLoaded(r: LoadResult): void {
  expect(r.error, r.error && `${r.error.name}: ${r.error.message}`).toBeUndefined();
}

function expectGolden(r: LoadResult): void {
  expectLoaded(r);
  expect(r.logits).toHaveLength(golden.logits.length);
  let err = 0;
  for (let i = 0; i < golden.logits.length; i++) err = Math.max(err, Math.abs(r.logits![i] - golden.logits[i]));
  expect(err, `max abs logit error ${err}`).toBeLessThanOrEqual(1e-4);
  expect(r.tokens).toEqual(golden.tokens);
}

const ofType = <T extends LoadProgress['type']>(events: LoadProgress[], type: T) =>
  events.filter((e): e is Extract<LoadProgress, { type: T }> => e.type === type);

// Chromium reports a dropped connection and 404/503 answers as console errors; they are expected
// where a test provokes them.
const unexpected = (problems: string[]) =>
  problems.filter((p) => !/ERR_CONTENT_LENGTH_MISMATCH|status of (404|416|503)|^HTTP (404|416|503):|Failed to fetch|network error/i.test(p));

describe('loadModel: downloads, caches and verifies shards (headless Chromium, IndexedDB)', () => {
  beforeEach(() => server.reset());

  it('first load: progress events in order with their totals; the golden logits and tokens; a second load reads only the cache', async () => {
    const s = await session();
    server.reset();
    const n = manifests.a.shards.length;
    const total = totalOf('a');
    expect(n).toBeGreaterThanOrEqual(4);

    const first = await s.load({ name: 'a', ids: golden.ids, newTokens: golden.tokens.length });
    expectGolden(first);
    expect(first.adapter).toMatch(/swiftshader/i);
    const ev = first.events;
    expect(ev[0]).toEqual({ type: 'initiate', url: modelUrl('a'), shards: n, totalBytes: total, cachedBytes: 0, downloadBytes: total });
    expect(ev.at(-1)).toMatchObject({ type: 'ready', url: modelUrl('a'), totalBytes: total, cachedBytes: 0, networkBytes: total });
    for (let i = 0; i < n; i++) {
      const at = (pred: (e: LoadProgress) => boolean) => ev.findIndex((e) => 'index' in e && e.index === i && pred(e));
      const all = (pred: (e: LoadProgress) => boolean) => ev.flatMap((e, k) => ('index' in e && e.index === i && pred(e) ? [k] : []));
      const download = all((e) => e.type === 'download');
      const progress = all((e) => e.type === 'progress');
      const verify = at((e) => e.type === 'verify');
      const upload = at((e) => e.type === 'upload');
      expect(download).toHaveLength(1);
      expect(ev[download[0]]).toMatchObject({ from: 0, total: manifests.a.shards[i].bytes });
      expect(progress.length).toBeGreaterThan(0);
      expect(download[0]).toBeLessThan(progress[0]);
      expect(progress.at(-1)!).toBeLessThan(verify);
      expect(ev[progress.at(-1)!]).toMatchObject({ loaded: manifests.a.shards[i].bytes, total: manifests.a.shards[i].bytes });
      expect(ev[verify]).toMatchObject({ source: 'network', ok: true });
      expect(verify).toBeLessThan(upload);
      expect(ev[upload]).toMatchObject({ source: 'network', shard: manifests.a.shards[i].file });
    }
    // Each downloaded shard goes into the GPU right after its verification (above), so uploads
    // follow the downloads' completion order; overall counts every shard once.
    const uploads = ofType(ev, 'upload');
    expect(uploads.map((u) => u.index).sort((a, b) => a - b)).toEqual([...Array(n).keys()]);
    expect(uploads.map((u) => u.overallLoaded)).toEqual(uploads.map((_, k) => uploads.slice(0, k + 1).reduce((a, u) => a + u.loaded, 0)));
    expect(uploads.at(-1)!.overallLoaded).toBe(total);
    expect(uploads.every((u) => u.overallTotal === total)).toBe(true);
    const progress = ofType(ev, 'progress');
    expect(progress.every((p, k) => k === 0 || p.overallLoaded >= progress[k - 1].overallLoaded)).toBe(true);
    expect(progress.at(-1)).toMatchObject({ overallLoaded: total, overallTotal: total });
    for (let i = 0; i < n; i++) expect(server.count(shardPath('a', i))).toBe(1);

    // Second load: the manifest from the network, every shard from IndexedDB.
    server.reset();
    const second = await s.load({ name: 'a', ids: golden.ids, newTokens: golden.tokens.length });
    expectGolden(second);
    expect(server.count()).toBe(0);
    expect(server.count('/a/manifest.json')).toBe(1);
    expect(second.events[0]).toMatchObject({ type: 'initiate', cachedBytes: total, downloadBytes: 0 });
    expect(ofType(second.events, 'download')).toEqual([]);
    expect(ofType(second.events, 'progress')).toEqual([]);
    expect(ofType(second.events, 'verify').map((v) => [v.index, v.source, v.ok])).toEqual(manifests.a.shards.map((_, i) => [i, 'cache', true]));
    expect(ofType(second.events, 'upload').every((u) => u.source === 'cache')).toBe(true);
    expect(second.events.at(-1)).toMatchObject({ type: 'ready', cachedBytes: total, networkBytes: 0 });
    expect(await s.call<CachedModel[]>('list')).toEqual([expect.objectContaining({ url: modelUrl('a'), bytes: total, cachedBytes: total, complete: true })]);
    expect(s.problems).toEqual([]);
    await s.context.close();
  }, 240_000);

  it('a connection dropped mid-shard: the download resumes with a Range request and the model matches the golden', async () => {
    const s = await session();
    server.reset();
    const path = shardPath('a', 2);
    server.switches.dropAfter = { path, bytes: 20_000 };
    const r = await s.load({ name: 'a', ids: golden.ids, newTokens: golden.tokens.length });
    expectGolden(r);
    const gets = server.requests.filter((q) => q.path === path && q.method === 'GET');
    expect(gets).toHaveLength(2);
    expect(gets[0]).toMatchObject({ range: null, status: 200 });
    expect(gets[1].status).toBe(206);
    const from = Number(gets[1].range!.match(/^bytes=(\d+)-$/)![1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(20_000);
    expect(
      ofType(r.events, 'download')
        .filter((d) => d.index === 2)
        .map((d) => d.from),
    ).toEqual([0, from]);
    expect((await s.call<{ partials: unknown[] }>('stored')).partials).toEqual([]);
    expect(unexpected(s.problems)).toEqual([]);
    await s.context.close();
  }, 240_000);

  it('a server without Range support: the interrupted shard is downloaded again from byte 0; 503 answers are retried', async () => {
    const s = await session();
    server.reset();
    server.switches.ranges = false;
    const path = shardPath('a', 1);
    server.switches.dropAfter = { path, bytes: 30_000 };
    server.switches.failures.set(shardPath('a', 3), 2);
    const r = await s.load({ name: 'a' });
    expectLoaded(r);
    expect(server.requests.filter((q) => q.path === shardPath('a', 3)).map((q) => q.status)).toEqual([503, 503, 200]);
    const gets = server.requests.filter((q) => q.path === path && q.method === 'GET');
    expect(gets.map((g) => g.status)).toEqual([200, 200]);
    expect(gets[1].range).toMatch(/^bytes=\d+-$/); // asked to resume, answered with the whole shard
    expect(
      ofType(r.events, 'download')
        .filter((d) => d.index === 1)
        .map((d) => d.from),
    ).toEqual([0, 0]);
    expect(unexpected(s.problems)).toEqual([]);
    await s.context.close();
  }, 240_000);

  it('an interrupted load keeps the received bytes; the next load resumes from them', async () => {
    const s = await session();
    server.reset();
    const path = shardPath('a', 3);
    server.switches.dropAfter = { path, bytes: 40_000 };
    const failed = await s.load({ name: 'a', retries: 0, concurrency: 1 });
    expect(failed.error?.name).toBe('MolmError');
    expect(failed.error?.message).toMatch(/resumes where it stopped/);
    const { partials, shards } = await s.call<{ partials: { sha256: string; bytes: number }[]; shards: string[] }>('stored');
    expect(shards).not.toContain(manifests.a.shards[3].sha256);
    expect(partials).toHaveLength(1);
    expect(partials[0].sha256).toBe(manifests.a.shards[3].sha256);
    expect(partials[0].bytes).toBeGreaterThan(0);
    expect(await s.call<CachedModel[]>('list')).toEqual([expect.objectContaining({ url: modelUrl('a'), complete: false })]);

    server.reset();
    const r = await s.load({ name: 'a', ids: golden.ids, newTokens: golden.tokens.length });
    expectGolden(r);
    const gets = server.requests.filter((q) => q.method === 'GET' && q.path.endsWith('.bin'));
    // Only the shards that were not complete yet, and the interrupted one from where it stopped.
    expect(gets.find((g) => g.path === path)).toMatchObject({ range: `bytes=${partials[0].bytes}-`, status: 206 });
    expect(r.events[0]).toMatchObject({ type: 'initiate', downloadBytes: totalOf('a') - (r.events[0] as { cachedBytes: number }).cachedBytes });
    expect((await s.call<{ partials: unknown[] }>('stored')).partials).toEqual([]);
    expect(await s.call<CachedModel[]>('list')).toEqual([expect.objectContaining({ url: modelUrl('a'), complete: true })]);
    await s.context.close();
  }, 240_000);

  it('a shard corrupt on the server: ModelFormatError that says so, and nothing corrupt is stored', async () => {
    const s = await session();
    server.reset();
    server.switches.corrupt.add(shardPath('a', 1));
    const r = await s.load({ name: 'a', concurrency: 1 });
    expect(r.error?.name).toBe('ModelFormatError');
    expect(r.error?.message).toContain(`shard ${manifests.a.shards[1].file} is corrupt on the server`.replace(/^s/, 'S'));
    expect(r.error?.message).toMatch(/sha256 [0-9a-f]{64}.*the model host must re-upload it/);
    const stored = await s.call<{ shards: string[]; partials: unknown[] }>('stored');
    expect(stored.shards).not.toContain(manifests.a.shards[1].sha256);
    expect(stored.partials).toEqual([]);
    // Only verified shards reached the GPU (shard 0, before the corrupt one), never shard 1.
    expect(ofType(r.events, 'upload').map((u) => u.index)).toEqual([0]);
    await s.context.close();
  }, 240_000);

  it('a shard damaged in IndexedDB is detected, deleted and fetched again, never used', async () => {
    const s = await session();
    expectLoaded(await s.load({ name: 'a' }));
    const damaged = manifests.a.shards[2];
    await s.call('tamper', damaged.sha256);
    // Shard 0 in the store's other form (Uint8Array, after a refused Blob write): read as well.
    await s.call('storeAsArray', manifests.a.shards[0].sha256);

    server.reset();
    const r = await s.load({ name: 'a', ids: golden.ids, newTokens: golden.tokens.length });
    expectGolden(r);
    expect(server.count()).toBe(1);
    expect(server.count(shardPath('a', 2))).toBe(1);
    const verify = ofType(r.events, 'verify');
    expect(verify.filter((v) => v.index === 2).map((v) => [v.source, v.ok])).toEqual([
      ['cache', false],
      ['network', true],
    ]);
    expect(ofType(r.events, 'upload')[2].source).toBe('network');

    // The refetched copy is good: a third load needs no shard from the network.
    server.reset();
    const third = await s.load({ name: 'a' });
    expectLoaded(third);
    expect(server.count()).toBe(0);
    expect(ofType(third.events, 'verify').every((v) => v.ok)).toBe(true);
    await s.context.close();
  }, 240_000);

  it('quota too small (navigator.storage.estimate): QuotaError before any download; the cached model stays listed and loadable', async () => {
    const s = await session();
    expectLoaded(await s.load({ name: 'a' }));
    await s.call('fakeQuota', 1000);
    server.reset();
    const r = await s.load({ name: 'b' });
    expect(r.error?.name).toBe('QuotaError');
    expect(r.error?.message).toMatch(/the model needs [\d.]+ MB more, the browser offers 0\.0 MB; free space/i);
    expect(server.count()).toBe(0);
    await s.call('fakeQuota', null);

    const listed = await s.call<CachedModel[]>('list');
    expect(listed.find((m) => m.url === modelUrl('a'))).toMatchObject({ complete: true, cachedBytes: totalOf('a') });
    server.reset();
    const again = await s.load({ name: 'a', ids: golden.ids, newTokens: golden.tokens.length });
    expectGolden(again);
    expect(server.count()).toBe(0);
    await s.context.close();
  }, 240_000);

  it('the store fills up mid-download (QuotaExceededError): QuotaError; nothing cached is lost', async () => {
    const s = await session();
    expectLoaded(await s.load({ name: 'a' }));
    const before = await s.call<{ shards: string[] }>('stored');
    server.reset();
    const r = await s.load({ name: 'b', failPutAfter: 1, concurrency: 1 });
    expect(r.error?.name).toBe('QuotaError');
    expect(r.error?.message).toMatch(/storage is full.*Shards already cached are kept/);
    const after = await s.call<{ shards: string[] }>('stored');
    for (const h of before.shards) expect(after.shards).toContain(h);
    expect(after.shards.filter((h) => !before.shards.includes(h))).toHaveLength(1); // the one put that fit

    const listed = await s.call<CachedModel[]>('list');
    expect(listed.find((m) => m.url === modelUrl('a'))).toMatchObject({ complete: true });
    expect(listed.find((m) => m.url === modelUrl('b'))).toMatchObject({ complete: false });
    server.reset();
    expectGolden(await s.load({ name: 'a', ids: golden.ids, newTokens: golden.tokens.length }));
    expect(server.count()).toBe(0);
    await s.context.close();
  }, 240_000);

  it('listCachedModels, deleteCachedModel (shards another model uses are kept) and clearCache', async () => {
    const s = await session();
    server.reset();
    expectLoaded(await s.load({ name: 'a' }));
    // The same shards under another URL: content-addressed, so nothing is downloaded again.
    expectLoaded(await s.load({ name: 'a-copy' }));
    expect(server.count()).toBe(manifests.a.shards.length);
    expectLoaded(await s.load({ name: 'b' }));
    const urls = (await s.call<CachedModel[]>('list')).map((m) => m.url).sort();
    expect(urls).toEqual([modelUrl('a'), modelUrl('a-copy'), modelUrl('b')].sort());
    const aShards = manifests.a.shards.map((x) => x.sha256);
    const bShards = manifests.b.shards.map((x) => x.sha256);

    expect(await s.call('delete', modelUrl('a-copy'))).toBe(true);
    let stored = await s.call<{ shards: string[] }>('stored');
    for (const h of aShards) expect(stored.shards).toContain(h);
    server.reset();
    expectLoaded(await s.load({ name: 'a' }));
    expect(server.count()).toBe(0);

    // The folder URL names the same model as its manifest.json.
    expect(await s.call('delete', `${server.url}/b/`)).toBe(true);
    expect(await s.call('delete', modelUrl('b'))).toBe(false);
    stored = await s.call<{ shards: string[] }>('stored');
    for (const h of bShards) expect(stored.shards).not.toContain(h);
    expect((await s.call<CachedModel[]>('list')).map((m) => m.url)).toEqual([modelUrl('a')]);

    await s.call('clear');
    expect(await s.call('list')).toEqual([]);
    expect(await s.call('stored')).toEqual({ shards: [], partials: [] });
    await s.context.close();
  }, 240_000);

  it("a new version at the same URL: its shards are downloaded, the old version's dropped", async () => {
    const s = await session();
    await rm(join(dir, 'v'), { recursive: true, force: true });
    await cp(join(dir, 'a'), join(dir, 'v'), { recursive: true });
    manifests.v = manifests.a;
    expectLoaded(await s.load({ name: 'v' }));
    await rm(join(dir, 'v'), { recursive: true });
    await cp(join(dir, 'b'), join(dir, 'v'), { recursive: true });
    manifests.v = manifests.b;
    server.reset();
    const r = await s.load({ name: 'v' });
    expectLoaded(r);
    expect(server.count()).toBe(manifests.b.shards.length);
    const stored = await s.call<{ shards: string[] }>('stored');
    expect(stored.shards).toEqual(manifests.b.shards.map((x) => x.sha256).sort());
    expect(await s.call<CachedModel[]>('list')).toEqual([expect.objectContaining({ url: modelUrl('v'), complete: true, bytes: totalOf('b') })]);
    await s.context.close();
  }, 240_000);

  it('an aborted load: AbortError, and the bytes received so far are kept for the next load', async () => {
    const s = await session();
    server.reset();
    server.switches.throttle = { chunk: 8192, delayMs: 5 };
    const r = await s.load({ name: 'a', concurrency: 1, abortAfterBytes: 100_000 });
    expect(r.error?.name).toBe('AbortError');
    // The shard completed before the abort went into the GPU; the interrupted one did not.
    expect(ofType(r.events, 'upload').map((u) => u.index)).toEqual([0]);
    const stored = await s.call<{ shards: string[]; partials: { sha256: string; bytes: number }[] }>('stored');
    expect(stored.shards).toEqual([manifests.a.shards[0].sha256]);
    expect(stored.partials).toEqual([expect.objectContaining({ sha256: manifests.a.shards[1].sha256 })]);
    server.reset();
    expectLoaded(await s.load({ name: 'a' }));
    expect(server.count()).toBe(manifests.a.shards.length - 1);
    expect(server.requests.find((q) => q.path === shardPath('a', 1))).toMatchObject({ range: `bytes=${stored.partials[0].bytes}-`, status: 206 });
    await s.context.close();
  }, 240_000);
});
