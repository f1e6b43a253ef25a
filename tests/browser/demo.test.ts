import { describe, expect, it } from 'vitest';
import { createEngine } from '../../src/node.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { useBrowser, watchPage } from './harness.ts';

const env = useBrowser();

describe('demo page', () => {
  it('streams the built-in model’s text for a prompt, as the engine in Node does', async () => {
    const page = await env.browser.newPage();
    const problems = watchPage(page);
    await page.goto(`${env.base}/demo/`);
    await page.getByLabel('Prompt').fill('The jury said');
    await page.getByLabel('New tokens').fill('12');
    await page.getByLabel('Temperature').fill('0');
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.waitForFunction(() => /tokens \(/.test(document.getElementById('status')?.textContent ?? ''), null, { timeout: 120_000 });
    const shown = await page.locator('#continuation').textContent();
    expect(await page.locator('#status').textContent()).toMatch(/swiftshader/i);
    // The cache status lists the model just downloaded, with its size, and deletes it on request.
    const cached = page.locator('#cache-list li');
    await expect.poll(() => page.locator('#cache-list li span').first().textContent()).toMatch(/models\/molm-brown\/manifest\.json · 17\.1 of 17\.1 MB$/);
    expect(await page.locator('#download').isVisible(), 'the download bar goes away once the model is loaded').toBe(false);
    await page.screenshot({ path: 'test-results/demo-generated.png' });
    await page.getByRole('button', { name: /^Delete .*molm-brown/ }).click();
    await expect.poll(() => cached.first().textContent()).toBe('None yet.');
    expect(problems).toEqual([]);
    const node = await createEngine({ model: BUILT_IN_MODEL.dir });
    try {
      const want = await node.complete('The jury said', { maxNewTokens: 12, temperature: 0, repetitionPenalty: 1.1 });
      expect(shown).toBe(want.text);
      expect(shown!.length).toBeGreaterThan(0);
    } finally {
      await node.dispose();
    }
    await page.close();
  });

  it('share links preset the model and the prompt', async () => {
    const page = await env.browser.newPage();
    const model = 'https://models.example/molm-350m-4b-q4/';
    await page.goto(`${env.base}/demo/?model=${encodeURIComponent(model)}&prompt=${encodeURIComponent('Grüße, world')}`);
    await expect.poll(() => page.getByLabel('Prompt').inputValue()).toBe('Grüße, world');
    expect(await page.locator('#model-url').inputValue()).toBe(model);
    expect(await page.locator('input[name=source][value=url]').isChecked()).toBe(true);
    await page.close();
  });

  it('says so when WebGPU is missing', async () => {
    const page = await env.browser.newPage();
    // Neither the page nor its workers have WebGPU.
    await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
    await page.route('**/src/engine/worker.ts*', async (route) => {
      const res = await route.fetch();
      const body = `Object.defineProperty(WorkerNavigator.prototype, 'gpu', { get: () => undefined });\n${await res.text()}`;
      await route.fulfill({ response: res, body });
    });
    await page.goto(`${env.base}/demo/`);
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.locator('#status').textContent(), { timeout: 30_000 }).toMatch(/WebGPU/);
    await page.close();
  });
});
