import type { ModelConfig } from '../config.ts';
import { AbortError, UsageError } from '../errors.ts';
import { ChatCompletions } from './chat.ts';
import type { CreateEngineOptions } from './create.ts';
import { isHubId, isUrl } from './model-url.ts';
import type { PackRange } from '../packs/pack-shapes.ts';
import { runToEnd, type Engine, type EngineBackend, type TextStream } from './api.ts';
import type { GenerateOptions, GenerationProgress, GenerationResult } from './generation.ts';
import { deserializeError, type FromWorker, type Replies, type RequestKind, type ToWorker, type WorkerCreateOptions } from './worker-protocol.ts';

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
/** The request of kind K, as the page sends it (the id is added by `call`). */
type Request<K extends RequestKind> = WithoutId<Extract<ToWorker, { kind: K }>>;

interface Pending<K extends RequestKind = RequestKind> {
  request: K;
  onChunk?: (text: string) => void;
  onProgress?: (p: GenerationProgress) => void;
  // A method, so that a Pending of one kind is a Pending of any (its replies are matched by kind in receive).
  resolve(value: Replies[K]): void;
  reject: (e: Error) => void;
}

/**
 * The Engine API on the page, with the engine itself in a dedicated Web Worker (worker.ts): the
 * page's thread never waits on the GPU or the tokenizer. Generations queue in the worker, one
 * at a time, exactly as on a LocalEngine.
 */
export class WorkerEngine implements Engine {
  readonly chat: Engine['chat'];
  private nextId = 1;
  /** Requests waiting for their reply; each entry's `resolve` takes its kind's reply. */
  private readonly pending = new Map<number, Pending>();

  private state: Replies['setPacks'];

  private constructor(
    private readonly worker: Worker,
    config: ModelConfig,
    packs: PackRange[],
    readonly maxContext: number,
    readonly device: string,
    readonly backend: EngineBackend,
    chatTemplate: string | undefined,
    modelName: string | undefined,
  ) {
    this.state = { config, packs };
    this.chat = { completions: new ChatCompletions(this, { template: chatTemplate, modelName }) };
    worker.onmessage = (ev: MessageEvent<FromWorker>) => this.receive(ev.data);
    worker.onerror = (ev) => this.failAll(new Error(`The engine worker failed: ${ev.message}`));
  }

  static async create(options: CreateEngineOptions, worker: Worker): Promise<WorkerEngine> {
    const { onProgress, signal, gpu: _gpu, store, worker: _w, ...rest } = options;
    if (store) throw new UsageError('A custom `store` cannot cross into the worker: pass { worker: false } to use it.');
    // Resolve a relative model URL against the page, not the worker script.
    const absolute = (u: string) => (isUrl(u) ? u : new URL(u, location.href).toString());
    const createOptions: WorkerCreateOptions = {
      ...rest,
      model: isHubId(rest.model) ? rest.model : absolute(rest.model),
      ...(rest.packs && { packs: rest.packs.map(absolute) }),
    };
    return new Promise<WorkerEngine>((resolve, reject) => {
      const onAbort = () => {
        worker.terminate();
        reject(new AbortError('Loading the model was aborted.'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      worker.onmessage = (ev: MessageEvent<FromWorker>) => {
        const m = ev.data;
        if (m.kind === 'progress') onProgress?.(m.event);
        else if (m.kind === 'ready') {
          signal?.removeEventListener('abort', onAbort);
          resolve(new WorkerEngine(worker, m.config, m.packs, m.maxContext, m.device, m.backend, rest.chatTemplate, rest.modelName));
        } else if (m.kind === 'error') {
          signal?.removeEventListener('abort', onAbort);
          worker.terminate();
          reject(deserializeError(m.error));
        }
      };
      worker.onerror = (ev) => {
        worker.terminate();
        reject(new Error(`The engine worker could not start: ${ev.message}`));
      };
      worker.postMessage({ kind: 'create', options: createOptions } satisfies ToWorker);
    });
  }

  private receive(m: FromWorker): void {
    if (m.kind === 'progress' || m.kind === 'ready') return;
    if (m.kind === 'error' && m.state) this.state = m.state;
    if (m.kind === 'reply' && m.request === 'setPacks') this.state = m.value;
    const p = m.id === undefined ? undefined : this.pending.get(m.id);
    if (!p) return;
    if (m.kind === 'chunk') p.onChunk?.(m.text);
    else if (m.kind === 'tokens') p.onProgress?.(m.progress);
    else {
      this.pending.delete(m.id!);
      if (m.kind === 'error') p.reject(deserializeError(m.error));
      else if (m.request !== p.request) p.reject(new Error(`The engine worker answered a ${p.request} request with a ${m.request} reply.`));
      else p.resolve(m.value);
    }
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private call<K extends RequestKind>(
    message: Request<K> & { kind: K },
    listeners: Pick<Pending, 'onChunk' | 'onProgress'> = {},
  ): { id: number; done: Promise<Replies[K]> } {
    const id = this.nextId++;
    const done = new Promise<Replies[K]>((resolve, reject) => {
      const entry: Pending<K> = { request: message.kind, ...listeners, resolve, reject };
      this.pending.set(id, entry);
    });
    this.worker.postMessage({ ...message, id } as ToWorker);
    return { id, done };
  }

  generate(prompt: string, options: GenerateOptions = {}): TextStream {
    const { signal, onProgress, ...rest } = options;
    // Pieces arrive as messages; the iterator hands them out in order.
    const queue: string[] = [];
    let wake: (() => void) | undefined;
    let finished = false;
    const onChunk = (text: string) => {
      queue.push(text);
      wake?.();
    };
    const { id, done } = this.call({ kind: 'generate', prompt, options: rest, progress: !!onProgress }, { onChunk, onProgress });
    const result = done.finally(() => {
      finished = true;
      wake?.();
    });
    result.catch(() => {});
    const onAbort = () => this.worker.postMessage({ kind: 'abort', id } satisfies ToWorker);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    result.finally(() => signal?.removeEventListener('abort', onAbort)).catch(() => {});
    let started = false;
    const worker = this.worker;
    return {
      result,
      [Symbol.asyncIterator]: () => {
        if (started) throw new UsageError('A TextStream can be iterated once.');
        started = true;
        return (async function* () {
          try {
            for (;;) {
              if (queue.length) {
                yield queue.shift()!;
                // The reader took a piece: the worker may post one more (CHUNK_WINDOW).
                if (!finished) worker.postMessage({ kind: 'pull', id, pieces: 1 } satisfies ToWorker);
                continue;
              }
              if (finished) break;
              await new Promise<void>((r) => (wake = r));
              wake = undefined;
            }
            await result; // rethrows the worker's error
          } finally {
            if (!finished) onAbort(); // the caller stopped iterating
          }
        })();
      },
    };
  }

  complete(prompt: string, options: GenerateOptions = {}): Promise<GenerationResult> {
    return runToEnd(this.generate(prompt, options));
  }

  encode(text: string): Promise<number[]> {
    return this.call({ kind: 'encode', text }).done;
  }

  decode(ids: readonly number[]): Promise<string> {
    return this.call({ kind: 'decode', ids: [...ids] }).done;
  }

  async reset(): Promise<void> {
    await this.call({ kind: 'reset' }).done;
  }

  get config(): ModelConfig {
    return this.state.config;
  }

  get packs(): readonly PackRange[] {
    return this.state.packs;
  }

  async setPacks(packs: readonly string[]): Promise<void> {
    if (!Array.isArray(packs) || !packs.every((p) => typeof p === 'string' && p !== '')) {
      throw new UsageError('setPacks takes an array of pack URLs.');
    }
    // Resolved against the page, not the worker script.
    const urls = packs.map((p) => (isUrl(p) ? p : new URL(p, location.href).toString()));
    await this.call({ kind: 'setPacks', packs: urls }).done;
  }

  async dispose(): Promise<void> {
    try {
      await this.call({ kind: 'dispose' }).done;
    } finally {
      this.worker.terminate();
      this.failAll(new UsageError('The engine was disposed.'));
    }
  }
}
