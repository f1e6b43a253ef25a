import { UsageError } from '../errors.ts';
import { MANIFEST_FILE } from '../manifest.ts';
import { defaultShardStore, type ModelRecord, type ShardStore } from './shard-store.ts';

// The cache as the page sees it: which models are stored, and removing them. A model is known
// by its manifest URL; its shards are shared with any other model that lists the same sha256.

/**
 * The absolute URL of a model's manifest: `url` may name manifest.json (any *.json) or the folder
 * that holds it, and may be relative to the page.
 */
export function manifestUrlOf(url: string): string {
  let u: URL;
  try {
    u = new URL(url, (globalThis as { location?: { href: string } }).location?.href);
  } catch {
    throw new UsageError(`"${url}" is not a URL; give the address of a converted model's ${MANIFEST_FILE} or of its folder.`);
  }
  if (!u.pathname.endsWith('.json')) {
    if (!u.pathname.endsWith('/')) u.pathname += '/';
    u.pathname += MANIFEST_FILE;
  }
  return u.toString();
}

export interface CachedModel {
  /** The manifest URL the model was loaded from. */
  url: string;
  /** Bytes of all its shards. */
  bytes: number;
  /** Bytes of its shards that are in the cache now. */
  cachedBytes: number;
  /** Every shard is cached and verified: the model loads without the network. */
  complete: boolean;
  /** When it was last loaded (ms since the epoch). */
  lastUsed: number;
}

export interface CacheOptions {
  /** Default: IndexedDB in a browser, one memory store per process elsewhere. */
  store?: ShardStore;
}

/** Bytes of a record's shards that are in the store (each distinct shard counted once). */
async function cachedBytesOf(store: ShardStore, record: ModelRecord): Promise<number> {
  const seen = new Set<string>();
  let bytes = 0;
  for (const s of record.manifest.shards) {
    if (seen.has(s.sha256)) continue;
    seen.add(s.sha256);
    if (await store.has(s.sha256)) bytes += s.bytes;
  }
  return bytes;
}

/** The models in the cache, most recently used first. */
export async function listCachedModels(options: CacheOptions = {}): Promise<CachedModel[]> {
  const store = options.store ?? defaultShardStore();
  const out: CachedModel[] = [];
  for (const r of await store.listModels()) {
    const cachedBytes = await cachedBytesOf(store, r);
    out.push({ url: r.url, bytes: r.totalBytes, cachedBytes, complete: r.complete && cachedBytes === r.totalBytes, lastUsed: r.lastUsed });
  }
  return out.sort((a, b) => b.lastUsed - a.lastUsed);
}

/** The store keys a model record holds on to: its shards and its tokenizer. */
function storedFilesOf(r: ModelRecord): string[] {
  return r.tokenizer ? [...r.shards, r.tokenizer] : r.shards;
}

/**
 * Deletes the shards of `records` (and their partial downloads) that no model outside `records`
 * still lists.
 */
export async function deleteUnsharedShards(store: ShardStore, shards: Iterable<string>, keepFor: (r: ModelRecord) => boolean): Promise<void> {
  const kept = new Set<string>();
  for (const r of await store.listModels()) if (keepFor(r)) for (const h of storedFilesOf(r)) kept.add(h);
  for (const h of new Set(shards)) {
    if (kept.has(h)) continue;
    await store.delete(h);
    await store.deletePartial(h);
  }
}

/**
 * Deletes every stored shard and partial shard that no model record lists: the shards of a
 * model's earlier version, or of a download whose record was replaced.
 */
export async function deleteUnlistedShards(store: ShardStore): Promise<void> {
  const listed = new Set<string>();
  for (const r of await store.listModels()) for (const h of storedFilesOf(r)) listed.add(h);
  for (const h of await store.list()) if (!listed.has(h)) await store.delete(h);
  for (const h of await store.listPartials()) if (!listed.has(h)) await store.deletePartial(h);
}

/**
 * Removes a model from the cache: its record and every shard that no other cached model uses.
 * Resolves to false when the model was not cached.
 */
export async function deleteCachedModel(url: string, options: CacheOptions = {}): Promise<boolean> {
  const store = options.store ?? defaultShardStore();
  const key = manifestUrlOf(url);
  const record = await store.getModel(key);
  if (!record) return false;
  await deleteUnsharedShards(store, storedFilesOf(record), (r) => r.url !== key);
  await store.deleteModel(key);
  return true;
}

/** Removes every cached model, shard and partial download. */
export async function clearCache(options: CacheOptions = {}): Promise<void> {
  await (options.store ?? defaultShardStore()).clear();
}
