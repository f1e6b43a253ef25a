import { nodeFileSource } from '../checkpoint/node-files.ts';
import type { ModelConfig } from '../config.ts';
import { LocalEngine } from '../engine/engine.ts';
import { referenceTokenModel } from '../reference/token-model.ts';
import type { TokenModel } from '../token-model.ts';
import { MolmTokenizer } from '../engine/tokenizer.ts';
import { readFolderTokenizer } from '../shards/load-tokenizer.ts';
import { ModelFormatError, UsageError } from '../errors.ts';
import { nodeGpu } from '../gpu/node-gpu.ts';
import { loadGpuModel } from '../model/load.ts';
import { defaultMaxContext, type GpuModel } from '../model/model.ts';
import { ReferenceModel, loadReferenceWeights } from '../reference/model.ts';
import { openModelFolder } from '../shards/model-folder.ts';
import type { ExpertBudget } from '../model/expert-streamer.ts';
import { loadWasmModel } from '../wasm/load.ts';
import { openPackFolder } from '../packs/load-pack.ts';
import type { LoadedPack } from '../packs/pack-shapes.ts';
import type { WasmModel } from '../wasm/model.ts';

/** A model the CLI commands drive: on WebGPU (Dawn) or on the float64 CPU reference. */
export interface CliModel extends TokenModel {
  readonly config: ModelConfig;
  readonly description: string;
  /** The GPU model, for benchmarks. */
  readonly gpu?: GpuModel;
  /** The wasm model, for benchmarks. */
  readonly wasm?: WasmModel;
  close(): void;
}

export interface OpenOptions {
  device: 'gpu' | 'wasm' | 'cpu';
  /** --device wasm: compute threads (default: the machine's cores). */
  threads?: number;
  maxContext?: number;
  prefillChunk?: number;
  expertBudget?: ExpertBudget;
  /** --pack: converted expert packs merged into the model. */
  packs?: string[];
}

/** The --pack folders, read and verified (checked against the model when it opens). */
export async function openPacks(dirs: readonly string[] = []): Promise<LoadedPack[]> {
  const packs: LoadedPack[] = [];
  for (const dir of dirs) packs.push(await openPackFolder(nodeFileSource(dir)));
  return packs;
}

export async function openModel(dir: string, o: OpenOptions): Promise<CliModel> {
  if (o.device === 'wasm') return openWasm(dir, o);
  return o.device === 'cpu' ? openCpu(dir, o) : openGpu(dir, o);
}

async function openWasm(dir: string, o: OpenOptions): Promise<CliModel> {
  if (o.expertBudget) throw new UsageError('--gpu-memory-budget applies to --device gpu only.');
  const model = await loadWasmModel(nodeFileSource(dir), {
    maxContext: o.maxContext,
    prefillChunk: o.prefillChunk,
    threads: o.threads,
    packs: await openPacks(o.packs),
  });
  return Object.assign(model, { wasm: model, close: () => model.destroy() });
}

async function openGpu(dir: string, o: OpenOptions): Promise<CliModel> {
  const model = await loadGpuModel(nodeFileSource(dir), {
    gpu: await nodeGpu(),
    maxContext: o.maxContext,
    prefillChunk: o.prefillChunk,
    expertBudget: o.expertBudget,
    packs: await openPacks(o.packs),
  });
  return Object.assign(model, { description: model.ctx.description, gpu: model, close: () => model.destroy() });
}

/** The float64 TypeScript reference behind the same interface (`--device cpu`). */
async function openCpu(dir: string, o: OpenOptions): Promise<CliModel> {
  if (o.expertBudget) throw new UsageError('--gpu-memory-budget applies to --device gpu only.');
  const { config, tensors } = await openModelFolder(nodeFileSource(dir), { packs: await openPacks(o.packs) });
  const weights = await loadReferenceWeights(tensors);
  await tensors.close();
  const model = referenceTokenModel(new ReferenceModel(config, weights), o.maxContext ?? defaultMaxContext(config));
  return Object.assign(model, { description: 'CPU reference (float64, TypeScript)', close: () => {} });
}

/** The folder's tokenizer.json (a converted folder's checked against its manifest). */
export async function openTokenizer(dir: string): Promise<MolmTokenizer> {
  const text = await readFolderTokenizer(nodeFileSource(dir));
  if (text === null) throw new ModelFormatError(`${dir} has no tokenizer.json: copy the model's tokenizer.json into the folder.`);
  return MolmTokenizer.fromJson(text);
}

/** The text engine over a CLI model (the same engine createEngine returns). */
export async function openEngine(dir: string, o: OpenOptions): Promise<{ engine: LocalEngine; model: CliModel }> {
  const tokenizer = await openTokenizer(dir);
  const model = await openModel(dir, o);
  return { engine: new LocalEngine(model, tokenizer, { device: model.description, backend: o.device === 'gpu' ? 'webgpu' : o.device }), model };
}
