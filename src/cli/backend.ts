import { nodeFileSource } from '../checkpoint/node-files.ts';
import type { ModelConfig } from '../config.ts';
import { nodeGpu } from '../gpu/node-gpu.ts';
import { loadGpuModel } from '../model/load.ts';
import type { GpuModel, SamplingOptions } from '../model/model.ts';
import { ReferenceModel, loadReferenceWeights } from '../reference/model.ts';
import { sample, uniformFromSeed } from '../reference/sampler.ts';
import { openModelFolder } from '../shards/model-folder.ts';

/** What the CLI commands need of a model, on WebGPU or on the CPU reference. */
export interface CliModel {
  readonly config: ModelConfig;
  readonly description: string;
  prefillLogits(ids: readonly number[]): Promise<Float32Array>;
  generate(prompt: readonly number[], maxNewTokens: number, sampling: SamplingOptions): AsyncGenerator<number>;
  reset(): void;
  close(): void;
  /** The GPU model, for benchmarks. */
  readonly gpu?: GpuModel;
}

export interface OpenOptions {
  device: 'gpu' | 'cpu';
  maxContext?: number;
  prefillChunk?: number;
}

export async function openModel(dir: string, o: OpenOptions): Promise<CliModel> {
  return o.device === 'cpu' ? openCpu(dir) : openGpu(dir, o);
}

async function openGpu(dir: string, o: OpenOptions): Promise<CliModel> {
  const model = await loadGpuModel(nodeFileSource(dir), { gpu: await nodeGpu(), maxContext: o.maxContext, prefillChunk: o.prefillChunk });
  return {
    config: model.config,
    description: model.ctx.description,
    gpu: model,
    prefillLogits: (ids) => model.prefillLogits(ids),
    generate: (p, n, s) => model.generate(p, n, s),
    reset: () => model.reset(),
    close: () => model.destroy(),
  };
}

/** The float64 TypeScript reference behind the same interface (`--device cpu`). */
async function openCpu(dir: string): Promise<CliModel> {
  const { config, tensors } = await openModelFolder(nodeFileSource(dir));
  const weights = await loadReferenceWeights(tensors);
  await tensors.close();
  const ref = new ReferenceModel(config, weights);
  return {
    config,
    description: 'CPU reference (float64, TypeScript)',
    prefillLogits: async (ids) => Float32Array.from(ref.prefill([...ids])),
    async *generate(prompt, n, s) {
      if (n <= 0) return;
      let logits = ref.prefill([...prompt]);
      for (let i = 0; i < n; i++) {
        const last = logits.subarray(logits.length - config.vocabSize);
        const id = sample(last, s, uniformFromSeed(s.seed, ref.length));
        yield id;
        if (i + 1 < n) logits = ref.decode(id);
      }
    },
    reset: () => ref.reset(),
    close: () => {},
  };
}
