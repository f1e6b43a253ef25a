/// <reference lib="webworker" />
import { browserGpu } from '../gpu/browser-gpu.ts';
import { createLocalEngine } from './create.ts';
import type { LocalEngine } from './engine.ts';
import type { GenerationProgress } from './generation.ts';
import { serializeError, type FromWorker, type ToWorker } from './worker-protocol.ts';

// The engine's worker: the model, the tokenizer and every GPU call live here, so the page's
// thread only posts prompts and receives text. One engine per worker.

const scope = self as unknown as DedicatedWorkerGlobalScope;
const post = (m: FromWorker) => scope.postMessage(m);
let engine: LocalEngine | undefined;
const running = new Map<number, AbortController>();

async function generate({ id, prompt, options, progress }: Extract<ToWorker, { kind: 'generate' }>): Promise<void> {
  const abort = new AbortController();
  running.set(id, abort);
  try {
    const onProgress = progress ? (p: GenerationProgress) => post({ kind: 'tokens', id, progress: p }) : undefined;
    const stream = engine!.generate(prompt, { ...options, signal: abort.signal, onProgress });
    for await (const text of stream) post({ kind: 'chunk', id, text });
    post({ kind: 'result', id, result: await stream.result });
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
        post({ kind: 'ready', config: engine.config, maxContext: engine.maxContext, device: engine.device, backend: engine.backend });
        return;
      }
      case 'generate':
        return await generate(m);
      case 'abort':
        running.get(m.id)?.abort();
        return;
      case 'encode':
        return post({ kind: 'value', id: m.id, value: await engine!.encode(m.text) });
      case 'decode':
        return post({ kind: 'value', id: m.id, value: await engine!.decode(m.ids) });
      case 'reset':
        await engine!.reset();
        return post({ kind: 'value', id: m.id, value: null });
      case 'dispose':
        await engine?.dispose();
        engine = undefined;
        return post({ kind: 'value', id: m.id, value: null });
    }
  } catch (e) {
    post({ kind: 'error', id: 'id' in m ? m.id : undefined, error: serializeError(e) });
  }
};
