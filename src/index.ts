// molm-web's public API. The text-generation engine (createEngine, tokenizer, chat) builds on
// these pieces; the CLI uses them through Dawn in Node.
export { parseConfig, type ModelConfig } from './config.ts';
export * from './errors.ts';
export { openCheckpoint } from './checkpoint/index.ts';
export { blobFileSource, urlFileSource } from './checkpoint/web-files.ts';
export type { ByteSource, FileSource, TensorInfo, TensorSource, DType } from './checkpoint/types.ts';
export { GpuContext, type DeviceRequirements, type GpuContextOptions } from './gpu/context.ts';
export { GpuModel, GREEDY, type GpuModelOptions, type SamplingOptions } from './model/model.ts';
export { loadGpuModel } from './model/load.ts';
export type { WeightProgress } from './model/weights.ts';
export { loadModel, type LoadModelOptions, type LoadProgress } from './shards/load-model.ts';
export { clearCache, deleteCachedModel, listCachedModels, type CachedModel, type CacheOptions } from './store/model-cache.ts';
export { idbShardStore, memoryShardStore, type ModelRecord, type PartialShard, type ShardStore } from './store/shard-store.ts';
