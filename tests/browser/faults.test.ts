import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { convertModel } from '../../src/shards/convert.ts';
import type { LoadProgress } from '../../src/shards/load-model.ts';
import type { Manifest } from '../../src/manifest.ts';
import type { CachedModel } from '../../src/store/model-cache.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { callPage, useBrowser, watchPage } from './harness.ts';
import { rng } from '../shared/numeric.ts';
import { startModelServer, type ModelServer, type ServedRequest } from './model-server.ts';
import type { FaultLoadRequest, FaultLoadResult } from './pages/faults-page.ts';

// Faults a real browser meets, each caused for real (connections cut by the model host, a
// storage quota Chromium enforces running out, the GPU device destroyed, the tab closed), each
// ending in an error that says what to do, and each followed by a load that heals: the golden
// logits and tokens, the cache intact, no complete shard fetched twice. Each test gets a fresh
// browser context, so a fresh, empty IndexedDB.

// Chromium 150's static storage quota (a fixed estimate, and a quota manager that kept refusing
// writes after space was freed) is off, so the origin's quota set below is the one in force.
const env = useBrowser({ args: ['--disable-features=StaticStorageQuota'] });
const GOLDEN = join(__dirname, '..', 'fixtures', 'golden');
const SHARD_BYTES = 64 * 1024;

let dir: string;
let server: ModelServer;
const manifests: Record<string, Manifest> = {};
interface Golden {
  ids: number[];
  tokens: number[];
  logits: Float32Array;
}
const golden: Record<string, Golden> = {};

async function readGolden(name: string): Promise<Golden> {
  const expected = JSON.parse(await readFile(join(GOLDEN, name, 'expected.json'), 'utf8'));
  const raw = await readFile(join(GOLDEN, name, 'expected_logits.f32'));
  return { ids: expected.input_ids, tokens: expected.greedy_new_tokens, logits: new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4) };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'molm-faults-test-'));
  // a: the tiny-molm golden in f32 (shards of at most 64 KiB); b: another model; brown: the
  // built-in model with its tokenizer, for the text engine.
  manifests.a = await convertModel({ source: nodeFileSource(join(GOLDEN, 'tiny-molm')), outDir: join(dir, 'a'), dtype: 'f32', shardBytes: SHARD_BYTES });
  manifests.b = await convertModel({
    source: nodeFileSource(join(GOLDEN, 'tiny-generic-bf16')),
    outDir: join(dir, 'b'),
    dtype: 'bf16',
    shardBytes: SHARD_BYTES,
  });
  await cp(BUILT_IN_MODEL.dir, join(dir, 'brown'), { recursive: true });
  golden.a = await readGolden('tiny-molm');
  golden.b = await readGolden('tiny-generic-bf16');
  const brown = JSON.parse(await readFile(join(GOLDEN, 'molm-brown', 'expected.json'), 'utf8'));
  golden.brown = { ids: brown.input_ids, tokens: brown.greedy_new_tokens, logits: new Float32Array() };
  server = await startModelServer(dir);
});

afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const modelUrl = (name: string) => `${server.url}/${name}/manifest.json`;
const shardPath = (name: string, i: number) => `/${name}/${manifests[name].shards[i].file}`;
const totalOf = (name: string) => manifests[name].shards.reduce((a, s) => a + s.bytes, 0);
const CUTS = 50;

/**
 * `n` distinct offsets spread over a model's bytes (seeded: the same cuts every run), as the
 * server's `cuts` switch takes them: per shard, ascending offsets into the file.
 */
function cutsAcross(name: string, n: number, seed: number): Map<string, number[]> {
  const random = rng(seed);
  const total = totalOf(name);
  const at = new Set<number>();
  while (at.size < n) at.add(Math.floor(random() * total));
  const cuts = new Map<string, number[]>();
  for (const x of [...at].sort((p, q) => p - q)) {
    let i = 0;
    let offset = x;
    while (offset >= manifests[name].shards[i].bytes) offset -= manifests[name].shards[i++].bytes;
    cuts.set(shardPath(name, i), [...(cuts.get(shardPath(name, i)) ?? []), offset]);
  }
  return cuts;
}

/** Every cut happened: the server used each offset once. */
function expectCutsUsed(): void {
  expect([...server.switches.cuts.values()].flat()).toEqual([]);
  expect(server.requests.filter((q) => q.cut)).toHaveLength(CUTS);
}

const shardGets = (path: string) => server.requests.filter((q) => q.method === 'GET' && q.path === path);

interface Session {
  context: BrowserContext;
  page: Page;
  problems: string[];
  load(name: string, r?: Omit<FaultLoadRequest, 'url'>): Promise<FaultLoadResult>;
  call<T>(fn: string, ...args: unknown[]): Promise<T>;
}

async function openPage(context: BrowserContext): Promise<Session> {
  const page = await context.newPage();
  const problems = watchPage(page);
  await page.goto(`${env.base}/tests/browser/pages/faults.html`);
  await page.waitForFunction(() => document.getElementById('out')?.textContent === 'ready');
  const call = <T>(fn: string, ...args: unknown[]) => callPage<T>(page, 'faultsPage', fn, ...args);
  return { context, page, problems, call, load: (name, r = {}) => call<FaultLoadResult>('load', { url: modelUrl(name), ...r }) };
}

async function session(): Promise<Session> {
  return openPage(await env.browser.newContext());
}

function expectLoaded(r: FaultLoadResult): void {
  expect(r.error, r.error && `${r.error.name}: ${r.error.message}`).toBeUndefined();
}

function expectGolden(r: FaultLoadResult, name: 'a' | 'b' = 'a'): void {
  expectLoaded(r);
  const g = golden[name];
  expect(r.logits).toHaveLength(g.logits.length);
  let err = 0;
  for (let i = 0; i < g.logits.length; i++) err = Math.max(err, Math.abs(r.logits![i] - g.logits[i]));
  expect(err, `max abs logit error ${err}`).toBeLessThanOrEqual(1e-4);
  expect(r.tokens).toEqual(g.tokens);
}

const goldenLoad = (s: Session, name: 'a' | 'b' = 'a', r: Omit<FaultLoadRequest, 'url'> = {}) =>
  s.load(name, { ids: golden[name].ids, newTokens: golden[name].tokens.length, ...r });

const ofType = <T extends LoadProgress['type']>(events: LoadProgress[], type: T) =>
  events.filter((e): e is Extract<LoadProgress, { type: T }> => e.type === type);

/** Where an answer's body starts in the file: the Range asked for when answered with 206, else 0. */
const rangeFrom = (q: ServedRequest) => (q.status === 206 && q.range ? Number(q.range.match(/^bytes=(\d+)-$/)![1]) : 0);

/**
 * Runs in the realm that holds an engine's GPUDevice (a worker or the page): the `n`-th command
 * encoder created from now on first destroys its device. The loss is WebGPU's own, as after a
 * driver reset (destroy() is the one way a page can cause one).
 */
function loseDeviceAfter(n: number): void {
  const proto = GPUDevice.prototype;
  const create = proto.createCommandEncoder;
  let count = 0;
  proto.createCommandEncoder = function (this: GPUDevice, descriptor?: GPUCommandEncoderDescriptor) {
    if (++count === n) {
      proto.createCommandEncoder = create;
      this.destroy();
    }
    return create.call(this, descriptor);
  };
}

// Chromium reports a cut connection and refused writes as console errors; they are expected
// where a test provokes them.
const unexpected = (problems: string[]) =>
  problems.filter((p) => !/ERR_CONTENT_LENGTH_MISMATCH|ERR_CONNECTION|Failed to fetch|network error|QuotaExceeded/i.test(p));

describe('faults in the browser: each ends in a clear error, and the next load heals', () => {
  beforeEach(() => server.reset());

  it('the connection cut at 50 random offsets during one load: each retry resumes from the bytes received, no complete shard is fetched twice, the model matches the golden', async () => {
    const s = await session();
    const cuts = cutsAcross('a', CUTS, 14);
    server.switches.cuts = cuts;
    // A retry budget that covers every cut, without backoff: one load.
    const r = await goldenLoad(s, 'a', { retries: CUTS, backoffMs: 0 });
    expectGolden(r);
    expectCutsUsed();
    for (let i = 0; i < manifests.a.shards.length; i++) {
      const gets = shardGets(shardPath('a', i));
      const what = `shard ${i}: ${gets.map((g) => `${g.range ?? 'whole'} → ${g.status}, ${g.sent} bytes${g.cut ? ', cut' : ''}`).join('; ')}`;
      // Each retry continues from the bytes the page received: never from before where the cut
      // answer started, never past what it sent. (Bytes still queued in Chromium when the
      // connection broke never reach the page, so a retry may ask for a few again.)
      for (let k = 1; k < gets.length; k++) {
        expect(rangeFrom(gets[k]), what).toBeGreaterThanOrEqual(rangeFrom(gets[k - 1]));
        expect(rangeFrom(gets[k]), what).toBeLessThanOrEqual(rangeFrom(gets[k - 1]) + gets[k - 1].sent!);
      }
      // One answer completed the shard, the last one: a complete shard is never fetched again.
      expect(gets.slice(0, -1).every((g) => g.cut) && !gets.at(-1)!.cut, what).toBe(true);
      expect(rangeFrom(gets.at(-1)!) + gets.at(-1)!.sent!, what).toBe(manifests.a.shards[i].bytes);
    }
    expect(
      ofType(r.events, 'verify')
        .map((v) => [v.index, v.source, v.ok])
        .sort((p, q) => (p[0] as number) - (q[0] as number)),
    ).toEqual(manifests.a.shards.map((_, i) => [i, 'network', true]));
    expect((await s.call<{ partials: unknown[] }>('stored')).partials).toEqual([]);
    expect(unexpected(s.problems)).toEqual([]);
    await s.context.close();
  }, 240_000);

  it('the same 50 cuts with the default retries: each failed load says to load again and keeps its bytes; the next resumes from them and never fetches a verified shard again', async () => {
    const s = await session();
    server.switches.cuts = cutsAcross('a', CUTS, 14);
    const hashes = manifests.a.shards.map((x) => x.sha256);
    let r: FaultLoadResult;
    let loads = 0;
    let kept = 0;
    const verified: number[] = [];
    for (;;) {
      const before = await s.call<{ shards: string[]; partials: { sha256: string; bytes: number }[] }>('stored');
      const from = server.requests.length;
      r = await goldenLoad(s, 'a', { backoffMs: 1 });
      loads++;
      const gets = server.requests.slice(from).filter((q) => q.method === 'GET' && q.path.endsWith('.bin'));
      // A shard stored before this load is read from the cache, never fetched again.
      for (const h of before.shards) expect(gets.map((g) => g.path)).not.toContain(shardPath('a', hashes.indexOf(h)));
      // A partial download left by the last load continues where it stopped.
      for (const p of before.partials) {
        expect(gets.find((g) => g.path === shardPath('a', hashes.indexOf(p.sha256)))).toMatchObject({ range: `bytes=${p.bytes}-`, status: 206 });
      }
      verified.push(
        ...ofType(r.events, 'verify')
          .filter((v) => v.source === 'network')
          .map((v) => v.index),
      );
      if (!r.error) break;
      expect(r.error.name).toBe('MolmError');
      expect(r.error.message).toMatch(
        /^Downloading shard shard-\d+\.bin failed 5 times \(last: .*the connection broke after \d+ of \d+ bytes.*\)\. Check the network and load the model again: the download resumes where it stopped\.$/,
      );
      const after = await s.call<{ partials: { sha256: string; bytes: number }[] }>('stored');
      const failed = manifests.a.shards.findIndex((x) => r.error!.message.includes(x.file));
      // The bytes the shard that ran out of retries had received (at least those its last
      // attempt started from) are kept.
      const had = Math.max(
        ...ofType(r.events, 'download')
          .filter((d) => d.index === failed)
          .map((d) => d.from),
      );
      if (had > 0) {
        expect(after.partials.find((p) => p.sha256 === hashes[failed])?.bytes).toBeGreaterThanOrEqual(had);
        kept++;
      }
      expect(loads, 'loads needed').toBeLessThanOrEqual(CUTS);
    }
    expect(loads).toBeGreaterThan(1);
    expect(kept, 'failed loads that had received bytes').toBeGreaterThan(0);
    expectGolden(r);
    expectCutsUsed();
    // Every shard was downloaded to the end and verified exactly once, over all the loads.
    expect(verified.sort((p, q) => p - q)).toEqual(manifests.a.shards.map((_, i) => i));
    expect(await s.call('stored')).toEqual({ shards: [...hashes].sort(), partials: [] });
    expect(await s.call<CachedModel[]>('list')).toEqual([expect.objectContaining({ url: modelUrl('a'), complete: true })]);
    expect(unexpected(s.problems)).toEqual([]);
    await s.context.close();
  }, 240_000);

  it('the quota running out mid-download: QuotaError that says what to do; the model cached before stays listed and loadable; with space freed the load completes and fetches only what is missing', async () => {
    // A real quota: Chromium's own for the page's origin (DevTools' "custom storage quota"),
    // set before the page opens IndexedDB (which keeps what it learnt of the free space for a
    // while), so IndexedDB refuses writes beyond it with its own QuotaExceededError.
    const QUOTA = 8e6;
    const context = await env.browser.newContext();
    const blank = await context.newPage();
    const cdp = await context.newCDPSession(blank);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(env.base).origin, quotaSize: QUOTA });
    const s = await openPage(context);
    expectGolden(await goldenLoad(s, 'a'));
    const cached = await s.call<{ shards: string[] }>('stored');

    // b's first shard is stored; then the origin's storage fills up (another database of the
    // page grows to leave 16 KB free), and b's second shard finds no room.
    server.reset();
    const r = await s.load('b', { concurrency: 1, fill: { beforePut: 1, quota: QUOTA, leave: 16_000 } });
    expect(r.error?.name).toBe('QuotaError');
    expect(r.error?.message).toMatch(
      /^The browser's storage is full: shard shard-\d+\.bin \(\d+ bytes\) could not be stored\. Shards already cached are kept\. Free disk space, delete cached models \(deleteCachedModel, clearCache\), or load a smaller model\.$/,
    );
    const afterFailure = await s.call<{ shards: string[] }>('stored');
    for (const h of cached.shards) expect(afterFailure.shards).toContain(h);
    expect(afterFailure.shards.filter((h) => !cached.shards.includes(h))).toEqual([manifests.b.shards[0].sha256]);
    const listed = await s.call<CachedModel[]>('list');
    expect(listed.find((m) => m.url === modelUrl('a'))).toMatchObject({ complete: true, cachedBytes: totalOf('a') });
    expect(listed.find((m) => m.url === modelUrl('b'))).toMatchObject({ complete: false });

    // Still full: a loads from the cache, without the network.
    server.reset();
    expectGolden(await goldenLoad(s, 'a'));
    expect(server.count()).toBe(0);

    // Space freed: b completes, downloading only the shards it does not have yet. (Chromium
    // reclaims a deleted blob's bytes lazily, so the quota grows by what was freed, as it would
    // when the user frees disk space.)
    await s.call('freeSpace');
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(env.base).origin, quotaSize: 2 * QUOTA });
    const have = (await s.call<{ shards: string[] }>('stored')).shards;
    server.reset();
    expectGolden(await goldenLoad(s, 'b'), 'b');
    manifests.b.shards.forEach((x, i) => {
      expect(server.count(shardPath('b', i)), `shard ${i} of b`).toBe(have.includes(x.sha256) ? 0 : 1);
    });
    expect(await s.call('stored')).toEqual({ shards: [...cached.shards, ...manifests.b.shards.map((x) => x.sha256)].sort(), partials: [] });
    expect(unexpected(s.problems)).toEqual([]);
    await s.context.close();
  }, 240_000);

  // In the worker (what createEngine gives a page) the device is lost while decoding; on the
  // page's thread, during the prompt's prefill (its first command encoder).
  it.each([
    ['worker', 'while decoding', 4],
    ['page', 'during the prefill', 1],
  ] as const)(
    'the GPU device lost mid-generation (engine in the %s, %s): DeviceLostError that says to create a new engine; a new engine in the same page matches the golden without downloading anything',
    async (where, _when, encoder) => {
      const s = await session();
      const brown = golden.brown;
      const created = await s.call<{ backend: string; device: string; error?: unknown }>('createEngine', 'first', modelUrl('brown'), where === 'worker');
      expect(created.error).toBeUndefined();
      expect(created).toMatchObject({ backend: 'webgpu', device: expect.stringMatching(/swiftshader/i) });
      const greedy = { maxNewTokens: brown.tokens.length, temperature: 0, repetitionPenalty: 1, stopAtEndOfText: false };
      const want = await s.call<string>('decode', 'first', brown.tokens);

      // The engine's own GPUDevice is destroyed for real during the generation: armed in the
      // realm that holds the device (the engine's worker, or the page), it fires at the chosen
      // command encoder, while the step before is still on the GPU and being read back.
      if (where === 'page') await s.page.evaluate(loseDeviceAfter, encoder);
      else {
        const worker = s.page.workers().find((w) => /worker/.test(w.url()));
        expect(worker, 'the engine worker').toBeDefined();
        await worker!.evaluate(loseDeviceAfter, encoder);
      }
      const lost = await s.call<{ encoded: number[]; tokens: number; text: string; error?: { name: string; message: string } }>(
        'generate',
        'first',
        brown.ids,
        greedy,
      );
      expect(lost.encoded).toEqual(brown.ids);
      expect(lost.error?.name).toBe('DeviceLostError');
      expect(lost.error?.message).toMatch(/^The GPU device was lost \(destroyed: .*\)\. Create a new engine to continue; cached weights are kept\.$/);
      // It ended where the device went, and the text before it was right.
      expect(lost.tokens).toBeLessThan(encoder);
      expect(want.startsWith(lost.text)).toBe(true);
      // The engine stays lost, and says so again; disposing it is fine.
      const again = await s.call<{ error?: { name: string; message: string } }>('generate', 'first', brown.ids, greedy);
      expect(again.error?.name).toBe('DeviceLostError');
      expect(await s.call('dispose', 'first')).toEqual({});

      server.reset();
      expect((await s.call<{ error?: unknown }>('createEngine', 'second', modelUrl('brown'), where === 'worker')).error).toBeUndefined();
      const fresh = await s.call<{ encoded: number[]; text: string; completionTokens: number; error?: unknown }>('generate', 'second', brown.ids, greedy);
      expect(fresh.error).toBeUndefined();
      expect(fresh).toMatchObject({ text: want, completionTokens: brown.tokens.length });
      // The weights and the tokenizer came from the cache.
      expect(server.count()).toBe(0);
      expect(server.count('/brown/tokenizer.json')).toBe(0);
      expect(await s.call('dispose', 'second')).toEqual({});
      expect(unexpected(s.problems)).toEqual([]);
      await s.context.close();
    },
    240_000,
  );

  it("the tab closed mid-download, and while a shard is being written: the next page's load heals, fetching only the missing shards, and matches the golden", async () => {
    const context = await env.browser.newContext();
    const hashes = manifests.a.shards.map((x) => x.sha256);
    const fetchedSince = (from: number) =>
      server.requests
        .slice(from)
        .filter((q) => q.method === 'GET' && q.path.endsWith('.bin'))
        .map((q) => q.path);

    // 1. A slow download; the tab is closed once a downloaded shard is stored (its write into
    //    IndexedDB commits a little after its upload, later still on a busy machine), while the
    //    other download slot is mid-shard.
    let s = await openPage(context);
    let closing: Promise<void> | undefined;
    const closeOnceStored = async (page: Session) => {
      while ((await page.call<{ shards: string[] }>('stored')).shards.length === 0) await new Promise((r) => setTimeout(r, 10));
      await page.page.close();
    };
    await s.page.exposeFunction('reportLoadEvent', (e: LoadProgress) => {
      if (e.type === 'upload') closing ??= closeOnceStored(s);
    });
    server.reset();
    server.switches.throttle = { chunk: 4096, delayMs: 10 };
    await expect(s.load('a')).rejects.toThrow(/closed/);
    await closing;

    // 2. The tab is closed while the next shard's write is in flight (held behind another
    //    transaction on the store): that write must vanish whole.
    s = await openPage(context);
    const first = await s.call<{ shards: string[]; partials: unknown[] }>('stored');
    expect(first.shards.length, 'shards stored before the first tab closed').toBeGreaterThan(0);
    let inFlight = '';
    await s.page.exposeFunction('reportWriteInFlight', (sha256: string) => {
      inFlight = sha256;
      closing = s.page.close();
    });
    const from = server.requests.length;
    await expect(s.load('a', { holdFirstWrite: true })).rejects.toThrow(/closed/);
    await closing;
    expect(hashes).toContain(inFlight);
    for (const h of first.shards) expect(fetchedSince(from)).not.toContain(shardPath('a', hashes.indexOf(h)));

    // 3. A new page: what was stored is used, what was not is fetched.
    s = await openPage(context);
    const before = await s.call<{ shards: string[]; partials: unknown[] }>('stored');
    expect(before.shards).not.toContain(inFlight);
    for (const h of first.shards) expect(before.shards).toContain(h);
    expect(before.shards.length).toBeLessThan(hashes.length);
    expect(await s.call<CachedModel[]>('list')).toEqual([expect.objectContaining({ url: modelUrl('a'), complete: false })]);
    server.reset();
    const r = await goldenLoad(s, 'a');
    expectGolden(r);
    // The shards that were stored are used, each checked and sound (none half written); only the others are fetched, once.
    hashes.forEach((h, i) => {
      expect(server.count(shardPath('a', i)), `shard ${i}`).toBe(before.shards.includes(h) ? 0 : 1);
    });
    const verify = ofType(r.events, 'verify');
    expect(
      verify
        .filter((v) => v.source === 'cache')
        .map((v) => [hashes[v.index], v.ok])
        .sort(),
    ).toEqual(before.shards.map((h) => [h, true]).sort());
    expect(await s.call('stored')).toEqual({ shards: [...hashes].sort(), partials: [] });
    expect(await s.call<CachedModel[]>('list')).toEqual([expect.objectContaining({ url: modelUrl('a'), complete: true })]);
    expect(unexpected(s.problems)).toEqual([]);
    await context.close();
  }, 240_000);
});
