import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useBrowser, watchPage } from './harness.ts';

const env = useBrowser();

describe('the engine in headless Chromium (WebGPU on SwiftShader)', () => {
  it.each(['tiny-molm', 'tiny-generic-bf16'])('%s: same logits and greedy tokens as the reference', async (name) => {
    const dir = join(__dirname, '..', 'fixtures', 'golden', name);
    const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
    const raw = readFileSync(join(dir, 'expected_logits.f32'));
    const logits = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);

    const page = await env.browser.newPage();
    const problems = watchPage(page);
    await page.goto(`${env.base}/tests/browser/pages/engine.html`);
    await page.waitForFunction(() => document.getElementById('out')?.textContent === 'ready');
    const result = await page.evaluate(([url, ids, n]) => (window as unknown as { engineCheck: Function }).engineCheck(url, ids, n), [
      `${env.base}/tests/fixtures/golden/${name}`,
      expected.input_ids,
      expected.greedy_new_tokens.length,
    ] as const);
    expect(problems).toEqual([]);
    expect(result.adapter).toMatch(/swiftshader/i);
    let err = 0;
    for (let i = 0; i < logits.length; i++) err = Math.max(err, Math.abs(result.logits[i] - logits[i]));
    expect(result.logits).toHaveLength(logits.length);
    expect(err, `max abs logit error ${err}`).toBeLessThanOrEqual(1e-4);
    expect(result.tokens).toEqual(expected.greedy_new_tokens);
    await page.close();
  });
});
