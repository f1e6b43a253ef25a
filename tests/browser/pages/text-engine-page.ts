import { MolmError, createEngine, type GenerateOptions } from '../../../src/index.ts';
import type { BackendChoice } from '../../../src/engine/backend.ts';

/**
 * createEngine on a page: the engine runs in a Web Worker. Counts the page's own WebGPU adapter
 * requests (there must be none: the GPU work is the worker's) and exercises streaming, abort
 * and a repeated seed across the worker boundary, on the backend asked for.
 */
export async function runTextEngineCheck(modelUrl: string, prompt: string, greedy: GenerateOptions, sampled: GenerateOptions, backend: BackendChoice) {
  let pageAdapterRequests = 0;
  const gpu = navigator.gpu;
  const original = gpu.requestAdapter.bind(gpu);
  gpu.requestAdapter = (o?: GPURequestAdapterOptions) => {
    pageAdapterRequests++;
    return original(o);
  };
  const progress: string[] = [];
  const engine = await createEngine({ model: modelUrl, backend, onProgress: (e) => progress.push(e.type) });
  try {
    const greedyResult = await engine.complete(prompt, greedy);
    const pieces: string[] = [];
    const first = engine.generate(prompt, sampled);
    for await (const t of first) pieces.push(t);
    const sampledResult = await first.result;

    // Abort across the worker boundary after the first piece.
    const abort = new AbortController();
    const aborted = engine.generate(prompt, { ...sampled, signal: abort.signal });
    const abortedPieces: string[] = [];
    for await (const t of aborted) {
      abortedPieces.push(t);
      abort.abort();
    }
    const abortedResult = await aborted.result;
    const again = await engine.complete(prompt, sampled);

    // Back-pressure: a reader that stops after its first piece holds the worker's generation
    // back to the pieces the page has room for (CHUNK_WINDOW), however long it waits.
    let generated = 0;
    const slow = engine.generate(prompt, { ...sampled, maxNewTokens: 48, onProgress: (p) => (generated = p.completionTokens) });
    const slowPieces: string[] = [];
    let generatedWhilePaused = -1;
    for await (const t of slow) {
      slowPieces.push(t);
      if (slowPieces.length === 1) {
        await new Promise((r) => setTimeout(r, 2000));
        generatedWhilePaused = generated;
      }
    }
    const slowResult = await slow.result;

    // An error from the worker keeps its class and its cause (here: the fetch's own TypeError).
    let crossed: { name: string; isMolmError: boolean; cause: string } | null = null;
    try {
      await createEngine({ model: 'http://127.0.0.1:9/no-model/', backend });
    } catch (e) {
      const c = (e as Error).cause as Error | undefined;
      crossed = { name: (e as Error).name, isMolmError: e instanceof MolmError, cause: c ? `${c.name}: ${c.message}` : '' };
    }

    const chat = await engine.chat.completions.create({ messages: [{ role: 'user', content: prompt }], max_tokens: 8, seed: 3 });
    let error = '';
    try {
      await engine.complete('word '.repeat(engine.maxContext + 10), { maxNewTokens: 4 });
    } catch (e) {
      error = `${(e as Error).name}: ${(e as Error).message}`;
    }
    return {
      engineClass: engine.constructor.name,
      device: engine.device,
      backend: engine.backend,
      pageAdapterRequests,
      progress: [...new Set(progress)],
      greedy: greedyResult,
      sampled: { ...sampledResult, pieces },
      aborted: { ...abortedResult, pieces: abortedPieces },
      again,
      slow: { ...slowResult, pieces: slowPieces, generatedWhilePaused },
      crossed,
      chat,
      error,
    };
  } finally {
    await engine.dispose();
  }
}
