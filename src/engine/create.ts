import type { FileSource } from '../checkpoint/types.ts';
import type { EvictionPolicy } from '../experts/residency.ts';
import { ModelFormatError, UsageError } from '../errors.ts';
import { loadGpuModel, loadModel } from '../model/load.ts';
import type { LoadProgress } from '../shards/load-model.ts';
import { loadWasmModel, loadWasmModelFromUrl } from '../wasm/load.ts';
import { chooseBackend, type BackendChoice } from './backend.ts';
import type { TokenModel } from '../token-model.ts';
import { loadTokenizerJson, readFolderTokenizer } from '../shards/load-tokenizer.ts';
import type { ShardStore } from '../store/shard-store.ts';
import { LocalEngine } from './engine.ts';
import type { EngineOptions } from './api.ts';
import { isUrl } from './model-url.ts';
import { MolmTokenizer } from './tokenizer.ts';

/** Loading progress: a converted model from a URL (LoadProgress), or a local folder's tensors. */
export type EngineProgress = LoadProgress | { type: 'read'; tensor: string; loaded: number; total: number };

export interface CreateEngineOptions extends EngineOptions {
  /**
   * The model: the URL of a converted model (its manifest.json or its folder), or in Node also
   * a local folder (a converted model or a Hugging Face checkpoint).
   */
  model: string;
  onProgress?: (event: EngineProgress) => void;
  /** Aborts the loading (AbortError). */
  signal?: AbortSignal;
  /** Tokens the context holds (default: the config's n_ctx, at most 2048). */
  maxContext?: number;
  /** Prompt tokens per prefill step (default 128). */
  prefillChunk?: number;
  /**
   * Which engine runs the model (default 'auto': WebGPU on a real GPU, the WebAssembly CPU
   * engine without WebGPU or on a CPU-emulated adapter; src/engine/backend.ts).
   */
  backend?: BackendChoice;
  /** The wasm engine's compute threads (default: the machine's cores; one where the page is not cross-origin isolated). */
  threads?: number;
  /** `navigator.gpu` by default (Dawn in Node). */
  gpu?: GPU;
  /** Where shards are cached: IndexedDB in a browser, memory elsewhere. */
  store?: ShardStore;
  /** tokenizer.json (text or parsed) to use instead of the model's own. */
  tokenizer?: string | Record<string, unknown>;
  /**
   * Bytes of expert weights the GPU may hold (or a share of them, '25%'): the other experts stay
   * in host memory and are copied in when a router picks them (docs/experts.md). Default: all.
   */
  gpuMemoryBudget?: number | string;
  /** Which resident expert makes room under a budget: 'lfu' (default) or 'lru'. */
  expertEviction?: EvictionPolicy;
  /** Browser only: run the engine in a Web Worker (default true where workers exist). */
  worker?: boolean;
}

/** What differs between the browser and Node: where the GPU comes from, and local folders. */
export interface Platform {
  gpu(): Promise<GPU>;
  /** A local folder's files; undefined where there are none (the browser). */
  folder?(path: string): FileSource;
}

/** Loads the model and its tokenizer and returns an engine on this thread. */
export async function createLocalEngine(options: CreateEngineOptions, platform: Platform): Promise<LocalEngine> {
  if (!options || typeof options.model !== 'string' || options.model === '') {
    throw new UsageError('createEngine needs { model }: the URL of a converted model (or, in Node, a model folder).');
  }
  const choice = options.backend ?? 'auto';
  if (!['auto', 'webgpu', 'wasm'].includes(choice)) throw new UsageError(`backend must be 'auto', 'webgpu' or 'wasm', got ${JSON.stringify(choice)}.`);
  const backend = await chooseBackend(choice, options.gpu ? async () => options.gpu! : platform.gpu);
  if (backend.kind === 'wasm' && options.gpuMemoryBudget !== undefined) {
    throw new UsageError('gpuMemoryBudget applies to the WebGPU backend; the wasm engine keeps its weights in its own memory.');
  }
  const expertBudget = options.gpuMemoryBudget === undefined ? undefined : { bytes: options.gpuMemoryBudget, policy: options.expertEviction };
  const sizes = { maxContext: options.maxContext, prefillChunk: options.prefillChunk };
  const engineOf = (model: TokenModel & { destroy(): void }, tokenizer: MolmTokenizer, device: string) =>
    new LocalEngine(model, tokenizer, { ...options, device: options.device ?? device, backend: backend.kind });
  const local = !isUrl(options.model) && platform.folder !== undefined;
  if (local) {
    const files = platform.folder!(options.model);
    const tokenizerJson = options.tokenizer ?? (await readFolderTokenizer(files));
    if (tokenizerJson === null) {
      throw new ModelFormatError(`${files.location} has no tokenizer.json: copy the model's tokenizer.json into it, or pass { tokenizer }.`);
    }
    const tokenizer = MolmTokenizer.fromJson(tokenizerJson);
    const onProgress = (p: { tensor: string; loadedBytes: number; totalBytes: number }) =>
      options.onProgress?.({ type: 'read', tensor: p.tensor, loaded: p.loadedBytes, total: p.totalBytes });
    if (backend.kind === 'wasm') {
      const model = await loadWasmModel(files, { ...sizes, threads: options.threads, onProgress });
      return engineOf(model, tokenizer, model.description);
    }
    const model = await loadGpuModel(files, { gpu: backend.gpu, ...sizes, expertBudget, onProgress });
    return engineOf(model, tokenizer, model.ctx.description);
  }
  const url = isUrl(options.model) || typeof location === 'undefined' ? options.model : new URL(options.model, location.href).toString();
  const shardOptions = { store: options.store, signal: options.signal, onProgress: options.onProgress };
  const loaded =
    backend.kind === 'wasm'
      ? await loadWasmModelFromUrl(url, { ...shardOptions, ...sizes, threads: options.threads }).then((m) => ({ model: m, device: m.description }))
      : await loadModel(url, { ...shardOptions, ...sizes, gpu: backend.gpu, expertBudget }).then((m) => ({ model: m, device: m.ctx.description }));
  try {
    const tokenizerJson = options.tokenizer ?? (await loadTokenizerJson(url, { store: options.store, signal: options.signal }));
    return engineOf(loaded.model, MolmTokenizer.fromJson(tokenizerJson), loaded.device);
  } catch (e) {
    loaded.model.destroy();
    throw e;
  }
}
