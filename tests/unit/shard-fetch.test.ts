import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AbortError, ModelFormatError, MolmError, QuotaError } from '../../src/errors.ts';
import { fetchShard, fetchShards, type ShardRequest } from '../../src/shards/fetcher.ts';
import type { Manifest } from '../../src/manifest.ts';
import { deleteCachedModel, listCachedModels, manifestUrlOf } from '../../src/store/model-cache.ts';
import { blobWriter, memoryShardStore, type ModelRecord, type ShardStore } from '../../src/store/shard-store.ts';
import { startModelServer, type ModelServer } from '../browser/model-server.ts';

// The downloader and the cache bookkeeping in Node (undici's fetch, the memory store), against
// the same misbehaving server as the browser tests. No GPU needed.

let dir: string;
let server: ModelServer;
const files: Record<string, Buffer> = {};
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'molm-fetch-test-'));
  for (const [name, size] of [
    ['s0.bin', 300_000],
    ['s1.bin', 200_004],
    ['s2.bin', 123_456],
    ['s3.bin', 65_536],
  ] as const) {
    files[name] = randomBytes(size);
    await writeFile(join(dir, name), files[name]);
  }
  server = await startModelServer(dir);
});
afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => server.reset());

const req = (name: string, over: Partial<ShardRequest> = {}): ShardRequest => ({
  url: `${server.url}/${name}`,
  file: name,
  bytes: files[name].length,
  sha256: sha(files[name]),
  ...over,
});

describe('fetchShard', () => {
  it('downloads, verifies and stores a shard under its sha256, reporting progress', async () => {
    const store = memoryShardStore();
    const seen: number[] = [];
    let verified = false;
    await fetchShard(req('s0.bin'), {
      store,
      onProgress: (r) => seen.push(r),
      onVerified: () => {
        verified = true;
      },
    });
    expect(Buffer.from((await store.get(sha(files['s0.bin'])))!).equals(files['s0.bin'])).toBe(true);
    expect(seen.at(-1)).toBe(files['s0.bin'].length);
    expect(seen.every((x, i) => i === 0 || x > seen[i - 1])).toBe(true);
    expect(verified).toBe(true);
    // Read back into a reusable buffer: a view of that buffer.
    const into = new Uint8Array(400_000);
    const view = await store.get(sha(files['s0.bin']), into);
    expect(view!.buffer).toBe(into.buffer);
    expect(view!.byteLength).toBe(files['s0.bin'].length);
  });

  it('retries 5xx answers with backoff, and resumes a dropped connection with a Range request', async () => {
    const store = memoryShardStore();
    server.switches.failures.set('/s1.bin', 2);
    server.switches.dropAfter = { path: '/s1.bin', bytes: 50_000 };
    const starts: number[] = [];
    await fetchShard(req('s1.bin'), { store, backoffMs: 1, onStart: (from) => starts.push(from) });
    expect(await store.has(sha(files['s1.bin']))).toBe(true);
    expect(server.requests.filter((r) => r.path === '/s1.bin').map((r) => [r.status, r.range])).toEqual([
      [503, null],
      [503, null],
      [200, null],
      [206, `bytes=${starts[1]}-`],
    ]);
    expect(starts[0]).toBe(0);
    expect(starts[1]).toBeGreaterThan(0);
    expect(await store.listPartials()).toEqual([]);
  });

  it('restarts from byte 0 when the server ignores Range (200)', async () => {
    const store = memoryShardStore();
    server.switches.ranges = false;
    server.switches.dropAfter = { path: '/s2.bin', bytes: 70_000 };
    const starts: number[] = [];
    await fetchShard(req('s2.bin'), { store, backoffMs: 1, onStart: (from) => starts.push(from) });
    expect(starts).toEqual([0, 0]);
    expect(Buffer.from((await store.get(sha(files['s2.bin'])))!).equals(files['s2.bin'])).toBe(true);
  });

  it('keeps an interrupted download as a partial shard, and a later call resumes from it', async () => {
    const store = memoryShardStore();
    server.switches.dropAfter = { path: '/s0.bin', bytes: 100_000 };
    const err = await fetchShard(req('s0.bin'), { store, retries: 0 }).catch((e) => e);
    expect(err).toBeInstanceOf(MolmError);
    expect(err.message).toMatch(/failed 1 times.*resumes where it stopped/);
    const partial = await store.getPartial(sha(files['s0.bin']));
    expect(partial!.total).toBe(files['s0.bin'].length);
    expect(partial!.bytes.byteLength).toBeGreaterThan(0);
    expect(Buffer.from(partial!.bytes).equals(files['s0.bin'].subarray(0, partial!.bytes.byteLength))).toBe(true);

    server.reset();
    await fetchShard(req('s0.bin'), { store });
    expect(server.requests.map((r) => [r.status, r.range])).toEqual([[206, `bytes=${partial!.bytes.byteLength}-`]]);
    expect(await store.has(sha(files['s0.bin']))).toBe(true);
    expect(await store.listPartials()).toEqual([]);
  });

  it('a partial shard with wrong bytes: the spliced download fails its hash, is fetched whole once more, and passes', async () => {
    const store = memoryShardStore();
    const good = files['s3.bin'];
    await store.putPartial({ sha256: sha(good), total: good.length, bytes: randomBytes(1000) });
    await fetchShard(req('s3.bin'), { store });
    expect(server.requests.map((r) => [r.status, r.range])).toEqual([
      [206, 'bytes=1000-'],
      [200, null],
    ]);
    expect(Buffer.from((await store.get(sha(good)))!).equals(good)).toBe(true);
  });

  it('a shard corrupt on the server: ModelFormatError, nothing stored', async () => {
    const store = memoryShardStore();
    server.switches.corrupt.add('/s2.bin');
    const err = await fetchShard(req('s2.bin'), { store }).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFormatError);
    expect(err.message).toMatch(
      /^Shard s2\.bin is corrupt on the server \(sha256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}\); the model host must re-upload it/,
    );
    expect(await store.list()).toEqual([]);
    expect(await store.listPartials()).toEqual([]);
    expect(server.count('/s2.bin')).toBe(1);
  });

  it('a missing shard (404) and a shard larger than the manifest says: ModelFormatError', async () => {
    const store = memoryShardStore();
    const missing = await fetchShard(req('s0.bin', { url: `${server.url}/nope.bin` }), { store }).catch((e) => e);
    expect(missing).toBeInstanceOf(ModelFormatError);
    expect(missing.message).toMatch(/missing on the server.*HTTP 404/);
    const larger = await fetchShard(req('s0.bin', { bytes: 1000 }), { store }).catch((e) => e);
    expect(larger).toBeInstanceOf(ModelFormatError);
    expect(larger.message).toMatch(/larger than the 1000 bytes the manifest says/);
    expect(await store.list()).toEqual([]);
    expect(await store.listPartials()).toEqual([]);
  });

  it('a full store: QuotaError, and the store keeps what it had', async () => {
    const base = memoryShardStore();
    await base.put('aa', new Uint8Array([1, 2, 3, 4]));
    const full: ShardStore = {
      ...base,
      put: async () => {
        throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      },
    };
    const err = await fetchShard(req('s3.bin'), { store: full }).catch((e) => e);
    expect(err).toBeInstanceOf(QuotaError);
    expect(err.message).toMatch(/storage is full.*shard s3\.bin/);
    expect(await base.list()).toEqual(['aa']);
  });

  it('abort: AbortError, the bytes so far kept as a partial shard', async () => {
    const store = memoryShardStore();
    const controller = new AbortController();
    const err = await fetchShard(req('s0.bin'), {
      store,
      signal: controller.signal,
      onProgress: (r) => r > 0 && controller.abort(),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect(await store.has(sha(files['s0.bin']))).toBe(false);
    const partial = await store.getPartial(sha(files['s0.bin']));
    expect(partial!.bytes.byteLength).toBeGreaterThan(0);
    expect(partial!.bytes.byteLength).toBeLessThan(files['s0.bin'].length);
  });
});

describe('fetchShards', () => {
  it('keeps at most `concurrency` downloads in flight', async () => {
    const store = memoryShardStore();
    let inFlight = 0;
    let most = 0;
    const names = ['s0.bin', 's1.bin', 's2.bin', 's3.bin'];
    server.switches.throttle = { chunk: 16_384, delayMs: 2 }; // downloads that take a while
    await fetchShards(
      names.map((n) => req(n)),
      {
        store,
        concurrency: 2,
        onStart: () => (most = Math.max(most, ++inFlight)),
        onVerified: () => {
          inFlight--;
        },
      },
    );
    expect(most).toBe(2);
    expect((await store.list()).sort()).toEqual(names.map((n) => sha(files[n])).sort());
  });

  it('the first failure stops the others and is the error thrown', async () => {
    const store = memoryShardStore();
    server.switches.corrupt.add('/s3.bin');
    const err = await fetchShards(
      ['s3.bin', 's0.bin', 's1.bin', 's2.bin'].map((n) => req(n)),
      { store, concurrency: 1 },
    ).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFormatError);
    expect(server.count()).toBe(1);
  });
});

describe('the IndexedDB store writes', () => {
  it('a Blob first; a refused Blob write is done again as a Uint8Array that owns its bytes; a full store is an error', async () => {
    const write = blobWriter();
    const stored: unknown[] = [];
    let refuse = true;
    const target = async (value: Blob | Uint8Array) => {
      if (value instanceof Blob && refuse) throw new DOMException('Failed to write blobs (InvalidBlob)', 'DataError');
      stored.push(value);
    };
    const big = new Uint8Array(16).map((_, i) => i);
    await write(big.subarray(4, 12), target);
    expect(stored[0]).toBeInstanceOf(Uint8Array);
    expect((stored[0] as Uint8Array).buffer.byteLength).toBe(8);
    expect([...(stored[0] as Uint8Array)]).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
    refuse = false;
    await write(big, target); // Blobs are not tried again right away
    expect(stored[1]).toBeInstanceOf(Uint8Array);

    const fresh = blobWriter();
    await fresh(big, target);
    expect(stored[2]).toBeInstanceOf(Blob);
    const full = async () => {
      throw new DOMException('full', 'QuotaExceededError');
    };
    await expect(fresh(big, full)).rejects.toMatchObject({ name: 'QuotaExceededError' });
  });
});

describe('the cache bookkeeping', () => {
  const record = (url: string, shards: string[]): ModelRecord => ({
    url,
    manifest: { shards: shards.map((h, i) => ({ file: `shard-${i}.bin`, bytes: 4, sha256: h })) } as unknown as Manifest,
    shards,
    totalBytes: shards.length * 4,
    complete: true,
    lastUsed: Date.now(),
  });

  it('manifestUrlOf: a folder URL names the manifest inside it', () => {
    expect(manifestUrlOf('http://h/m/')).toBe('http://h/m/manifest.json');
    expect(manifestUrlOf('http://h/m')).toBe('http://h/m/manifest.json');
    expect(manifestUrlOf('http://h/m/other.json')).toBe('http://h/m/other.json');
  });

  it('deleteCachedModel keeps shards that another model lists; listCachedModels reports what is there', async () => {
    const store = memoryShardStore();
    for (const h of ['a', 'b', 'c']) await store.put(h, new Uint8Array(4));
    await store.putPartial({ sha256: 'd', total: 4, bytes: new Uint8Array(2) });
    await store.putModel(record('http://h/one/manifest.json', ['a', 'b']));
    await store.putModel(record('http://h/two/manifest.json', ['b', 'c', 'd']));
    const listed = await listCachedModels({ store });
    expect(listed.find((m) => m.url.includes('one'))).toMatchObject({ bytes: 8, cachedBytes: 8, complete: true });
    expect(listed.find((m) => m.url.includes('two'))).toMatchObject({ bytes: 12, cachedBytes: 8, complete: false });

    expect(await deleteCachedModel('http://h/two/', { store })).toBe(true);
    expect((await store.list()).sort()).toEqual(['a', 'b']);
    expect(await store.listPartials()).toEqual([]);
    expect((await listCachedModels({ store })).map((m) => m.url)).toEqual(['http://h/one/manifest.json']);
    expect(await deleteCachedModel('http://h/two/manifest.json', { store })).toBe(false);
  });
});
