import { clear, createStore, del, get, keys, promisifyRequest, set, values, type UseStore } from 'idb-keyval';
import { QuotaError } from '../errors.ts';
import type { StoredManifest } from '../manifest.ts';
import { readStreamInto } from './read-into.ts';

// Where downloaded shards live between page loads. Shards are content-addressed: a shard's key is
// the lower-case hex sha256 of its bytes, so two models (or two versions of one model) that
// share a shard store it once. Model records say which shards a manifest URL needs.

/** What the cache knows about one model, keyed by its manifest URL. */
export interface ModelRecord {
  /** The manifest's absolute URL. */
  url: string;
  /** A model's manifest, or an expert pack's. */
  manifest: StoredManifest;
  /** sha256 of every shard, in manifest order (the store keys of the shards). */
  shards: string[];
  /** Bytes of all shards. */
  totalBytes: number;
  /** Every shard was downloaded and verified, and the model loaded from the cache. */
  complete: boolean;
  /** When the model was last loaded (ms since the epoch). */
  lastUsed: number;
  /** sha256 of the model's tokenizer.json, stored like a shard (src/shards/load-tokenizer.ts). */
  tokenizer?: string;
  /**
   * A model imported from the Hugging Face hub into the cache (src/shards/hub-store-import.ts):
   * its manifest exists only here. Until `complete`, the shards stored so far, for a resumed import.
   */
  imported?: { repo: string; revision: string; hub: string; dtype: string; shardBytes: number };
}

/** The bytes received so far of a shard whose download was interrupted (resumed later). */
export interface PartialShard {
  /** The sha256 the whole shard must have (the manifest's). */
  sha256: string;
  /** The whole shard's size. */
  total: number;
  /** The first bytes of the shard, as received. */
  bytes: Uint8Array;
}

/**
 * A place for shards, partial shards and model records. Implementations: IndexedDB
 * (`idbShardStore`, the browser default) and memory (`memoryShardStore`, Node and tests).
 * Writes may reject with a DOMException named "QuotaExceededError" (`isQuotaExceeded`).
 */
export interface ShardStore {
  /** Whether the bytes outlive the page (then the loader checks the browser's storage quota). */
  readonly persistent: boolean;
  has(sha256: string): Promise<boolean>;
  /**
   * A shard's bytes, or undefined when it is absent or unreadable. When `into` can hold them,
   * they are read into it and the result is a view of it (one buffer reused across shards).
   */
  get(sha256: string, into?: Uint8Array): Promise<Uint8Array | undefined>;
  put(sha256: string, bytes: Uint8Array): Promise<void>;
  delete(sha256: string): Promise<void>;
  /** Keys of the complete shards. */
  list(): Promise<string[]>;

  getPartial(sha256: string): Promise<PartialShard | undefined>;
  putPartial(partial: PartialShard): Promise<void>;
  deletePartial(sha256: string): Promise<void>;
  listPartials(): Promise<string[]>;

  getModel(url: string): Promise<ModelRecord | undefined>;
  putModel(record: ModelRecord): Promise<void>;
  deleteModel(url: string): Promise<void>;
  listModels(): Promise<ModelRecord[]>;

  /** Removes every shard, partial shard and model record. */
  clear(): Promise<void>;
}

/** Whether an error is the browser's "storage is full" (IndexedDB, Cache API, OPFS). */
export function isQuotaExceeded(e: unknown): boolean {
  const name = (e as { name?: unknown } | null)?.name;
  return name === 'QuotaExceededError' || e instanceof QuotaError;
}

/** A store write that ran out of room, as the error callers can act on. */
export function quotaErrorFrom(e: unknown, what: string): QuotaError {
  if (e instanceof QuotaError) return e;
  return new QuotaError(
    `The browser's storage is full: ${what} could not be stored. Shards already cached are kept. Free disk space, delete cached models (deleteCachedModel, clearCache), or load a smaller model.`,
    { cause: e },
  );
}

const PARTIAL = 'partial:';

/** The stored form of a partial shard. */
interface StoredPartial {
  sha256: string;
  total: number;
  bytes: Uint8Array | Blob;
}

/** A Uint8Array that owns its whole buffer (structured clone copies a view's entire ArrayBuffer). */
function ownBuffer(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
}

/**
 * Writes bytes under a key, as a Blob when the browser takes one: IndexedDB keeps a Blob's bytes
 * in a file and reading it back streams into memory the caller reuses (see `bytesOf`), where a
 * stored Uint8Array comes back as a fresh shard-sized ArrayBuffer. Chromium keeps the bytes of
 * every Blob the page made until the garbage collector finalises the Blob object; with hundreds
 * of MB of such Blobs pending, IndexedDB can reject a Blob write ("Failed to write blobs
 * (InvalidBlob)", a DataError). Such a write is done again as a Uint8Array, which always works,
 * and Blobs are not tried again for a while.
 */
export function blobWriter(): (bytes: Uint8Array, write: (value: Blob | Uint8Array) => Promise<void>) => Promise<void> {
  let blobsRefusedUntil = 0;
  return async (bytes, write) => {
    if (Date.now() >= blobsRefusedUntil) {
      try {
        await write(new Blob([bytes as Uint8Array<ArrayBuffer>]));
        return;
      } catch (e) {
        if (isQuotaExceeded(e)) throw e;
        blobsRefusedUntil = Date.now() + 30_000;
      }
    }
    await write(ownBuffer(bytes));
  };
}

/** Reads a stored value as bytes: a Blob or Uint8Array (what this store writes), or an ArrayBuffer. */
async function bytesOf(value: unknown, into?: Uint8Array): Promise<Uint8Array | undefined> {
  try {
    let bytes: Uint8Array;
    if (value instanceof Blob) {
      if (!into || into.byteLength < value.size) return new Uint8Array(await value.arrayBuffer());
      const end = await readStreamInto(value.stream(), into.subarray(0, value.size), 0);
      return end === value.size ? into.subarray(0, end) : undefined;
    } else if (value instanceof ArrayBuffer) bytes = new Uint8Array(value);
    else if (ArrayBuffer.isView(value)) bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    else return undefined;
    if (!into || into.byteLength < bytes.byteLength) return bytes;
    into.set(bytes);
    return into.subarray(0, bytes.byteLength);
  } catch {
    // A value whose backing file is gone (the browser evicted or lost it): as good as absent.
  }
  return undefined;
}

export interface IdbShardStoreOptions {
  /** Database name prefix (default "molm-web"): shards in `${name}-shards`, records in `${name}-models`. */
  name?: string;
}

/**
 * The browser's store: IndexedDB through idb-keyval. Shards are stored as Blobs keyed by their
 * sha256 (or Uint8Arrays where a Blob write fails: `blobWriter`), partial shards under
 * "partial:<sha256>" in the same object store, model records in a second database keyed by
 * manifest URL.
 */
export function idbShardStore(options: IdbShardStoreOptions = {}): ShardStore {
  const name = options.name ?? 'molm-web';
  const shards: UseStore = createStore(`${name}-shards`, 'shards');
  const models: UseStore = createStore(`${name}-models`, 'models');
  const writeBytes = blobWriter();
  const keyExists = (key: string) => shards('readonly', (s) => promisifyRequest(s.getKey(key))).then((k) => k !== undefined);
  return {
    persistent: true,
    has: keyExists,
    async get(sha256, into) {
      return bytesOf(await get(sha256, shards), into);
    },
    async put(sha256, bytes) {
      await writeBytes(bytes, (value) => set(sha256, value, shards));
    },
    delete: (sha256) => del(sha256, shards),
    async list() {
      return (await keys<string>(shards)).filter((k) => typeof k === 'string' && !k.startsWith(PARTIAL));
    },
    async getPartial(sha256) {
      const p = (await get<StoredPartial>(PARTIAL + sha256, shards)) ?? undefined;
      if (!p || typeof p.total !== 'number') return undefined;
      const bytes = await bytesOf(p.bytes);
      return bytes ? { sha256: p.sha256, total: p.total, bytes } : undefined;
    },
    async putPartial(p) {
      await writeBytes(p.bytes, (bytes) => set(PARTIAL + p.sha256, { sha256: p.sha256, total: p.total, bytes } satisfies StoredPartial, shards));
    },
    deletePartial: (sha256) => del(PARTIAL + sha256, shards),
    async listPartials() {
      return (await keys<string>(shards)).filter((k) => typeof k === 'string' && k.startsWith(PARTIAL)).map((k) => k.slice(PARTIAL.length));
    },
    getModel: (url) => get<ModelRecord>(url, models),
    putModel: (record) => set(record.url, record, models),
    deleteModel: (url) => del(url, models),
    listModels: () => values<ModelRecord>(models),
    async clear() {
      await clear(shards);
      await clear(models);
    },
  };
}

/** A store in memory, for Node and tests (nothing outlives the process). */
export function memoryShardStore(): ShardStore {
  const shards = new Map<string, Uint8Array>();
  const partials = new Map<string, PartialShard>();
  const models = new Map<string, ModelRecord>();
  const copy = (b: Uint8Array) => b.slice();
  return {
    persistent: false,
    has: async (k) => shards.has(k),
    get: async (k, into) => {
      const b = shards.get(k);
      if (!b) return undefined;
      if (!into || into.byteLength < b.byteLength) return copy(b);
      into.set(b);
      return into.subarray(0, b.byteLength);
    },
    put: async (k, b) => void shards.set(k, copy(b)),
    delete: async (k) => void shards.delete(k),
    list: async () => [...shards.keys()],
    getPartial: async (k) => {
      const p = partials.get(k);
      return p && { ...p, bytes: copy(p.bytes) };
    },
    putPartial: async (p) => void partials.set(p.sha256, { ...p, bytes: copy(p.bytes) }),
    deletePartial: async (k) => void partials.delete(k),
    listPartials: async () => [...partials.keys()],
    getModel: async (url) => {
      const r = models.get(url);
      return r && structuredClone(r);
    },
    putModel: async (r) => void models.set(r.url, structuredClone(r)),
    deleteModel: async (url) => void models.delete(url),
    listModels: async () => [...models.values()].map((r) => structuredClone(r)),
    clear: async () => {
      shards.clear();
      partials.clear();
      models.clear();
    },
  };
}

let defaultStore: ShardStore | undefined;

/** IndexedDB where there is one (browsers, workers), else one memory store per process. */
export function defaultShardStore(): ShardStore {
  defaultStore ??= typeof indexedDB !== 'undefined' ? idbShardStore() : memoryShardStore();
  return defaultStore;
}
