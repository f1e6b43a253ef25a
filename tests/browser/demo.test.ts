import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { createEngine } from '../../src/node.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { sendMessage } from './demo-driver.ts';
import { useBrowser, watchPage } from './harness.ts';

// The chat demo in Chromium on SwiftShader's WebGPU, its engine in a Web Worker, on a cross-origin
// isolated page (as `npm run demo` serves it). On SwiftShader, Auto picks the WebAssembly
// engine, so the tests of the WebGPU path choose WebGPU under Engine; demo-wasm.test.ts has the
// browser without WebGPU. Each test saves a screenshot under test-results/.

const env = useBrowser();

/** Records every text the status line and the download line show (they change faster than a poll). */
async function recordStatus(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const seen: string[] = ((window as unknown as { statusLog: string[] }).statusLog = []);
    new MutationObserver(() => {
      for (const id of ['status', 'download-text']) {
        const t = document.getElementById(id)?.textContent;
        if (t && seen[seen.length - 1] !== t) seen.push(t);
      }
    }).observe(document, { subtree: true, childList: true, characterData: true });
  });
}

const statusLog = (page: Page) => page.evaluate(() => (window as unknown as { statusLog: string[] }).statusLog);

describe('demo page', () => {
  it('loads the built-in model with progress, streams a reply, stops on demand, and shows the routing', async () => {
    const page = await env.browser.newPage({ viewport: { width: 1100, height: 1400 } });
    const problems = watchPage(page);
    await recordStatus(page);
    await page.goto(`${env.base}/demo/`);
    await page.getByLabel('WebGPU', { exact: true }).check();
    await page.getByLabel('New tokens').fill('12');
    await page.getByLabel('Temperature').fill('0');
    const shown = await sendMessage(page, 'The jury said');
    const log = await statusLog(page);
    expect(await page.locator('#engine').textContent()).toMatch(/^Running on WebGPU: .*swiftshader/i);
    expect(
      log.some((t) => /^Downloading 17\.\d MB/.test(t)),
      log.join('\n'),
    ).toBe(true);
    expect(
      log.some((t) => /MB · [\d.]+ MB\/s · \d+ s left/.test(t)),
      'the download line shows bytes, speed and time left',
    ).toBe(true);
    expect(
      log.some((t) => /^Generating… \d+ tokens · first after \d+ ms · [\d.]+ tokens\/s/.test(t)),
      'live tokens/s while streaming',
    ).toBe(true);
    expect(await page.locator('#status').textContent()).toMatch(/12 tokens \(length\).*swiftshader/i);
    expect(await page.locator('#download').isVisible(), 'the download bar goes away once the model is loaded').toBe(false);

    // The same text as the engine in Node with the same settings, on the same backend.
    const node = await createEngine({ model: BUILT_IN_MODEL.dir, backend: 'webgpu' });
    try {
      const want = await node.complete('The jury said', { maxNewTokens: 12, temperature: 0, topK: 40, topP: 0.95, seed: 1 });
      expect(shown).toBe(want.text);
      expect(shown.length).toBeGreaterThan(0);
    } finally {
      await node.dispose();
    }

    // The routing view: an attention map and an MLP map of the reply's tokens, readable by keyboard.
    const maps = page.locator('#routing canvas');
    await expect.poll(() => maps.count()).toBe(2);
    expect(await page.locator('#routing figcaption').allTextContents()).toEqual([
      'Attention experts: 4 layers × 8 experts, 2 chosen per token',
      'MLP experts: 4 layers × 8 experts, 2 chosen per token',
    ]);
    // Eleven of the twelve new tokens were read back (the last one ends the reply unread).
    await maps.first().focus();
    await page.keyboard.press('ArrowRight');
    expect(await page.locator('#routing-readout').textContent()).toMatch(
      /^Attention experts, token 2 of 11 “.+”, layer 0: chose \d \([01]\.\d{3}\), \d \([01]\.\d{3}\)/,
    );
    const box = (await maps.nth(1).boundingBox())!;
    expect(box.width).toBeGreaterThan(64 + 11 * 6);
    // Painted cells: the map is not blank.
    const inked = await maps.first().evaluate((c: HTMLCanvasElement) => {
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let blue = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i] < 120 && d[i + 3] > 0) blue++;
      return blue;
    });
    expect(inked).toBeGreaterThan(11 * 4 * 2 * 10);
    await page.getByLabel("Include the prompt's tokens").check();
    await page.locator('#routing canvas').first().focus();
    await page.keyboard.press('End');
    expect(await page.locator('#routing-readout').textContent()).toMatch(/token 14 of 14/);
    await page.screenshot({ path: 'test-results/demo-routing.png', fullPage: true });

    // Stop: a long reply ends early, with what it had, and the page is ready again.
    await page.getByLabel('New tokens').fill('400');
    await page.getByRole('textbox', { name: 'Message' }).fill(' It was');
    await page.getByRole('button', { name: 'Generate' }).click();
    const long = page.locator('.message.assistant').nth(1);
    await expect.poll(() => long.locator('.text').textContent(), { timeout: 60_000 }).not.toBe('');
    await page.getByRole('button', { name: 'Stop' }).click();
    await expect.poll(() => long.locator('.meta').textContent(), { timeout: 60_000 }).toMatch(/^\d+ tokens \(abort\)/);
    const stopped = Number((await long.locator('.meta').textContent())!.split(' ')[0]);
    expect(stopped).toBeLessThan(400);
    expect(await page.getByRole('button', { name: 'Generate' }).isEnabled()).toBe(true);

    // Chat mode: messages through chat.completions; the model's turn ends at the template's stop.
    await page.getByLabel('Chat (messages through the chat template)').check();
    await expect.poll(() => page.locator('.message').count()).toBe(0);
    await page.getByLabel('New tokens').fill('16');
    await sendMessage(page, 'Where did the jury go?');
    expect(await page.locator('.message.user .text').textContent()).toBe('Where did the jury go?');
    await page.screenshot({ path: 'test-results/demo-chat.png', fullPage: true });

    // The cache status lists the model, with its size, and deletes it on request.
    const cached = page.locator('#cache-list li');
    await expect.poll(() => page.locator('#cache-list li span').first().textContent()).toMatch(/models\/molm-brown\/manifest\.json · 17\.1 of 17\.1 MB$/);
    await page.getByRole('button', { name: /^Delete .*molm-brown/ }).click();
    await expect.poll(() => cached.first().textContent()).toBe('None yet.');
    expect(problems).toEqual([]);
    await page.close();
  });

  it('labels every control and keeps text contrast at WCAG AA (4.5:1) in light and dark schemes', async () => {
    const page = await env.browser.newPage();
    await page.goto(`${env.base}/demo/`);
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll('input, textarea, button, select, canvas[tabindex]')]
        .filter((el) => {
          const labelled = (el as HTMLInputElement).labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
          return !labelled && !(el.tagName === 'BUTTON' && el.textContent?.trim());
        })
        .map((el) => el.outerHTML),
    );
    expect(unlabelled).toEqual([]);
    for (const colorScheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme });
      // A message of each kind, so their colours are measured too.
      await page.evaluate(() => {
        const list = document.getElementById('messages')!;
        list.innerHTML =
          '<li class="message user"><span class="who">You</span><div class="text">Hi</div><div class="meta">1 token</div></li>' +
          '<li class="message assistant"><span class="who">Model</span><div class="text">Hello</div><div class="meta">2 tokens</div></li>';
        document.getElementById('status')!.textContent = 'Ready.';
      });
      const worst = await page.evaluate(() => {
        const rgb = (c: string) => (c.match(/[\d.]+/g) ?? []).map(Number);
        const lum = ([r, g, b]: number[]) => {
          const f = (v: number) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
          return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
        };
        const background = (el: Element | null): number[] => {
          for (; el; el = el.parentElement) {
            const c = rgb(getComputedStyle(el).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
          }
          return [255, 255, 255];
        };
        const results: { text: string; ratio: number }[] = [];
        for (const el of document.querySelectorAll('h1, h2, p, label, legend, button:not(:disabled), .who, .text, .meta, li')) {
          if (!el.textContent?.trim() || (el as HTMLElement).offsetParent === null) continue;
          const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
          results.push({ text: el.textContent.trim().slice(0, 40), ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05) });
        }
        return results.sort((x, y) => x.ratio - y.ratio).slice(0, 3);
      });
      expect(worst[0].ratio, `${colorScheme}: ${JSON.stringify(worst)}`).toBeGreaterThanOrEqual(4.5);
    }
    await page.close();
  });

  it('share links preset the model, the prompt and the engine', async () => {
    const page = await env.browser.newPage();
    const model = 'https://models.example/molm-350m-4b-q4/';
    await page.goto(`${env.base}/demo/?model=${encodeURIComponent(model)}&prompt=${encodeURIComponent('Grüße, world')}&backend=wasm`);
    await expect.poll(() => page.getByRole('textbox', { name: 'Message' }).inputValue()).toBe('Grüße, world');
    expect(await page.getByLabel('CPU (WebAssembly)').isChecked()).toBe(true);
    expect(await page.locator('#model-url').inputValue()).toBe(model);
    expect(await page.locator('input[name=source][value=url]').isChecked()).toBe(true);
    await page.close();
  });

  it('without navigator.gpu: says the CPU engine runs, generates on it, and says WebGPU is missing when WebGPU is chosen', async () => {
    const page = await env.browser.newPage({ viewport: { width: 1100, height: 1000 } });
    const problems = watchPage(page);
    // Neither the page nor its workers have WebGPU (a browser without it, such as an older Firefox).
    await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
    await page.route('**/src/engine/worker.ts*', async (route) => {
      const res = await route.fetch();
      const body = `Object.defineProperty(WorkerNavigator.prototype, 'gpu', { get: () => undefined });\n${await res.text()}`;
      await route.fulfill({ response: res, body });
    });
    await page.goto(`${env.base}/demo/`);
    const banner = page.locator('#no-webgpu');
    await expect
      .poll(() => banner.textContent())
      .toMatch(/^This browser has no WebGPU, so the model runs on the processor, with the CPU engine \(WebAssembly\)\. For GPU speed/);
    expect(await banner.textContent()).not.toMatch(/cannot/);
    await page.getByLabel('New tokens').fill('8');
    await page.getByLabel('Temperature').fill('0');
    await sendMessage(page, 'The jury said');
    expect(await page.locator('#status').textContent()).toMatch(/^8 tokens \(length\) .* · WebAssembly SIMD, \d+ threads?$/);
    expect(await page.locator('#engine').textContent()).toMatch(/^Running on the CPU: WebAssembly SIMD, \d+ threads?\./);
    await page.screenshot({ path: 'test-results/demo-no-webgpu.png' });

    // WebGPU asked for by name: the message says WebGPU is missing (not that the device is too small) and what to do.
    await page.getByLabel('WebGPU', { exact: true }).check();
    await expect
      .poll(() => banner.textContent())
      .toMatch(/^This browser has no WebGPU, so WebGPU cannot run the model: choose “Auto” or “CPU \(WebAssembly\)”/);
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect
      .poll(() => page.locator('#status').textContent(), { timeout: 30_000 })
      .toMatch(/^WebGPU is not available: This browser has no WebGPU .* Choose “Auto” or “CPU \(WebAssembly\)” under Engine/);
    expect(await page.locator('#status').textContent()).not.toMatch(/cannot hold/);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('says so when the device cannot hold the model', async () => {
    const page = await env.browser.newPage();
    // An adapter whose storage bindings are smaller than the model's largest tensor.
    await page.route('**/src/engine/worker.ts*', async (route) => {
      const res = await route.fetch();
      const body = `Object.defineProperty(GPUSupportedLimits.prototype, 'maxStorageBufferBindingSize', { get: () => 1 << 20 });\n${await res.text()}`;
      await route.fulfill({ response: res, body });
    });
    await page.goto(`${env.base}/demo/?backend=webgpu`);
    expect(await page.getByLabel('WebGPU', { exact: true }).isChecked(), '?backend=webgpu chooses WebGPU').toBe(true);
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect
      .poll(() => page.locator('#status').textContent(), { timeout: 60_000 })
      .toMatch(/^This device cannot hold this model: This GPU allows maxStorageBufferBindingSize = 1048576 bytes, but the model needs \d+ .*q4/);
    await page.screenshot({ path: 'test-results/demo-device-too-small.png' });
    await page.close();
  });
});
