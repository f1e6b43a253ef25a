import type { ModelConfig } from '../config.ts';
import { ModelFormatError, MolmError, QuotaError } from '../errors.ts';
import { LIMITS, fileUrlInside, parseJsonFile } from '../limits.ts';
import { planStoredWeights, type WeightPlan } from '../weight-plan.ts';
import { deleteUnlistedShards, manifestUrlOf } from '../store/model-cache.ts';
import { defaultShardStore, isQuotaExceeded, quotaErrorFrom, type ModelRecord, type ShardStore } from '../store/shard-store.ts';
import { abortError, fetchShard, fetchShards, type ShardRequest } from './fetcher.ts';
import type { StoredManifest } from '../manifest.ts';
import { mergePacks } from '../packs/merge.ts';
import type { PackLoadOptions, PackRange } from '../packs/pack-shapes.ts';
import { sha256Hex, validateManifest } from './manifest-source.ts';

// A converted model (manifest.json + shards) from a URL into a backend's memory, through the
// shard store. This stage knows no device: it yields verified tensor bytes to a WeightSink,
// which each backend provides (GPU buffers: src/model/load.ts; the wasm memory: src/wasm/load.ts).
//   manifest ─► plan ─► the backend's memory for it ─► quota check
//            ─► download the missing shards: sha256 ─► pieces into the sink ─► store
//            ─► the cached shards, one at a time: store ─► sha256 ─► pieces into the sink
// The JS heap holds one shard per download in flight, then one shard for the cached ones.

export type ShardSource = 'cache' | 'network';

/** What loadModel is doing; events come in the order of this list (see docs/format.md). */
export type LoadProgress =
  /** The manifest is read: how much of the model is cached and how much will be downloaded. */
  | { type: 'initiate'; url: string; shards: number; totalBytes: number; cachedBytes: number; downloadBytes: number }
  /** A shard's download (re)starts, at `from` bytes (non-zero when resuming a partial download). */
  | { type: 'download'; shard: string; index: number; from: number; total: number }
  /** Bytes of a shard received, and of the whole download (network only). */
  | { type: 'progress'; shard: string; index: number; source: 'network'; loaded: number; total: number; overallLoaded: number; overallTotal: number }
  /** A shard's sha256 was checked: right after its download, or when a cached shard is read. */
  | { type: 'verify'; shard: string; index: number; source: ShardSource; ok: boolean }
  /** A shard's pieces were written into the backend's memory; overall counts the whole model. */
  | { type: 'upload'; shard: string; index: number; source: ShardSource; loaded: number; total: number; overallLoaded: number; overallTotal: number }
  /** The model is in the backend's memory. */
  | { type: 'ready'; url: string; totalBytes: number; cachedBytes: number; networkBytes: number; ms: number };

/** How shards are fetched and cached, whichever backend they feed. */
export interface ShardLoadOptions {
  onProgress?: (event: LoadProgress) => void;
  signal?: AbortSignal;
  /** Where shards are cached: IndexedDB in a browser by default, memory elsewhere. */
  store?: ShardStore;
  /** Shards downloaded at once (default 2: the heap holds one shard per download in flight). */
  concurrency?: number;
  /** Retries per shard after network errors (default 4), with exponential backoff from `backoffMs` (500). */
  retries?: number;
  backoffMs?: number;
  fetch?: typeof fetch;
}

/** Where verified tensor bytes go: a backend's weights (GpuWeights, WasmWeights). */
export interface WeightSink {
  /** Bytes of a tensor, in its storage layout, at `offset` inside it; copied before this returns or by flush. */
  writePiece(name: string, offset: number, bytes: Uint8Array): void;
  /** Resolves once the sink holds its own copy of everything written (the GPU queue's copies). */
  flush?(): Promise<void>;
  /** Checks that every tensor received all its bytes. */
  finishWrites(): void;
}

/** A backend's side of a load: called once the plan is known, before any shard is read. */
export type WeightConsumer<M> = (model: {
  config: ModelConfig;
  plan: WeightPlan;
  /** Where the packs' experts are, when packs are merged in. */
  packs?: PackRange[];
}) => Promise<{
  sink: WeightSink;
  /** Every piece is in: the model. */
  finish(): Promise<M>;
  /** The load failed: release what was allocated. */
  abandon(): void;
}>;

const MB = 1e6;
const mb = (bytes: number) => (bytes / MB).toFixed(bytes < 10 * MB ? 1 : 0);

interface Piece {
  tensor: string;
  /** Where the piece starts inside its tensor. */
  tensorOffset: number;
  /** Where it starts inside its shard. */
  offset: number;
  bytes: number;
}

/** Each shard's pieces, in shard order, with where they go in their tensors. */
function piecesByShard(manifest: StoredManifest, plan: WeightPlan): Piece[][] {
  const used = new Set(plan.entries.map((e) => e.name));
  const out: Piece[][] = manifest.shards.map(() => []);
  for (const t of manifest.tensors) {
    if (!used.has(t.name)) continue;
    let at = 0;
    for (const p of t.pieces) {
      out[p.shard].push({ tensor: t.name, tensorOffset: at, offset: p.offset, bytes: p.bytes });
      at += p.bytes;
    }
  }
  return out;
}

/** The manifest: from the server, or the cached copy when the server cannot be reached. */
async function fetchManifest(url: string, prior: ModelRecord | undefined, get: typeof fetch, signal?: AbortSignal): Promise<unknown> {
  if (prior?.imported) {
    // Imported from the hub: the manifest is the cache's own; no server has it.
    if (!prior.complete) {
      throw new MolmError(`The import of ${prior.imported.repo} into the cache did not finish; import it again (createEngine with the hub id resumes it).`);
    }
    return prior.manifest;
  }
  let res: Response;
  try {
    res = await get(url, { signal, cache: 'no-cache' });
  } catch (e) {
    if (signal?.aborted) throw abortError(signal);
    if (prior?.complete) return prior.manifest;
    throw new MolmError(`Could not fetch ${url} (${(e as Error).message}); check the address and the network.`, { cause: e });
  }
  if (res.status === 404 || res.status === 410) {
    throw new ModelFormatError(
      `There is no manifest at ${url} (HTTP ${res.status}): give the URL of a converted model's manifest.json (\`molm convert\`) or of its folder.`,
    );
  }
  if (!res.ok) {
    if (prior?.complete && res.status >= 500) return prior.manifest;
    throw new MolmError(`${url} answered HTTP ${res.status} ${res.statusText}.`);
  }
  const limits = { what: url, maxBytes: LIMITS.indexBytes, fix: 'give the URL of a molm-web manifest.json (`molm convert`)' };
  if (Number(res.headers.get('content-length') ?? 0) > limits.maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw new ModelFormatError(`${url} is larger than the ${limits.maxBytes} bytes a manifest may have; ${limits.fix}.`);
  }
  return parseJsonFile(new Uint8Array(await res.arrayBuffer()), limits);
}

/** Throws QuotaError when the browser will not hold the bytes still to download. */
export async function checkQuota(needed: number): Promise<void> {
  const storage = typeof navigator !== 'undefined' ? navigator.storage : undefined;
  if (needed <= 0 || !storage?.estimate) return;
  let estimate: StorageEstimate;
  try {
    estimate = await storage.estimate();
  } catch {
    return; // No estimate: the store's own QuotaExceededError will tell.
  }
  if (estimate.quota === undefined) return;
  const offered = Math.max(0, estimate.quota - (estimate.usage ?? 0));
  if (needed > offered) {
    throw new QuotaError(
      `The model needs ${mb(needed)} MB more, the browser offers ${mb(offered)} MB; free space on the disk, delete cached models (deleteCachedModel, clearCache), or load a smaller model (q4).`,
    );
  }
}

async function requestPersistence(): Promise<void> {
  try {
    await navigator.storage?.persist?.();
  } catch {
    // A refusal only means the browser may evict the cache under pressure.
  }
}

async function putRecord(store: ShardStore, record: ModelRecord): Promise<void> {
  try {
    await store.putModel(record);
  } catch (e) {
    throw isQuotaExceeded(e) ? quotaErrorFrom(e, 'the model record') : e;
  }
}

/**
 * Streams a converted model (`molm convert`) from a URL into a backend, caching its shards: the
 * first load downloads them (resuming interrupted downloads, verifying each sha256), later loads
 * read them from the cache without the network. `url` is the manifest's or its folder's.
 * `consume` allocates the backend's memory for the plan (before any download, so a device that
 * cannot hold the model is known at once) and receives every verified piece.
 *
 * Errors: ModelFormatError (manifest, a shard corrupt or missing on the server), QuotaError (the
 * browser's storage cannot hold the model; nothing cached is lost), DeviceLimitError (from the
 * consumer), AbortError (`signal`), MolmError (network).
 */
export function streamShards<M>(url: string, options: ShardLoadOptions & PackLoadOptions, consume: WeightConsumer<M>): Promise<M> {
  return streamStored(
    url,
    options,
    (json, manifestUrl) => {
      const { manifest, config } = validateManifest(json, manifestUrl);
      const plan = planStoredWeights(config, manifest.tensors, manifest.dtype);
      return { manifest, config, plan };
    },
    async ({ manifest, config, plan }, manifestUrl) => {
      const base = { config, rawConfig: manifest.config, weightsSha256: manifest.weightsSha256, location: manifestUrl };
      options.onBase?.(base);
      const packs = options.packs ?? [];
      if (packs.length === 0) return consume({ config, plan });
      // The packs' own checks ran when they were loaded; here, that they extend this base.
      const merge = mergePacks(base, packs);
      const backend = await consume({ config: merge.config, plan: merge.plan(plan), packs: merge.ranges });
      return { ...backend, sink: merge.sink(backend.sink, plan) };
    },
  );
}

/** A validated manifest of stored files (a model's or a pack's) and the plan of its tensors. */
interface OpenedStore<T> {
  manifest: T;
  plan: WeightPlan;
}

/**
 * The shard cache's download-verify-store loop for any manifest of shards: `open` validates the
 * manifest and plans its tensors, `consume` gives the memory they go into.
 */
export async function streamStored<T extends StoredManifest, O extends OpenedStore<T>, M>(
  url: string,
  options: ShardLoadOptions,
  open: (json: unknown, manifestUrl: string) => O,
  consume: (opened: O, manifestUrl: string) => ReturnType<WeightConsumer<M>>,
): Promise<M> {
  const started = Date.now();
  const { signal, onProgress } = options;
  const emit = (e: LoadProgress) => onProgress?.(e);
  const checkAbort = () => {
    if (signal?.aborted) throw abortError(signal);
  };
  checkAbort();
  const get = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const store = options.store ?? defaultShardStore();
  const manifestUrl = manifestUrlOf(url);

  const prior = await store.getModel(manifestUrl).catch(() => undefined);
  const json = await fetchManifest(manifestUrl, prior, get, signal);
  const opened = open(json, manifestUrl);
  const { manifest, plan } = opened;
  const shards = manifest.shards;
  const totalBytes = shards.reduce((a, s) => a + s.bytes, 0);

  // What is cached; each distinct shard (by sha256) counts once.
  const firstIndex = new Map<string, number>();
  shards.forEach((s, i) => {
    firstIndex.has(s.sha256) || firstIndex.set(s.sha256, i);
  });
  const missing: number[] = [];
  let cachedBytes = 0;
  let partialBytes = 0;
  for (const [hash, i] of firstIndex) {
    if (await store.has(hash)) {
      cachedBytes += shards[i].bytes;
    } else {
      missing.push(i);
      const p = await store.getPartial(hash).catch(() => undefined);
      if (p && p.total === shards[i].bytes) partialBytes += p.bytes.byteLength;
    }
  }
  if (prior?.imported && missing.length > 0) {
    throw new MolmError(
      `The cache lost ${missing.length} shard(s) of ${prior.imported.repo}, imported from the hub; import it again (createEngine with the hub id resumes the import).`,
    );
  }
  const uniqueBytes = [...firstIndex.values()].reduce((a, i) => a + shards[i].bytes, 0);
  const downloadBytes = uniqueBytes - cachedBytes;
  emit({ type: 'initiate', url: manifestUrl, shards: shards.length, totalBytes, cachedBytes, downloadBytes });

  if (store.persistent && missing.length > 0) {
    await checkQuota(downloadBytes - partialBytes);
    await requestPersistence();
  }
  checkAbort();
  const record: ModelRecord = {
    url: manifestUrl,
    manifest,
    shards: shards.map((s) => s.sha256),
    totalBytes,
    complete: missing.length === 0 && (prior?.complete ?? false),
    lastUsed: Date.now(),
    ...(prior?.imported && { imported: prior.imported }),
  };
  // The cached tokenizer (loadTokenizerJson) stays the model's while its manifest is unchanged:
  // dropping it here would make an offline load fetch it.
  if (prior?.tokenizer && JSON.stringify(prior.manifest) === JSON.stringify(manifest)) record.tokenizer = prior.tokenizer;
  await putRecord(store, record);

  // The backend's memory before any download: a device that cannot hold the model is known at once.
  const backend = await consume(opened, manifestUrl);
  try {
    const requests = (i: number): ShardRequest => ({
      url: fileUrlInside(manifestUrl, shards[i].file, `${manifestUrl}: shard ${i}`, 're-run `molm convert`'),
      file: shards[i].file,
      bytes: shards[i].bytes,
      sha256: shards[i].sha256,
    });
    const fetchOptions = { store, signal, retries: options.retries, backoffMs: options.backoffMs, fetch: get };
    const fromNetwork = new Set<string>();
    let networkBytes = 0;

    const sink = backend.sink;
    const pieces = piecesByShard(manifest, plan);
    const uploadedShards = new Set<number>();
    let uploaded = 0;
    /** Writes a verified shard's pieces into the sink (every index that has its bytes). */
    const upload = async (hash: string, bytes: Uint8Array, source: ShardSource) => {
      for (let i = 0; i < shards.length; i++) {
        if (shards[i].sha256 !== hash || uploadedShards.has(i)) continue;
        for (const p of pieces[i]) sink.writePiece(p.tensor, p.tensorOffset, bytes.subarray(p.offset, p.offset + p.bytes));
        // The sink has its copy once this resolves: at most one shard in flight.
        await sink.flush?.();
        uploadedShards.add(i);
        uploaded += shards[i].bytes;
        emit({
          type: 'upload',
          shard: shards[i].file,
          index: i,
          source,
          loaded: shards[i].bytes,
          total: shards[i].bytes,
          overallLoaded: uploaded,
          overallTotal: totalBytes,
        });
      }
    };

    // 1. Download what is missing; each shard goes into the sink straight from its download
    //    buffer, then into the store.
    const received = new Map<number, number>();
    let overallLoaded = 0;
    await fetchShards(missing.map(requests), {
      ...fetchOptions,
      concurrency: options.concurrency,
      onStart: (req, from) => {
        const index = firstIndex.get(req.sha256)!;
        overallLoaded += from - (received.get(index) ?? 0);
        received.set(index, from);
        emit({ type: 'download', shard: req.file, index, from, total: req.bytes });
      },
      onProgress: (req, loaded, total) => {
        const index = firstIndex.get(req.sha256)!;
        overallLoaded += loaded - (received.get(index) ?? 0);
        received.set(index, loaded);
        emit({ type: 'progress', shard: req.file, index, source: 'network', loaded, total, overallLoaded, overallTotal: downloadBytes });
      },
      onVerified: async (req, bytes) => {
        fromNetwork.add(req.sha256);
        networkBytes += req.bytes;
        emit({ type: 'verify', shard: req.file, index: firstIndex.get(req.sha256)!, source: 'network', ok: true });
        await upload(req.sha256, bytes, 'network');
      },
    });

    // 2. The cached shards, one at a time from the store into the sink.
    const verified = new Set(fromNetwork);
    // One shard-sized buffer, reused for every shard: the heap holds one shard here.
    const reuse = new Uint8Array(Math.max(0, ...shards.filter((_, i) => !uploadedShards.has(i)).map((x) => x.bytes)));
    for (let i = 0; i < shards.length; i++) {
      checkAbort();
      if (uploadedShards.has(i)) continue;
      const shard = shards[i];
      let bytes = await store.get(shard.sha256, reuse);
      if (bytes && !verified.has(shard.sha256)) {
        const ok = bytes.byteLength === shard.bytes && (await sha256Hex(bytes)) === shard.sha256;
        emit({ type: 'verify', shard: shard.file, index: i, source: 'cache', ok });
        if (ok) verified.add(shard.sha256);
        else {
          // Damaged in the cache: never used, fetched again.
          bytes = undefined;
          await store.delete(shard.sha256);
        }
      }
      if (!bytes || bytes.byteLength !== shard.bytes) {
        bytes = undefined;
        await fetchShard(requests(i), {
          ...fetchOptions,
          buffer: reuse,
          onStart: (from) => emit({ type: 'download', shard: shard.file, index: i, from, total: shard.bytes }),
          onProgress: (loaded, total) =>
            emit({ type: 'progress', shard: shard.file, index: i, source: 'network', loaded, total, overallLoaded: loaded, overallTotal: total }),
          onVerified: async (downloaded) => {
            fromNetwork.add(shard.sha256);
            verified.add(shard.sha256);
            networkBytes += shard.bytes;
            emit({ type: 'verify', shard: shard.file, index: i, source: 'network', ok: true });
            // Like any download: into the sink from the download buffer, then stored.
            await upload(shard.sha256, downloaded, 'network');
          },
        });
        continue;
      }
      await upload(shard.sha256, bytes, fromNetwork.has(shard.sha256) ? 'network' : 'cache');
      bytes = undefined;
    }
    sink.finishWrites();
    checkAbort();
    const model = await backend.finish();

    await finishRecord(store, record);
    emit({ type: 'ready', url: manifestUrl, totalBytes, cachedBytes: uniqueBytes - networkBytes, networkBytes, ms: Date.now() - started });
    return model;
  } catch (e) {
    backend.abandon();
    if (signal?.aborted && !(e instanceof QuotaError)) throw abortError(signal);
    throw e;
  }
}

/**
 * Marks the model complete and drops the shards no model lists any more: an earlier version's,
 * after the manifest at this URL changed. (A load in progress has written its record before its
 * first download, so its shards are listed.)
 */
async function finishRecord(store: ShardStore, record: ModelRecord): Promise<void> {
  record.complete = true;
  record.lastUsed = Date.now();
  try {
    await store.putModel(record);
    await deleteUnlistedShards(store);
  } catch {
    // The model is loaded; a record that could not be updated only costs a re-check next time.
  }
}
