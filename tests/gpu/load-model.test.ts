import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { nodeGpu } from '../../src/gpu/node-gpu.ts';
import { GREEDY } from '../../src/token-model.ts';
import { convertModel } from '../../src/shards/convert.ts';
import { loadModel } from '../../src/model/load.ts';
import type { LoadProgress } from '../../src/shards/load-model.ts';
import { memoryShardStore } from '../../src/store/shard-store.ts';
import { startModelServer } from '../browser/model-server.ts';
import { createEngine } from '../../src/node.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { expectClose } from './harness.ts';

const GOLDEN = join(__dirname, '..', 'fixtures', 'golden', 'tiny-molm');
const dir = mkdtempSync(join(tmpdir(), 'molm-load-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The browser loader on Dawn in Node: same fetcher, store interface and shard-by-shard upload.
describe('loadModel in Node (Dawn), memory store, shards over HTTP', () => {
  it('loads a converted model over HTTP, then again from the store with no shard request', async () => {
    await convertModel({ source: nodeFileSource(GOLDEN), outDir: join(dir, 'm'), dtype: 'f32', shardBytes: 64 << 10 });
    const server = await startModelServer(dir);
    const expected = JSON.parse(readFileSync(join(GOLDEN, 'expected.json'), 'utf8'));
    const raw = readFileSync(join(GOLDEN, 'expected_logits.f32'));
    const logits = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    const store = memoryShardStore();
    try {
      for (const round of ['network', 'cache'] as const) {
        server.reset();
        const events: LoadProgress[] = [];
        const model = await loadModel(`${server.url}/m/manifest.json`, {
          gpu: await nodeGpu(),
          store,
          maxContext: 64,
          onProgress: (e) => events.push(e),
        });
        try {
          expect(events.at(-1)?.type).toBe('ready');
          if (round === 'network') expect(server.count()).toBeGreaterThan(1);
          else expect(server.count()).toBe(0);
          expectClose(await model.prefillLogits(expected.input_ids), logits, 1e-4, `${round} logits`);
          model.reset();
          const tokens: number[] = [];
          for await (const id of model.generate(expected.input_ids, expected.greedy_new_tokens.length, GREEDY)) tokens.push(id);
          expect(tokens).toEqual(expected.greedy_new_tokens);
        } finally {
          model.destroy();
        }
      }
    } finally {
      await server.close();
    }
  });

  it('a cached model loads and tokenizes with its server gone, after loading twice online', async () => {
    const server = await startModelServer(join(BUILT_IN_MODEL.dir, '..'));
    const url = `${server.url}/molm-brown/`;
    const store = memoryShardStore();
    const options = { maxNewTokens: 6, temperature: 0 };
    let want = '';
    try {
      // Twice online: the second load rewrites the model record, which must keep the tokenizer.
      for (let i = 0; i < 2; i++) {
        const engine = await createEngine({ model: url, backend: 'webgpu', store, maxContext: 64 });
        want = (await engine.complete('The jury', options)).text;
        await engine.dispose();
      }
    } finally {
      await server.close();
    }
    const offline = await createEngine({ model: url, backend: 'webgpu', store, maxContext: 64 });
    try {
      expect((await offline.complete('The jury', options)).text).toBe(want);
    } finally {
      await offline.dispose();
    }
  });
});
