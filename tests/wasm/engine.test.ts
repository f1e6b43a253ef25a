import { describe, expect, it } from 'vitest';
import type { LocalEngine } from '../../src/engine/engine.ts';
import { ComputeThreadError, DeviceLimitError } from '../../src/errors.ts';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { createEngine } from '../../src/node.ts';
import { memoryShardStore } from '../../src/store/shard-store.ts';
import { convertModel } from '../../src/shards/convert.ts';
import { loadWasmModelFromUrl } from '../../src/wasm/load.ts';
import type { WasmModel } from '../../src/wasm/model.ts';
import { startModelServer } from '../browser/model-server.ts';
import { BUILT_IN_MODEL, builtInReferenceEngine, builtInTokenizer } from '../built-in-model.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The text engine on the wasm backend with the built-in trained model, against the same engine
// over the float64 CPU reference (an independent forward pass and sampler), against the WebGPU
// engine, and under faults: a compute thread that dies, a model too big for wasm32 memory.

const dir = BUILT_IN_MODEL.dir;
const OPTIONS = [
  { maxNewTokens: 20, temperature: 0, repetitionPenalty: 1.3 },
  { maxNewTokens: 20, temperature: 0, repetitionPenalty: 1 },
  { maxNewTokens: 20, temperature: 0.8, topK: 50, topP: 0.9, repetitionPenalty: 1.1, seed: 99 },
  { maxNewTokens: 20, temperature: 1.1, topP: 0.95, seed: 5 },
];

async function sameText(a: LocalEngine | Awaited<ReturnType<typeof createEngine>>, b: typeof a): Promise<void> {
  for (const options of OPTIONS) {
    const prompt = 'In the city of';
    const [x, y] = [await a.complete(prompt, { ...options, stopAtEndOfText: false }), await b.complete(prompt, { ...options, stopAtEndOfText: false })];
    expect(x.text, JSON.stringify(options)).toBe(y.text);
    expect(x.usage.completionTokens).toBe(20);
  }
}

describe('createEngine on the wasm backend (built-in model)', () => {
  it("gives the CPU reference's text: greedy with and without a repetition penalty, and seeded sampling", async () => {
    const wasm = await createEngine({ model: dir, backend: 'wasm', maxContext: 512 });
    const cpu = await builtInReferenceEngine(512);
    try {
      expect(wasm.backend).toBe('wasm');
      expect(wasm.device).toMatch(/WebAssembly SIMD, \d+ threads?/);
      await sameText(wasm, cpu);
    } finally {
      await wasm.dispose();
      await cpu.dispose();
    }
  });

  it('gives the WebGPU engine’s text (their logits agree to 1e-4)', async () => {
    const wasm = await createEngine({ model: dir, backend: 'wasm', maxContext: 256, threads: 2 });
    const gpu = await createEngine({ model: dir, backend: 'webgpu', maxContext: 256 });
    try {
      expect(gpu.backend).toBe('webgpu');
      await sameText(wasm, gpu);
    } finally {
      await wasm.dispose();
      await gpu.dispose();
    }
  });

  it("'auto' takes the wasm engine where the WebGPU adapter is a CPU emulation (SwiftShader here)", async () => {
    const e = await createEngine({ model: dir, maxContext: 64 });
    try {
      expect(e.backend).toBe('wasm');
    } finally {
      await e.dispose();
    }
  });

  it('traces routing like the reference: the same experts, gates within 1e-4', async () => {
    const wasm = await createEngine({ model: dir, backend: 'wasm', maxContext: 256, prefillChunk: 4 });
    const cpu = await builtInReferenceEngine(256);
    try {
      const prompt = 'The jury said that the city';
      const options = { maxNewTokens: 6, temperature: 0, routingTrace: true, stopAtEndOfText: false };
      const [a, b] = [await wasm.complete(prompt, options), await cpu.complete(prompt, options)];
      expect(a.text).toBe(b.text);
      const ra = a.routing!,
        rb = b.routing!;
      expect(ra.promptTokens).toBe(builtInTokenizer().encode(prompt).length);
      expect(Array.from(ra.attExperts)).toEqual(Array.from(rb.attExperts));
      expect(Array.from(ra.mlpExperts)).toEqual(Array.from(rb.mlpExperts));
      for (const [x, y] of [
        [ra.attGates, rb.attGates],
        [ra.mlpGates, rb.mlpGates],
      ] as const) {
        for (let i = 0; i < x.length; i++) expect(Math.abs(x[i] - y[i])).toBeLessThan(1e-4);
      }
    } finally {
      await wasm.dispose();
      await cpu.dispose();
    }
  });
});

describe('wasm engine faults', () => {
  it('a compute thread that dies gives ComputeThreadError at the next step; a new engine works', async () => {
    const a = await createEngine({ model: dir, backend: 'wasm', maxContext: 128, threads: 2 });
    const model = (a as LocalEngine).model as WasmModel;
    expect(model.threads).toBe(2);
    const first = await a.complete('The house', { maxNewTokens: 4, temperature: 0 });
    await model.runtime.killThread(0);
    await expect(a.complete('The house was', { maxNewTokens: 4, temperature: 0 })).rejects.toThrow(ComputeThreadError);
    await expect(a.complete('The house was', { maxNewTokens: 4, temperature: 0 })).rejects.toThrow(/Create a new engine/);
    await a.dispose();
    const b = await createEngine({ model: dir, backend: 'wasm', maxContext: 128, threads: 2 });
    try {
      expect((await b.complete('The house', { maxNewTokens: 4, temperature: 0 })).text).toBe(first.text);
    } finally {
      await b.dispose();
    }
  });

  it('a model past the 4 GiB of wasm32 memory gets DeviceLimitError naming its size; the cached shards stay', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'molm-wasm-big-'));
    const server = await startModelServer(tmp);
    try {
      await convertModel({
        source: nodeFileSource(join(__dirname, '..', 'fixtures', 'golden', 'tiny-molm')),
        outDir: join(tmp, 'm'),
        dtype: 'f32',
        shardBytes: 16 << 10,
      });
      const store = memoryShardStore();
      const url = `${server.url}/m/manifest.json`;
      (await loadWasmModelFromUrl(url, { store, maxContext: 64 })).destroy();
      // 2^25 tokens of context: the KV cache alone (2 layers × 32 floats a row) is 8 GiB.
      server.reset();
      const err = await loadWasmModelFromUrl(url, { store, maxContext: 2 ** 25 }).catch((e) => e);
      expect(err).toBeInstanceOf(DeviceLimitError);
      expect(err.message).toMatch(/needs \d+ MiB of WebAssembly memory.* past the 4096 MiB limit/);
      expect(server.count(), 'no shard was fetched for a model that cannot be held').toBe(0);
      server.reset();
      const again = await loadWasmModelFromUrl(url, { store, maxContext: 64 });
      again.destroy();
      expect(server.count(), 'the cache still holds every shard').toBe(0);
    } finally {
      await server.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
