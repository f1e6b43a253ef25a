import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/node.ts';
import { type ImportProgress, importHubModelToStore, importKey } from '../../src/shards/hub-store-import.ts';
import { parseHubRepo } from '../../src/checkpoint/hub.ts';
import { memoryShardStore } from '../../src/store/shard-store.ts';
import { loadWasmModelFromUrl } from '../../src/wasm/load.ts';
import { type HubStandIn, startHubStandIn } from '../hub-server.ts';
import { expectClose } from '../shared/numeric.ts';

// A hub model imported into the shard cache (what the browser does, into IndexedDB; here into a
// memory store): from the hub stand-in (302 to a CDN with Range, ETag, CORS), converted tensor by
// tensor, stored shard by shard, then loaded from the cache alone, against the golden logits.

const FIXTURES = join(__dirname, '..', 'fixtures');
const TOKENIZER = join(FIXTURES, 'tokenizer', 'tokenizer.json');
const golden = JSON.parse(readFileSync(join(FIXTURES, 'golden/tiny-molm/expected.json'), 'utf8')) as { input_ids: number[]; greedy_new_tokens: number[] };
const goldenLogits = (() => {
  const raw = readFileSync(join(FIXTURES, 'golden/tiny-molm/expected_logits.f32'));
  return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
})();
const files = (folder: string) => ({
  ...Object.fromEntries(readdirSync(join(FIXTURES, folder)).map((f) => [f, join(FIXTURES, folder, f)])),
  'tokenizer.json': TOKENIZER,
});

let hub: HubStandIn;
beforeAll(async () => {
  hub = await startHubStandIn();
  hub.addRepo('test-org/tiny-molm', files('golden/tiny-molm'));
  hub.addRepo('test-org/tiny-molm-bin-sharded', files('checkpoints/tiny-molm-bin-sharded'));
});
afterAll(() => hub?.close());

/** Small shards: the tiny model spans many, so an import can stop between them. */
const SHARD_BYTES = 16 << 10;

async function logitsFromCache(key: string, store: ReturnType<typeof memoryShardStore>): Promise<Float32Array> {
  const model = await loadWasmModelFromUrl(key, { store, threads: 1 });
  try {
    return await model.prefillLogits(golden.input_ids);
  } finally {
    model.destroy();
  }
}

describe('a hub model imported into the shard cache', () => {
  it.each(['tiny-molm', 'tiny-molm-bin-sharded'])('%s: golden logits from the cache, and offline afterwards', async (name) => {
    const store = memoryShardStore();
    const events: ImportProgress[] = [];
    const key = await importHubModelToStore({
      repo: `test-org/${name}`,
      hubUrl: hub.hubUrl,
      dtype: 'f32',
      store,
      shardBytes: SHARD_BYTES,
      onProgress: (p) => events.push(p),
    });
    expect(key).toBe(importKey(parseHubRepo(`test-org/${name}`), hub.hubUrl, 'f32'));
    expectClose(await logitsFromCache(key, store), goldenLogits, 1e-4, `${name} imported`);
    const last = events.at(-1)!;
    expect(last.writtenBytes).toBe(last.totalBytes);
    expect(last.resumedBytes).toBe(0);
    expect(last.secondsLeft).toBe(0);
    expect(events.every((e) => e.secondsLeft === null || e.secondsLeft >= 0)).toBe(true);

    // Imported once: the same call reads nothing from the hub.
    const before = hub.requests.length;
    expect(await importHubModelToStore({ repo: `test-org/${name}`, hubUrl: hub.hubUrl, dtype: 'f32', store, shardBytes: SHARD_BYTES })).toBe(key);
    expect(hub.requests.length).toBe(before);
  });

  it('an import stopped after some shards resumes with them, without reading their tensors again', async () => {
    const store = memoryShardStore();
    const stop = new AbortController();
    const first: ImportProgress[] = [];
    const o = { repo: 'test-org/tiny-molm', hubUrl: hub.hubUrl, dtype: 'f32' as const, store, shardBytes: SHARD_BYTES };
    await expect(
      importHubModelToStore({
        ...o,
        signal: stop.signal,
        onProgress: (p) => {
          first.push(p);
          if (p.writtenBytes > p.totalBytes / 2) stop.abort();
        },
      }),
    ).rejects.toThrow(/abort/i);
    const key = importKey(parseHubRepo(o.repo), hub.hubUrl, 'f32');
    const partial = await store.getModel(key);
    expect(partial?.complete).toBe(false);
    expect(partial!.shards.length).toBeGreaterThan(0);
    // Not loadable as a model while incomplete.
    await expect(loadWasmModelFromUrl(key, { store, threads: 1 })).rejects.toThrow(/did not finish/);

    const second: ImportProgress[] = [];
    await importHubModelToStore({ ...o, onProgress: (p) => second.push(p) });
    const storedBefore = partial!.manifest.shards.reduce((a, s) => a + s.bytes, 0);
    expect(second[0].resumedBytes).toBe(storedBefore);
    expect(second.at(-1)!.readBytes).toBeLessThan(first.at(-1)!.totalBytes);
    expectClose(await logitsFromCache(key, store), goldenLogits, 1e-4, 'resumed import');
  });

  it('createEngine({ model: "ORG/NAME", hubUrl }) imports, then runs from the cache', async () => {
    const store = memoryShardStore();
    const engine = await createEngine({ model: 'test-org/tiny-molm', hubUrl: hub.hubUrl, dtype: 'q8', backend: 'wasm', store, threads: 1 });
    try {
      expect(engine.config.nLayer).toBe(2);
      const ids = await engine.encode('a');
      expect(ids.length).toBeGreaterThan(0);
    } finally {
      await engine.dispose();
    }
    // q8 of tiny-molm: its router matrices (IN 16) stay f16, the rest is quantised.
    const record = await store.getModel(importKey(parseHubRepo('test-org/tiny-molm'), hub.hubUrl, 'q8'));
    expect(record?.complete).toBe(true);
    expect(record?.manifest.tensors.some((t) => t.storage === 'q8')).toBe(true);
  });
});
