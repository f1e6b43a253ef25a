import type { FileSource } from '../checkpoint/types.ts';
import type { EvictionPolicy } from '../experts/residency.ts';
import { ModelFormatError, UsageError } from '../errors.ts';
import { loadGpuModel, loadModel } from '../model/load.ts';
import type { LoadProgress } from '../shards/load-model.ts';
import { loadWasmModel, loadWasmModelFromUrl } from '../wasm/load.ts';
import { type Backend, chooseBackend, type BackendChoice } from './backend.ts';
import type { TokenModel } from '../token-model.ts';
import { loadTokenizerJson, readFolderTokenizer } from '../shards/load-tokenizer.ts';
import type { ShardStore } from '../store/shard-store.ts';
import { LocalEngine, type PackSwap } from './engine.ts';
import { loadPack, openPackFolder } from '../packs/load-pack.ts';
import { type LoadedPack, type PackBase, type PackRange, packRanges } from '../packs/pack-shapes.ts';
import { mergePacks } from '../packs/merge.ts';
import { weightsSha256 } from '../packs/weights-hash.ts';
import { openModelFolder } from '../shards/model-folder.ts';
import { type ImportProgress, importHubModelToStore } from '../shards/hub-store-import.ts';
import { parseHubRepo } from '../checkpoint/hub.ts';
import type { ConvertDtype } from '../shards/plan.ts';
import type { EngineOptions } from './api.ts';
import { isHubId, isUrl } from './model-url.ts';
import { MolmTokenizer } from './tokenizer.ts';

/** Loading progress: a converted model from a URL (LoadProgress), or a local folder's tensors. */
export type EngineProgress = LoadProgress | ImportProgress | { type: 'read'; tensor: string; loaded: number; total: number };

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
  /** For a model on the Hugging Face hub: the hub (default https://huggingface.co; a mirror, or a test's stand-in). */
  hubUrl?: string;
  /** For a model on the hub: the storage type it is converted to in the cache (default q4). */
  dtype?: ConvertDtype;
  /**
   * Expert packs merged into the model (URLs of converted packs; in Node also folders), in
   * order; change them later with engine.setPacks (docs/extending.md).
   */
  packs?: string[];
  /** Browser only: run the engine in a Web Worker (default true where workers exist). */
  worker?: boolean;
}

/** What differs between the browser and Node: where the GPU comes from, and local folders. */
export interface Platform {
  gpu(): Promise<GPU>;
  /** A local folder's files; undefined where there are none (the browser). */
  folder?(path: string): FileSource;
  /** Whether a local path exists (a hub id is read as a folder when one of its name exists). */
  isFolder?(path: string): boolean;
}

// The widget's single-file build leaves out what reads Hugging Face checkpoints (the hub
// importer, local folders) and with it the checkpoint readers (vite.widget.config.ts defines
// this false): its script has a size budget, and it loads converted models by URL.
declare const __MOLM_READS_CHECKPOINTS__: boolean | undefined;
const READS_CHECKPOINTS = typeof __MOLM_READS_CHECKPOINTS__ === 'undefined' || __MOLM_READS_CHECKPOINTS__;

/** Loads the model and its tokenizer and returns an engine on this thread. */
export async function createLocalEngine(options: CreateEngineOptions, platform: Platform): Promise<LocalEngine> {
  if (!options || typeof options.model !== 'string' || options.model === '') {
    throw new UsageError('createEngine needs { model }: the URL of a converted model (or, in Node, a model folder).');
  }
  if (options.packs !== undefined && (!Array.isArray(options.packs) || !options.packs.every((p) => typeof p === 'string' && p !== ''))) {
    throw new UsageError('createEngine: packs must be an array of pack URLs (or, in Node, folders).');
  }
  const choice = options.backend ?? 'auto';
  if (!['auto', 'webgpu', 'wasm'].includes(choice)) throw new UsageError(`backend must be 'auto', 'webgpu' or 'wasm', got ${JSON.stringify(choice)}.`);
  const backend = await chooseBackend(choice, options.gpu ? async () => options.gpu! : platform.gpu);
  if (backend.kind === 'wasm' && options.gpuMemoryBudget !== undefined) {
    throw new UsageError('gpuMemoryBudget applies to the WebGPU backend; the wasm engine keeps its weights in its own memory.');
  }
  const loader = modelLoader(options, platform, backend);
  const packs = await loader.openPacks(options.packs ?? []);
  const loaded = await loader.load(packs);
  try {
    let tokenizerJson = options.tokenizer;
    if (tokenizerJson === undefined) {
      if (loader.folder) {
        const text = await readFolderTokenizer(loader.folder);
        if (text === null) {
          throw new ModelFormatError(`${loader.folder.location} has no tokenizer.json: copy the model's tokenizer.json into it, or pass { tokenizer }.`);
        }
        tokenizerJson = text;
      } else {
        tokenizerJson = await loadTokenizerJson(loader.url, { store: options.store, signal: options.signal });
      }
    }
    const swap: PackSwap = async (specs, current) => {
      // Checked against the base before the current model goes: a bad pack changes nothing.
      const next = await loader.openPacks(specs);
      await loader.check(next);
      const previous = loader.lastPacks;
      current.destroy();
      try {
        return await loader.load(next);
      } catch (failure) {
        // The device or the memory failed with the new packs: back to the previous ones (if
        // that fails too, the error says so and the engine has no model to run).
        return { ...(await loader.load(previous)), failure };
      }
    };
    return new LocalEngine(loaded.model, MolmTokenizer.fromJson(tokenizerJson), {
      ...options,
      device: options.device ?? loaded.device,
      backend: backend.kind,
      packs: loaded.packs,
      swap,
    });
  } catch (e) {
    loaded.model.destroy();
    throw e;
  }
}

interface Loaded {
  model: TokenModel & { destroy(): void };
  device: string;
  packs: PackRange[];
}

/** How the engine's model is (re)loaded: the base from its URL or folder, with some packs. */
function modelLoader(options: CreateEngineOptions, platform: Platform, backend: Backend) {
  const expertBudget = options.gpuMemoryBudget === undefined ? undefined : { bytes: options.gpuMemoryBudget, policy: options.expertEviction };
  const sizes = { maxContext: options.maxContext, prefillChunk: options.prefillChunk };
  const hubId = isHubId(options.model) && !platform.isFolder?.(options.model);
  const local = !isUrl(options.model) && platform.folder !== undefined && !hubId;
  const folder = local ? platform.folder!(options.model) : undefined;
  const hub = hubId ? parseHubRepo(options.model) : undefined;
  if (!hub && (options.hubUrl !== undefined || options.dtype !== undefined)) {
    throw new UsageError('hubUrl and dtype apply to a model on the Hugging Face hub (model: "ORG/NAME" or "ORG/NAME@REVISION").');
  }
  let url = isUrl(options.model) || typeof location === 'undefined' ? options.model : new URL(options.model, location.href).toString();
  const shardOptions = { store: options.store, signal: options.signal, onProgress: options.onProgress };
  /** The base as the first load found it, to check packs against before a swap. */
  let base: PackBase | undefined;
  const loader = {
    folder,
    get url() {
      return url;
    },
    lastPacks: [] as LoadedPack[],
    async openPacks(specs: readonly string[]): Promise<LoadedPack[]> {
      const packs: LoadedPack[] = [];
      for (const spec of specs) {
        if (!isUrl(spec) && platform.folder) packs.push(await openPackFolder(platform.folder(spec)));
        else packs.push(await loadPack(isUrl(spec) || typeof location === 'undefined' ? spec : new URL(spec, location.href).toString(), shardOptions));
      }
      return packs;
    },
    async check(packs: readonly LoadedPack[]): Promise<void> {
      if (!base) throw new Error('the base was never loaded');
      mergePacks(base, packs);
    },
    async load(packs: LoadedPack[]): Promise<Loaded> {
      const onProgress = (p: { tensor: string; loadedBytes: number; totalBytes: number }) =>
        options.onProgress?.({ type: 'read', tensor: p.tensor, loaded: p.loadedBytes, total: p.totalBytes });
      let loaded: { model: TokenModel & { destroy(): void }; device: string };
      if (folder && READS_CHECKPOINTS) {
        base ??= await folderBase(folder);
        const o = { ...sizes, packs, onProgress };
        loaded =
          backend.kind === 'wasm'
            ? await loadWasmModel(folder, { ...o, threads: options.threads }).then((m) => ({ model: m, device: m.description }))
            : await loadGpuModel(folder, { ...o, gpu: backend.gpu, expertBudget }).then((m) => ({ model: m, device: m.ctx.description }));
      } else {
        // A hub model is imported into the cache once (or the rest of a stopped import); then it is a cached model.
        if (hub) {
          if (!READS_CHECKPOINTS)
            throw new UsageError(
              `This build of molm-web loads converted models by URL only; ${options.model} is a hub id. Use the molm-web package, or convert the model (\`molm convert\`) and give its URL.`,
            );
          url = await importHubModelToStore({
            repo: hub,
            hubUrl: options.hubUrl,
            dtype: options.dtype,
            store: options.store,
            signal: options.signal,
            onProgress: options.onProgress,
          });
        }
        const o = { ...shardOptions, ...sizes, packs, onBase: (b: PackBase) => (base = b) };
        loaded =
          backend.kind === 'wasm'
            ? await loadWasmModelFromUrl(url, { ...o, threads: options.threads }).then((m) => ({ model: m, device: m.description }))
            : await loadModel(url, { ...o, gpu: backend.gpu, expertBudget }).then((m) => ({ model: m, device: m.ctx.description }));
      }
      loader.lastPacks = packs;
      const baseConfig = base!.config;
      return { ...loaded, packs: packRanges(baseConfig, packs) };
    },
  };
  return loader;
}

/** A local base folder's config and weights hash (computed for a checkpoint, which records none). */
async function folderBase(files: FileSource): Promise<PackBase> {
  const { config, rawConfig, tensors, manifest } = await openModelFolder(files);
  try {
    return { config, rawConfig, weightsSha256: manifest ? manifest.weightsSha256 : await weightsSha256(config, tensors), location: files.location };
  } finally {
    await tensors.close();
  }
}
