/// <reference lib="webworker" />
import { browserGpu } from '../gpu/browser-gpu.ts';
import { createLocalEngine } from './create.ts';
import type { LocalEngine } from './engine.ts';
import type { GenerationProgress } from './generation.ts';
import { CHUNK_WINDOW, serializeError, type FromWorker, type Replies, type Reply, type RequestKind, type ToWorker } from './worker-protocol.ts';

// The engine's worker: the model, the tokenizer and every GPU call live here, so the page's
// thread only posts prompts and receives text. One engine per worker.

const scope = self as unknown as DedicatedWorkerGlobalScope;
const post = (m: FromWorker) => scope.postMessage(m);
/** The reply to request `id`, typed by its kind (TypeScript cannot tie `request` to `value` in one literal). */
function reply<K extends RequestKind>(id: number, request: K, value: Replies[K]): void {
  post({ kind: 'reply', id, request, value } as Reply);
}
let engine: LocalEngine | undefined;

/** A generation in flight: its abort, and the pieces the page is ready to take. */
interface Running {
  abort: AbortController;
  credit: number;
  /** Wakes the generation waiting for credit (or for its abort). */
  wake?: () => void;
}
const running = new Map<number, Running>();

async function generate({ id, prompt, options, progress }: Extract<ToWorker, { kind: 'generate' }>): Promise<void> {
  const run: Running = { abort: new AbortController(), credit: CHUNK_WINDOW };
  running.set(id, run);
  try {
    const onProgress = progress ? (p: GenerationProgress) => post({ kind: 'tokens', id, progress: p }) : undefined;
    const stream = engine!.generate(prompt, { ...options, signal: run.abort.signal, onProgress });
    for await (const text of stream) {
      // Back-pressure: the next token is not computed until the page has room for this piece.
      while (run.credit === 0 && !run.abort.signal.aborted) await new Promise<void>((r) => (run.wake = r));
      run.credit--;
      post({ kind: 'chunk', id, text });
    }
    reply(id, 'generate', await stream.result);
  } finally {
    running.delete(id);
  }
}

scope.onmessage = async (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  try {
    switch (m.kind) {
      case 'create': {
        engine = await createLocalEngine({ ...m.options, onProgress: (event) => post({ kind: 'progress', event }) }, { gpu: browserGpu });
        post({ kind: 'ready', config: engine.config, maxContext: engine.maxContext, device: engine.device, backend: engine.backend, packs: [...engine.packs] });
        return;
      }
      case 'generate':
        return await generate(m);
      case 'pull': {
        const run = running.get(m.id);
        if (run) {
          run.credit += m.pieces;
          run.wake?.();
        }
        return;
      }
      case 'abort': {
        const run = running.get(m.id);
        run?.abort.abort();
        run?.wake?.();
        return;
      }
      case 'encode':
        return reply(m.id, 'encode', await engine!.encode(m.text));
      case 'decode':
        return reply(m.id, 'decode', await engine!.decode(m.ids));
      case 'reset':
        await engine!.reset();
        return reply(m.id, 'reset', null);
      case 'setPacks': {
        try {
          await engine!.setPacks(m.packs);
        } catch (e) {
          // The engine may now run other packs (the previous ones, restored): the page learns of them with the error.
          post({ kind: 'error', id: m.id, error: serializeError(e), state: { config: engine!.config, packs: [...engine!.packs] } });
          return;
        }
        return reply(m.id, 'setPacks', { config: engine!.config, packs: [...engine!.packs] });
      }
      case 'dispose':
        await engine?.dispose();
        engine = undefined;
        return reply(m.id, 'dispose', null);
    }
  } catch (e) {
    post({ kind: 'error', id: 'id' in m ? m.id : undefined, error: serializeError(e) });
  }
};
