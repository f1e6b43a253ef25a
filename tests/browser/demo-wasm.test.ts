import type { Page } from 'playwright-core';
import type { ViteDevServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/node.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { sendMessage } from './demo-driver.ts';
import { startViteServer, useBrowser, watchPage } from './harness.ts';

// The chat demo in a Chromium with no WebGPU at all (no adapter: the flags that give headless
// Chromium SwiftShader's WebGPU are left out and WebGPU's features disabled). The demo runs on
// the WebAssembly engine: with threads on a cross-origin isolated page (COOP + COEP, as
// `npm run demo` and `npm run dev` serve it), on one thread on a page without those headers.

const env = useBrowser({ webgpu: false });
let plain: { server: ViteDevServer; url: string };

beforeAll(async () => {
  plain = await startViteServer({ isolated: false });
});
afterAll(async () => {
  await plain?.server.close();
});

const SETTINGS = { maxNewTokens: 12, temperature: 0, topK: 40, topP: 0.95, seed: 1 };
const PROMPT = 'The jury said';

/** What Node's wasm engine answers with the demo's settings (the default ones, greedy). */
let nodeText: Promise<string> | undefined;
function nodeWasmText(): Promise<string> {
  nodeText ??= (async () => {
    const node = await createEngine({ model: BUILT_IN_MODEL.dir, backend: 'wasm' });
    try {
      expect(node.backend).toBe('wasm');
      return (await node.complete(PROMPT, SETTINGS)).text;
    } finally {
      await node.dispose();
    }
  })();
  return nodeText;
}

/** Opens the demo and checks that this browser really has no WebGPU adapter, in the page and in a worker. */
async function openDemo(url: string): Promise<{ page: Page; problems: string[] }> {
  const page = await env.browser.newPage({ viewport: { width: 1100, height: 1300 } });
  const problems = watchPage(page);
  await page.goto(`${url}/demo/`);
  const webgpu = await page.evaluate(async () => {
    const inPage = navigator.gpu ? (await navigator.gpu.requestAdapter()) !== null : false;
    const src = 'onmessage = async () => postMessage(navigator.gpu ? (await navigator.gpu.requestAdapter()) !== null : false)';
    const w = new Worker(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })));
    const inWorker = await new Promise<boolean>((resolve) => {
      w.onmessage = (e) => resolve(e.data);
      w.postMessage(null);
    });
    w.terminate();
    return { inPage, inWorker };
  });
  expect(webgpu, 'no WebGPU adapter in the page or in a worker').toEqual({ inPage: false, inWorker: false });
  await page.getByLabel('New tokens').fill(String(SETTINGS.maxNewTokens));
  await page.getByLabel('Temperature').fill(String(SETTINGS.temperature));
  return { page, problems };
}

describe('demo page without WebGPU', () => {
  it('cross-origin isolated: streams the same text as Node’s wasm engine, on the WebAssembly engine’s threads', async () => {
    const { page, problems } = await openDemo(env.base);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    // Auto's engine, by name, before anything loads: the note says why not WebGPU, and that nothing is wrong.
    const banner = page.locator('#no-webgpu');
    await expect
      .poll(() => banner.textContent())
      .toMatch(/^WebGPU found no graphics adapter here .*, so the model runs on the processor, with the CPU engine \(WebAssembly\)\./);
    expect(await banner.textContent()).not.toMatch(/cannot/);

    const shown = await sendMessage(page, PROMPT);
    expect(shown.length).toBeGreaterThan(0);
    expect(shown).toBe(await nodeWasmText());
    // Threads: one per core (at most 16), so 2 on the 2-core machines the tests run on.
    const threads = Math.min(16, await page.evaluate(() => navigator.hardwareConcurrency));
    const t = `${threads} thread${threads === 1 ? '' : 's'}`;
    expect(await page.locator('#engine').textContent()).toBe(`Running on the CPU: WebAssembly SIMD, ${t}.`);
    expect(await page.locator('#status').textContent()).toMatch(new RegExp(`^12 tokens \\(length\\) · .* · WebAssembly SIMD, ${t}$`));
    // The routing trace comes from the wasm engine too.
    await expect.poll(() => page.locator('#routing canvas').count()).toBe(2);

    // A follow-up reuses the kept context on the wasm engine as well.
    await page.getByLabel('New tokens').fill('6');
    await sendMessage(page, ' Then');
    expect(await page.locator('.message.assistant .meta').nth(1).textContent()).toMatch(/^6 tokens \(length\)/);
    await page.screenshot({ path: 'test-results/demo-wasm.png', fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  });

  it('not cross-origin isolated (no COOP/COEP): one thread, the same text, and the page says why', async () => {
    const { page, problems } = await openDemo(plain.url);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
    const shown = await sendMessage(page, PROMPT);
    expect(shown).toBe(await nodeWasmText());
    expect(await page.locator('#engine').textContent()).toBe(
      'Running on the CPU: WebAssembly SIMD, 1 thread. One thread because the page is not cross-origin isolated (it needs COOP and COEP headers).',
    );
    expect(await page.locator('#status').textContent()).toMatch(/ · WebAssembly SIMD, 1 thread$/);
    await page.screenshot({ path: 'test-results/demo-wasm-one-thread.png' });
    expect(problems).toEqual([]);
    await page.close();
  });
});
