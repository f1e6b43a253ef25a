import { createStore, del, set } from 'idb-keyval';
import { createEngine, type Engine, type GenerateOptions } from '../../../src/index.ts';
import { GREEDY } from '../../../src/token-model.ts';
import { loadModel } from '../../../src/model/load.ts';
import type { LoadProgress } from '../../../src/shards/load-model.ts';
import { listCachedModels } from '../../../src/store/model-cache.ts';
import { idbShardStore, type ShardStore } from '../../../src/store/shard-store.ts';

// What the fault tests (tests/browser/faults.test.ts) run inside the page: loads through the
// real IndexedDB store that report their events to the test as they happen (so it can break
// something at a chosen moment), and engines created the way an application creates them.

export interface FaultLoadRequest {
  url: string;
  /** Prompt for the logits and greedy tokens (none: only load). */
  ids?: number[];
  newTokens?: number;
  retries?: number;
  backoffMs?: number;
  concurrency?: number;
  /**
   * Before this load's shard put number `fill.beforePut` (0: the first), something else of the
   * page's origin fills its storage up to `fill.leave` bytes under `fill.quota` (the quota the
   * test gave the origin): the loader's next write meets a full disk.
   */
  fill?: { beforePut: number; quota: number; leave: number };
  /**
   * The first shard write of this load is held in flight (queued behind another writer's
   * transaction on the same store) and reported to the test's `reportWriteInFlight` binding,
   * which closes the tab: the load never returns.
   */
  holdFirstWrite?: boolean;
}

export interface FaultLoadResult {
  events: LoadProgress[];
  error?: { name: string; message: string };
  logits?: number[];
  tokens?: number[];
}

type Reporter = (e: LoadProgress) => Promise<void>;

const store = idbShardStore();
/** Another database of the same origin, standing for whatever else fills the disk. */
const filler = createStore('faults-filler', 'filler');

/**
 * Starts a read-write transaction on the shard store, kept busy with one request after another
 * (as another tab writing would keep it): later writes to the store wait behind it. Resolves
 * once it runs.
 */
function occupyShardStore(): Promise<void> {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open('molm-web-shards');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction('shards', 'readwrite');
      const shards = tx.objectStore('shards');
      const busy = () => {
        shards.count().onsuccess = busy;
      };
      shards.count().onsuccess = () => {
        busy();
        resolve();
      };
    };
  });
}

/** The real store, whose first write stays in flight while the test closes the tab. */
function heldStore(base: ShardStore): ShardStore {
  let held = false;
  return {
    ...base,
    async put(key, bytes) {
      if (held) return base.put(key, bytes);
      held = true;
      await occupyShardStore();
      const write = base.put(key, bytes);
      // A macrotask later the write's transaction exists and waits behind the other one.
      await new Promise((r) => setTimeout(r, 0));
      await (window as unknown as { reportWriteInFlight: (sha256: string) => Promise<void> }).reportWriteInFlight(key);
      return write;
    },
  };
}

/** The real store, whose `beforePut`-th write is preceded by the origin's storage filling up. */
function fillingStore(base: ShardStore, fill: NonNullable<FaultLoadRequest['fill']>): ShardStore {
  let puts = 0;
  return {
    ...base,
    async put(key, bytes) {
      if (puts++ === fill.beforePut) {
        const { usage = 0 } = await navigator.storage.estimate();
        await set('filler', new Blob([new Uint8Array(Math.max(0, fill.quota - usage - fill.leave))]), filler);
      }
      return base.put(key, bytes);
    },
  };
}
const engines = new Map<string, Engine>();

/** The binding the test exposes to hear of upload events as they happen (absent: nobody listens). */
const report = (e: LoadProgress) => (window as unknown as { reportLoadEvent?: Reporter }).reportLoadEvent?.(e);

const errorOf = (e: unknown) => ({ name: (e as Error).name, message: (e as Error).message });

export const faultsPage = {
  async load(r: FaultLoadRequest): Promise<FaultLoadResult> {
    const events: LoadProgress[] = [];
    try {
      const model = await loadModel(r.url, {
        maxContext: 64,
        store: r.fill ? fillingStore(store, r.fill) : r.holdFirstWrite ? heldStore(store) : store,
        retries: r.retries,
        backoffMs: r.backoffMs ?? 1,
        concurrency: r.concurrency,
        onProgress: (e) => {
          if (e.type !== 'progress') events.push(e);
          if (e.type === 'upload') void report(e);
        },
      });
      try {
        const out: FaultLoadResult = { events };
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
      return { events, error: errorOf(e) };
    }
  },

  list: () => listCachedModels({ store }),

  /** Frees what `fill` took. */
  // The whole filler database goes: a deleted entry's bytes stay counted until Chromium compacts
  // the database, a deleted database's at once.
  async freeSpace(): Promise<void> {
    await del('filler', filler);
    await new Promise<void>((resolve, reject) => {
      const r = indexedDB.deleteDatabase('faults-filler');
      r.onsuccess = () => resolve();
      r.onerror = () => reject(r.error);
      r.onblocked = () => resolve();
    });
  },

  /** Keys of the stored shards, and the partial downloads with their sizes. */
  async stored(): Promise<{ shards: string[]; partials: { sha256: string; bytes: number; total: number }[] }> {
    const partials = [];
    for (const k of await store.listPartials()) {
      const p = await store.getPartial(k);
      if (p) partials.push({ sha256: p.sha256, bytes: p.bytes.byteLength, total: p.total });
    }
    return { shards: (await store.list()).sort(), partials };
  },

  /** createEngine as an application calls it (in a worker unless `worker` is false), on WebGPU. */
  async createEngine(name: string, url: string, worker: boolean): Promise<{ backend: string; device: string; error?: { name: string; message: string } }> {
    try {
      const engine = await createEngine({ model: url, backend: 'webgpu', worker, maxContext: 128 });
      engines.set(name, engine);
      return { backend: engine.backend, device: engine.device };
    } catch (e) {
      return { backend: '', device: '', error: errorOf(e) };
    }
  },

  /**
   * A generation of `name`'s engine, streamed to its end: the text, the tokens counted by
   * onProgress, and the error it ended with (if any). The prompt is given as ids (decoded by
   * the engine's own tokenizer), with the ids it encodes back to.
   */
  async generate(name: string, ids: number[], options: GenerateOptions) {
    const engine = engines.get(name)!;
    const prompt = await engine.decode(ids);
    const encoded = await engine.encode(prompt);
    let tokens = 0;
    let text = '';
    try {
      const stream = engine.generate(prompt, { ...options, onProgress: (p) => (tokens = p.completionTokens) });
      for await (const piece of stream) text += piece;
      const result = await stream.result;
      return { encoded, tokens, text, finishReason: result.finishReason, completionTokens: result.usage.completionTokens };
    } catch (e) {
      return { encoded, tokens, text, error: errorOf(e) };
    }
  },

  decode: (name: string, ids: number[]) => engines.get(name)!.decode(ids),

  async dispose(name: string): Promise<{ error?: { name: string; message: string } }> {
    const engine = engines.get(name);
    engines.delete(name);
    try {
      await engine?.dispose();
      return {};
    } catch (e) {
      return { error: errorOf(e) };
    }
  },
};
