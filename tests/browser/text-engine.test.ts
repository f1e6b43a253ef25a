import { describe, expect, it } from 'vitest';
import { createEngine } from '../../src/node.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { CHUNK_WINDOW } from '../../src/engine/worker-protocol.ts';
import { useBrowser, watchPage } from './harness.ts';

const env = useBrowser();

const PROMPT = 'The committee said that';
const GREEDY = { maxNewTokens: 12, temperature: 0 };
const SAMPLED = { maxNewTokens: 16, temperature: 0.8, topK: 40, topP: 0.95, seed: 1234 };

// Each backend by name (on SwiftShader, 'auto' would pick wasm): WebGPU's kernels, and the
// WebAssembly engine with its compute threads (the Vite server's pages are cross-origin isolated).
describe('createEngine in headless Chromium: the worker round trip', () => {
  it.each(['webgpu', 'wasm'] as const)('%s: generates in a Web Worker: streamed text, abort, seeds, chat and errors cross the boundary', async (backend) => {
    const page = await env.browser.newPage();
    const problems = watchPage(page);
    await page.goto(`${env.base}/tests/browser/pages/text-engine.html`);
    await page.waitForFunction(() => document.getElementById('out')?.textContent === 'ready');
    const r = await page.evaluate(
      ([url, prompt, greedy, sampled, backend]) => (window as unknown as { textEngineCheck: Function }).textEngineCheck(url, prompt, greedy, sampled, backend),
      [`${env.base}/${BUILT_IN_MODEL.url}`, PROMPT, GREEDY, SAMPLED, backend] as const,
    );
    expect(problems).toEqual([]);
    expect(r.engineClass).toBe('WorkerEngine');
    expect(r.pageAdapterRequests, 'the page thread never touches WebGPU').toBe(0);
    expect(r.backend).toBe(backend);
    if (backend === 'webgpu') expect(r.device).toMatch(/swiftshader/i);
    else expect(r.device).toMatch(/^WebAssembly SIMD, \d+ threads?$/);
    expect(r.progress).toEqual(expect.arrayContaining(['initiate', 'upload', 'ready']));

    // The same greedy continuation as the engine in Node (Dawn or Node's wasm), an independent host of the same model.
    const node = await createEngine({ model: BUILT_IN_MODEL.dir, backend });
    try {
      const want = await node.complete(PROMPT, GREEDY);
      expect(r.greedy.text).toBe(want.text);
    } finally {
      await node.dispose();
    }
    expect(r.greedy.usage.completionTokens).toBeGreaterThan(0);

    // Streamed pieces make the text; the same seed gives the same text after an abort.
    expect(r.sampled.pieces.join('')).toBe(r.sampled.text);
    expect(r.again.text).toBe(r.sampled.text);
    expect(r.aborted.finishReason).toBe('abort');
    // The abort reaches the worker between two tokens; a piece already posted still arrives.
    expect(r.aborted.pieces.length).toBeLessThanOrEqual(3);
    expect(r.aborted.usage.completionTokens).toBeLessThan(SAMPLED.maxNewTokens);
    expect(r.aborted.pieces.join('')).toBe(r.aborted.text);
    expect(r.sampled.text.startsWith(r.aborted.text)).toBe(true);

    // Pulled pieces: while the page's reader paused after one piece, the worker generated at most
    // that piece, the window of CHUNK_WINDOW more and the one it was computing (48 were asked for).
    expect(r.slow.generatedWhilePaused).toBeGreaterThan(0);
    expect(r.slow.generatedWhilePaused).toBeLessThanOrEqual(1 + CHUNK_WINDOW + 2);
    expect(r.slow.usage.completionTokens, 'the generation went on past the window once the reader resumed').toBeGreaterThan(1 + CHUNK_WINDOW + 2);
    expect(r.slow.pieces.join('')).toBe(r.slow.text);
    // Errors cross the worker with their class and cause.
    expect(r.crossed).toMatchObject({ name: 'MolmError', isMolmError: true });
    expect(r.crossed!.cause).toMatch(/^TypeError: /);

    expect(r.chat.object).toBe('chat.completion');
    expect(r.chat.usage.completion_tokens).toBeGreaterThan(0);
    expect(r.error).toMatch(/^ContextLengthError: .*contextOverflow/);
    await page.close();
  });
});
