import { describe, expect, it } from 'vitest';
import { useBrowser, watchPage } from './harness.ts';

// The benchmark page (demo/bench.html) in Chromium on SwiftShader: it runs `molm bench`'s
// measurements on the browser's adapter (or, with ?backend=wasm, the WebAssembly engine) and
// reports them per context. Numbers are not judged here (speed belongs in
// docs/performance.md); that every one is there and consistent is.

const env = useBrowser();

describe('benchmark page', () => {
  it('reports prefill and decode tokens/s, TTFT, GPU memory, dispatches, copy bandwidth and the roofline ratio per context', async () => {
    const page = await env.browser.newPage();
    const problems = watchPage(page);
    await page.goto(`${env.base}/demo/bench.html?contexts=8,24&new=3&run=1`);
    await page.waitForFunction(() => 'benchResults' in window || 'benchError' in window, null, { timeout: 120_000 });
    const { results, error } = await page.evaluate(() => ({
      results: (window as unknown as { benchResults?: Record<string, number>[] }).benchResults,
      error: (window as unknown as { benchError?: string }).benchError,
    }));
    expect(error).toBeUndefined();
    expect(results!.map((r) => r.context)).toEqual([8, 24]);
    for (const r of results!) {
      for (const key of [
        'prefill_tokens_per_s',
        'decode_tokens_per_s',
        'ttft_ms',
        'gpu_bytes',
        'dispatches_per_token',
        'copy_bandwidth_bytes_per_s',
        'roofline_ratio',
      ]) {
        expect(Number.isFinite(r[key]) && r[key] > 0, `${key} = ${r[key]}`).toBe(true);
      }
      expect(r.new_tokens).toBe(3);
    }
    // 16 more tokens of context: 16 more KV rows in each of the 4 layers, 128 f32 each.
    expect(results![1].decode_bytes_per_token - results![0].decode_bytes_per_token).toBe(16 * 4 * 128 * 4);
    expect(await page.locator('#bench-table tbody tr').count()).toBe(2);
    expect(await page.locator('#status').textContent()).toMatch(/^Done on .*swiftshader/i);
    await page.screenshot({ path: 'test-results/bench-page.png', fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  });

  it('measures the WebAssembly engine with ?backend=wasm: threads, memory, read bandwidth and the roofline ratio per context', async () => {
    const page = await env.browser.newPage();
    const problems = watchPage(page);
    await page.goto(`${env.base}/demo/bench.html?contexts=8,24&new=3&backend=wasm&run=1`);
    await page.waitForFunction(() => 'benchResults' in window || 'benchError' in window, null, { timeout: 120_000 });
    const { results, error } = await page.evaluate(() => ({
      results: (window as unknown as { benchResults?: Record<string, number | string | boolean>[] }).benchResults,
      error: (window as unknown as { benchError?: string }).benchError,
    }));
    expect(error).toBeUndefined();
    // The test server's pages are cross-origin isolated: one thread per core (at most 16).
    const threads = Math.min(16, await page.evaluate(() => navigator.hardwareConcurrency));
    expect(results!.map((r) => [r.context, r.backend, r.threads, r.simd])).toEqual([
      [8, 'wasm', threads, true],
      [24, 'wasm', threads, true],
    ]);
    for (const r of results!) {
      for (const key of ['prefill_tokens_per_s', 'decode_tokens_per_s', 'ttft_ms', 'memory_bytes', 'copy_bandwidth_bytes_per_s', 'roofline_ratio']) {
        expect(Number.isFinite(r[key]) && (r[key] as number) > 0, `${key} = ${r[key]}`).toBe(true);
      }
      expect(r.gpu_bytes).toBeUndefined();
    }
    expect((results![1].decode_bytes_per_token as number) - (results![0].decode_bytes_per_token as number)).toBe(16 * 4 * 128 * 4);
    expect(await page.locator('#status').textContent()).toBe(`Done on WebAssembly SIMD, ${threads} thread${threads === 1 ? '' : 's'}.`);
    await page.screenshot({ path: 'test-results/bench-page-wasm.png', fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  });
});
