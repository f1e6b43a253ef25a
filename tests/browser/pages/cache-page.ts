import { createStore, get, set } from 'idb-keyval';
import { GREEDY } from '../../../src/token-model.ts';
import { loadModel } from '../../../src/model/load.ts';
import type { LoadProgress } from '../../../src/shards/load-model.ts';
import { clearCache, deleteCachedModel, listCachedModels } from '../../../src/store/model-cache.ts';
import { idbShardStore, type ShardStore } from '../../../src/store/shard-store.ts';

// What the cache tests run inside the page: loads through the real IndexedDB store, and ways to
// damage it (tamper with a stored shard, a store whose writes hit the quota, a small estimate).

export interface LoadRequest {
  url: string;
  /** Prompt for the logits and greedy tokens (none: only load). */
  ids?: number[];
  newTokens?: number;
  /** The store's put throws QuotaExceededError after this many successful puts. */
  failPutAfter?: number;
  /** Abort once this many shard bytes were received from the network. */
  abortAfterBytes?: number;
  retries?: number;
  backoffMs?: number;
  concurrency?: number;
  /** Keep 'progress' events in the result (default true; the memory benchmark drops them). */
  keepProgress?: boolean;
}

export interface LoadResult {
  events: LoadProgress[];
  error?: { name: string; message: string };
  adapter?: string;
  logits?: number[];
  tokens?: number[];
}

const store = idbShardStore();

function quotaFullStore(base: ShardStore, okPuts: number): ShardStore {
  let puts = 0;
  return {
    ...base,
    async put(key, bytes) {
      if (puts++ >= okPuts) throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      return base.put(key, bytes);
    },
  };
}

export const cachePage = {
  async load(r: LoadRequest): Promise<LoadResult> {
    const events: LoadProgress[] = [];
    const controller = new AbortController();
    try {
      const model = await loadModel(r.url, {
        maxContext: 64,
        store: r.failPutAfter === undefined ? store : quotaFullStore(store, r.failPutAfter),
        signal: controller.signal,
        retries: r.retries,
        backoffMs: r.backoffMs ?? 20,
        concurrency: r.concurrency,
        onProgress: (e) => {
          if (e.type !== 'progress' || r.keepProgress !== false) events.push(e);
          if (r.abortAfterBytes !== undefined && e.type === 'progress' && e.overallLoaded >= r.abortAfterBytes) controller.abort();
        },
      });
      try {
        const out: LoadResult = { events, adapter: model.ctx.description };
        if (r.ids) {
          out.logits = Array.from(await model.prefillLogits(r.ids));
          model.reset();
          out.tokens = [];
          for await (const id of model.generate(r.ids, r.newTokens ?? 8, GREEDY)) out.tokens.push(id);
        }
        return out;
      } finally {
        model.destroy();
      }
    } catch (e) {
      return { events, error: { name: (e as Error).name, message: (e as Error).message } };
    }
  },

  list: () => listCachedModels({ store }),
  delete: (url: string) => deleteCachedModel(url, { store }),
  clear: () => clearCache({ store }),

  /** Keys of the stored shards, and the partial downloads with their sizes. */
  async stored(): Promise<{ shards: string[]; partials: { sha256: string; bytes: number; total: number }[] }> {
    const partials = [];
    for (const k of await store.listPartials()) {
      const p = await store.getPartial(k);
      if (p) partials.push({ sha256: p.sha256, bytes: p.bytes.byteLength, total: p.total });
    }
    return { shards: (await store.list()).sort(), partials };
  },

  /** Changes one byte of a stored shard behind the loader's back (straight through IndexedDB). */
  async tamper(sha256: string): Promise<void> {
    const raw = createStore('molm-web-shards', 'shards');
    const value = await get<Uint8Array | Blob>(sha256, raw);
    if (!value) throw new Error(`no stored shard ${sha256}`);
    const bytes = value instanceof Blob ? new Uint8Array(await value.arrayBuffer()) : new Uint8Array(value);
    bytes[bytes.length >> 1] ^= 0xff;
    await set(sha256, value instanceof Blob ? new Blob([bytes]) : bytes, raw);
  },

  /** Rewrites a stored shard as a Uint8Array, the form the store falls back to when a Blob write fails. */
  async storeAsArray(sha256: string): Promise<void> {
    const raw = createStore('molm-web-shards', 'shards');
    const value = await get<Uint8Array | Blob>(sha256, raw);
    if (!(value instanceof Blob)) throw new Error(`shard ${sha256} is not stored as a Blob`);
    await set(sha256, new Uint8Array(await value.arrayBuffer()), raw);
  },

  /** Makes navigator.storage.estimate() offer `bytes` (null: the browser's own answer again). */
  fakeQuota(bytes: number | null): void {
    const storage = navigator.storage as StorageManager & { estimate: StorageManager['estimate'] };
    if (bytes === null) delete (storage as { estimate?: unknown }).estimate;
    else storage.estimate = async () => ({ quota: bytes, usage: 0 });
  },
};
