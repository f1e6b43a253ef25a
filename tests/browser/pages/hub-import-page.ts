import { createEngine, type EngineProgress, type GenerateOptions } from '../../../src/index.ts';
import type { ImportProgress } from '../../../src/shards/hub-store-import.ts';
import type { ConvertDtype } from '../../../src/shards/plan.ts';
import { listCachedModels } from '../../../src/store/model-cache.ts';
import { idbShardStore } from '../../../src/store/shard-store.ts';

// What tests/browser/hub-import.test.ts runs inside the page: createEngine with a hub id, as an
// application calls it (in the engine's Web Worker unless `worker: false`), the import's
// progress events as they came, and a look at what the page's IndexedDB holds.

export interface HubCreateRequest {
  model: string;
  hubUrl: string;
  /** Left out: the default (q4). */
  dtype?: ConvertDtype;
  worker?: boolean;
  /** Aborts the creation at the first import event whose writtenBytes reaches this. */
  abortAtWrittenBytes?: number;
  prompt: string;
  greedy: GenerateOptions;
}

export interface HubCreateResult {
  imports: ImportProgress[];
  /** The other progress events' types, in order, repeats dropped. */
  otherTypes: string[];
  error?: { name: string; message: string };
  text?: string;
  engineClass?: string;
  backend?: string;
  device?: string;
  seconds: number;
}

async function create(r: HubCreateRequest): Promise<HubCreateResult> {
  const imports: ImportProgress[] = [];
  const otherTypes: string[] = [];
  const stop = new AbortController();
  const onProgress = (e: EngineProgress) => {
    if (e.type === 'import') {
      imports.push(e);
      if (r.abortAtWrittenBytes !== undefined && e.writtenBytes >= r.abortAtWrittenBytes) stop.abort();
    } else if (otherTypes.at(-1) !== e.type) otherTypes.push(e.type);
  };
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  let engine: Awaited<ReturnType<typeof createEngine>>;
  try {
    engine = await createEngine({
      model: r.model,
      hubUrl: r.hubUrl,
      ...(r.dtype && { dtype: r.dtype }),
      backend: 'wasm',
      ...(r.worker !== undefined && { worker: r.worker }),
      onProgress,
      signal: stop.signal,
    });
  } catch (e) {
    return { imports, otherTypes, error: { name: (e as Error).name, message: (e as Error).message }, seconds: seconds() };
  }
  try {
    const { text } = await engine.complete(r.prompt, r.greedy);
    return { imports, otherTypes, text, engineClass: engine.constructor.name, backend: engine.backend, device: engine.device, seconds: seconds() };
  } finally {
    await engine.dispose();
  }
}

/** The cached models and the number of stored shards (and tokenizers) in the page's IndexedDB. */
async function cache() {
  return { models: await listCachedModels(), stored: (await idbShardStore().list()).length };
}

async function estimate() {
  const e = await navigator.storage.estimate();
  return { usage: e.usage ?? 0, quota: e.quota ?? 0 };
}

/** One sample of the page's JS heap (performance.memory, with --enable-precise-memory-info). */
const usedHeap = () => (performance as Performance & { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? Number.NaN;

/**
 * For tools/bench/hub-import-heap.mjs: createEngine({ worker: false }) on this page, so the
 * import runs on the page's thread and its heap is the page's. Samples usedJSHeapSize every few
 * milliseconds and at each progress event, split by phase: the import (until the first
 * non-import event, so the last shard's store is in it), then the load from IndexedDB. Times
 * are ms since the epoch, for matching samples taken over CDP.
 */
async function heapRun(r: HubCreateRequest & { sampleMs?: number; gcBetweenTensors?: boolean }) {
  const phases = { import: { peak: 0, samples: 0, start: Date.now(), end: 0 }, load: { peak: 0, samples: 0, start: 0, end: 0 } };
  let phase: 'import' | 'load' = 'import';
  /** The peak since the last import event: that of the tensor the next event names. */
  let tensorPeak = 0;
  /** Per tensor: the peak while it was read, converted and stored, and the heap after it (after a collection with gcBetweenTensors). */
  const tensors: { tensor: string; peak: number; after: number }[] = [];
  const sample = () => {
    const p = phases[phase];
    const used = usedHeap();
    p.peak = Math.max(p.peak, used);
    tensorPeak = Math.max(tensorPeak, used);
    p.samples++;
  };
  // With Chromium's --js-flags=--expose-gc: collect between tensors, so a peak is what the import holds, not garbage V8 has not collected yet.
  const gc = r.gcBetweenTensors ? (globalThis as unknown as { gc?: () => void }).gc : undefined;
  if (r.gcBetweenTensors && !gc) throw new Error('gcBetweenTensors needs Chromium launched with --js-flags=--expose-gc');
  const before = usedHeap();
  const timer = setInterval(sample, r.sampleMs ?? 5);
  let imports = 0;
  let last: ImportProgress | undefined;
  let firstTokenMs: number | null = null;
  try {
    const engine = await createEngine({
      model: r.model,
      hubUrl: r.hubUrl,
      ...(r.dtype && { dtype: r.dtype }),
      backend: 'wasm',
      worker: false,
      onProgress: (e) => {
        if (e.type === 'import') {
          imports++;
          last = e;
          sample();
          gc?.();
          tensors.push({ tensor: e.tensor, peak: tensorPeak, after: usedHeap() });
          tensorPeak = 0;
        } else if (phase === 'import') {
          sample();
          phases.import.end = Date.now();
          phase = 'load';
          phases.load.start = phases.import.end;
        }
        sample();
      },
    });
    phases.load.end = Date.now();
    clearInterval(timer);
    try {
      const t0 = performance.now();
      let text = '';
      const stream = engine.generate(r.prompt, r.greedy);
      for await (const piece of stream) {
        firstTokenMs ??= performance.now() - t0;
        text += piece;
      }
      return { before, phases, imports, last, tensors, text, firstTokenMs, usage: (await stream.result).usage, device: engine.device };
    } finally {
      await engine.dispose();
    }
  } catch (e) {
    return { before, phases, imports, last, tensors, error: { name: (e as Error).name, message: (e as Error).message } };
  } finally {
    clearInterval(timer);
  }
}

export const hubImportPage = { create, cache, estimate, heapRun };
