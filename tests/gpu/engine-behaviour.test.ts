import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { ContextLengthError, DeviceLimitError, DeviceLostError, UsageError } from '../../src/errors.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import { nodeGpu } from '../../src/gpu/node-gpu.ts';
import { loadGpuModel } from '../../src/model/load.ts';
import { GREEDY } from '../../src/token-model.ts';

const TINY = join(__dirname, '..', 'fixtures', 'golden', 'tiny-molm');
const PROMPT = [21, 92, 1, 11, 4, 17, 93, 23, 34, 78, 37, 66];
const EXPECTED = [96, 39, 39, 39, 39, 39, 65, 59];

describe('engine behaviour on WebGPU', () => {
  it('reads back nothing but the sampled id (4 bytes) per generated token', async () => {
    const model = await loadGpuModel(nodeFileSource(TINY), { gpu: await nodeGpu(), maxContext: 64 });
    const proto = Object.getPrototypeOf(model.acts.idReadback[0]) as GPUBuffer;
    const original = proto.mapAsync;
    const maps: number[] = [];
    proto.mapAsync = function (this: GPUBuffer, mode: number, offset?: number, size?: number) {
      maps.push(size ?? this.size - (offset ?? 0));
      return original.call(this, mode, offset, size);
    };
    try {
      const tokens: number[] = [];
      for await (const id of model.generate(PROMPT, EXPECTED.length, GREEDY)) tokens.push(id);
      expect(tokens).toEqual(EXPECTED);
      expect(maps).toEqual(EXPECTED.map(() => 4));
    } finally {
      proto.mapAsync = original;
      model.destroy();
    }
  });

  it('refuses a prompt past the context with a ContextLengthError, and keeps working', async () => {
    const model = await loadGpuModel(nodeFileSource(TINY), { gpu: await nodeGpu(), maxContext: 16 });
    try {
      const run = async (n: number) => {
        const out: number[] = [];
        for await (const id of model.generate(PROMPT, n, GREEDY)) out.push(id);
        return out;
      };
      // 12 prompt tokens + 8 new tokens need 19 cache rows (the last token is never fed back).
      await expect(run(8)).rejects.toThrow(ContextLengthError);
      await expect(run(8)).rejects.toThrow(/do not fit the context of 16 tokens/);
      model.reset();
      expect(await run(5)).toEqual(EXPECTED.slice(0, 5));
      model.reset();
      await expect(model.prefillLogits([1, 2, 97])).rejects.toThrow(UsageError);
    } finally {
      model.destroy();
    }
  });

  it('reports a lost device as DeviceLostError; a new model can then be created', async () => {
    const model = await loadGpuModel(nodeFileSource(TINY), { gpu: await nodeGpu(), maxContext: 64 });
    model.ctx.device.destroy();
    await model.ctx.device.lost;
    const run = async () => {
      for await (const _ of model.generate(PROMPT, 2, GREEDY)) void _;
    };
    await expect(run()).rejects.toThrow(DeviceLostError);
    await expect(run()).rejects.toThrow(/Create a new engine/);
    const fresh = await loadGpuModel(nodeFileSource(TINY), { gpu: await nodeGpu(), maxContext: 64 });
    try {
      const tokens: number[] = [];
      for await (const id of fresh.generate(PROMPT, 3, GREEDY)) tokens.push(id);
      expect(tokens).toEqual(EXPECTED.slice(0, 3));
    } finally {
      fresh.destroy();
    }
  });

  it('fails with a DeviceLimitError naming the limit when the adapter cannot hold a tensor', async () => {
    const attempt = GpuContext.create({ maxBindingBytes: 2 ** 40, maxBufferBytes: 2 ** 40 }, { gpu: await nodeGpu() });
    await expect(attempt).rejects.toThrow(DeviceLimitError);
    await expect(GpuContext.create({ maxBindingBytes: 2 ** 40, maxBufferBytes: 2 ** 40 }, { gpu: await nodeGpu() })).rejects.toThrow(
      /maxStorageBufferBindingSize = \d+ bytes, but the model needs 1099511627776/,
    );
  });

  it('says what to do when there is no WebGPU at all', async () => {
    const noGpu = { requestAdapter: async () => null } as unknown as GPU;
    await expect(GpuContext.create({ maxBindingBytes: 1024, maxBufferBytes: 1024 }, { gpu: noGpu })).rejects.toThrow(/No WebGPU adapter was found/);
  });
});
