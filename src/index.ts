// molm-web's public API in the browser (Node's entry, src/node.ts, re-exports it with Node's
// createEngine). createEngine is the text API; the rest are the pieces it is built from.
import { browserGpu } from './gpu/browser-gpu.ts';
import { createLocalEngine, type CreateEngineOptions } from './engine/create.ts';
import type { Engine } from './engine/api.ts';
import { startEngineWorker } from './engine/start-worker.ts';
import { WorkerEngine } from './engine/worker-engine.ts';

/**
 * Loads a converted model (its URL) with its tokenizer and returns the text engine. In a page
 * the engine runs in a Web Worker (pass `worker: false` to keep it on this thread).
 */
export async function createEngine(options: CreateEngineOptions): Promise<Engine> {
  const inPage = typeof window !== 'undefined' && typeof Worker !== 'undefined';
  if (inPage && options.worker !== false) {
    return WorkerEngine.create(options, startEngineWorker());
  }
  return createLocalEngine(options, { gpu: browserGpu });
}

export type { CreateEngineOptions, EngineProgress } from './engine/create.ts';
export type { Engine, TextStream, EngineOptions } from './engine/api.ts';
export { LocalEngine } from './engine/engine.ts';
export type { GenerateOptions, GenerationResult, GenerationProgress, FinishReason, RoutingTrace, Usage } from './engine/generation.ts';
export type { RoutingRecord } from './token-model.ts';
export type { PackRange, LoadedPack } from './packs/pack-shapes.ts';
export type { PackInfo, PackManifest, PackAdds } from './manifest.ts';
export { loadPack } from './packs/load-pack.ts';
export { importHubModelToStore, importKey, type ImportProgress } from './shards/hub-store-import.ts';
export { parseHubRepo, type HubRepo } from './checkpoint/hub.ts';
export { DEFAULT_GENERATE_OPTIONS } from './engine/generation.ts';
export { DEFAULT_CHAT_TEMPLATE, DEFAULT_CHAT_STOP, renderChat, usageFromChat } from './engine/chat.ts';
export type { ChatMessage, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatUsage } from './engine/api.ts';
export { MolmTokenizer, StreamingDetokenizer } from './engine/tokenizer.ts';
export type { TokenModel } from './token-model.ts';
export { loadTokenizerJson } from './shards/load-tokenizer.ts';
export { parseConfig, type ModelConfig } from './config.ts';
export * from './errors.ts';
export { openCheckpoint } from './checkpoint/index.ts';
export { blobFileSource, urlFileSource } from './checkpoint/web-files.ts';
export type { ByteSource, FileSource, TensorInfo, TensorSource, DType } from './checkpoint/types.ts';
export { GpuContext, type DeviceRequirements, type GpuContextOptions } from './gpu/context.ts';
export { GpuModel, type GpuModelOptions } from './model/model.ts';
export { GREEDY, type SamplingOptions } from './token-model.ts';
export { loadGpuModel } from './model/load.ts';
export type { WeightProgress } from './weight-plan.ts';
export { loadModel, type LoadModelOptions } from './model/load.ts';
export { streamShards, type LoadProgress, type ShardLoadOptions, type WeightSink } from './shards/load-model.ts';
export { clearCache, deleteCachedModel, listCachedModels, type CachedModel, type CacheOptions } from './store/model-cache.ts';
export { idbShardStore, memoryShardStore, type ModelRecord, type PartialShard, type ShardStore } from './store/shard-store.ts';
