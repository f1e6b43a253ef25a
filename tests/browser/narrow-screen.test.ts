import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtInModelDecoding } from '../built-in-model.ts';
import { sendMessage } from './demo-driver.ts';
import { ISOLATION_HEADERS, useBrowser } from './harness.ts';
import { startModelServer, type ModelServer } from './model-server.ts';

// The demo and the widget on a phone's screen (375 px wide, and 320, 360 and 414): nothing passes
// the screen's right edge, and the page never scrolls sideways, in each state a user sees: the
// first screen, a model downloading, a reply streaming and done, the routing maps, an error.
// The text is the worst case for wrapping: a URL, code and a long word with no place to break,
// typed by the user and, through a tokenizer whose decoder puts them into the model's output,
// streamed by the model. Chromium without WebGPU, so the wasm engine runs (the faster one here).
// The 375 px screenshots go to test-results/ on every run; MOLM_DOC_SCREENSHOTS=1 writes them
// into docs/images/ instead (how the docs' copies were made), so a test run leaves git clean.

const env = useBrowser({ webgpu: false });

const WIDTHS = [375, 320, 360, 414];
/** A phone: a touch screen that honours the page's viewport meta tag, at twice the pixels. */
const PHONE = { height: 667, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

const URL_TEXT = 'https://molm.example/models/a/path/without/any/spaces/Pneumonoultramicroscopicsilicovolcanoconiosis.html?q=1&lang=en';
const CODE = 'const reply=await engine.chat.completions.create({messages,stream:true,max_tokens:64,temperature:0});';
const PROMPT = `Read ${URL_TEXT} and run\n    ${CODE}\nThe committee said that`;

let root: string;
let host: ModelServer;
/** The built-in model's weights with a decoder that adds URL_TEXT and CODE after every "the". */
const longModel = () => `${host.url}/models/long-words/`;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'molm-narrow-'));
  const dir = join(root, 'models', 'long-words');
  builtInModelDecoding(dir, 'the', `the ${URL_TEXT} ${CODE}`);
  host = await startModelServer(root);
});

afterAll(async () => {
  await host?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

/**
 * What passes the screen's sides, in the page and in shadow roots: the document wider than the
 * screen; each element drawn past the left or right edge (what an ancestor clips is not drawn:
 * a box that scrolls sideways may hold wide content); and each box whose content is wider than
 * it (spilling out, or cut off), except inside `scrollers`, the boxes meant to scroll sideways,
 * and form fields, which scroll their text.
 */
function sideways(page: Page, width: number, scrollers: string[] = []): Promise<string[]> {
  return page.evaluate(
    ({ width, scrollers }) => {
      const name = (el: Element) =>
        `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${typeof el.className === 'string' && el.className ? `.${el.className.trim().split(/\s+/).join('.')}` : ''}` +
        ` “${(el.textContent ?? '').trim().slice(0, 40)}”`;
      const parent = (el: Element): Element | null => el.parentElement ?? (el.parentNode as ShadowRoot | null)?.host ?? null;
      const found: string[] = [];
      const doc = document.documentElement;
      if (doc.scrollWidth > width) found.push(`the document is ${doc.scrollWidth} px wide`);
      if (innerWidth !== width) found.push(`the layout viewport is ${innerWidth} px wide (a phone zooms out to fit the page)`);
      const all: Element[] = [];
      const walk = (r: Document | ShadowRoot) => {
        for (const el of r.querySelectorAll('*')) {
          all.push(el);
          if (el.shadowRoot) walk(el.shadowRoot);
        }
      };
      walk(document);
      for (const el of all) {
        const style = getComputedStyle(el);
        const r = el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0 || style.visibility !== 'visible') continue;
        let [left, right, top, bottom] = [r.left, r.right, r.top, r.bottom];
        for (let a = parent(el); a && a !== doc && a !== document.body; a = parent(a)) {
          const s = getComputedStyle(a);
          if (s.overflowX === 'visible' && s.overflowY === 'visible') continue;
          const box = a.getBoundingClientRect();
          const l = box.left + a.clientLeft;
          const t = box.top + a.clientTop;
          [left, right, top, bottom] = [Math.max(left, l), Math.min(right, l + a.clientWidth), Math.max(top, t), Math.min(bottom, t + a.clientHeight)];
        }
        if (right <= left || bottom <= top) continue; // clipped away: not drawn
        if (right > width + 0.5 || left < -0.5) found.push(`${name(el)} spans ${Math.round(left)}..${Math.round(right)} px`);
        const field = el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement;
        // clientWidth ≤ 1: a visually hidden element, there for screen readers.
        if (!field && el.clientWidth > 1 && el.scrollWidth > el.clientWidth + 1 && !scrollers.some((s) => el.closest(s))) {
          const how = style.overflowX === 'visible' ? 'spills out of its box' : 'is cut off';
          found.push(`${name(el)}: content ${how} sideways (${el.scrollWidth} px in ${el.clientWidth})`);
        }
      }
      return found;
    },
    { width, scrollers },
  );
}

async function phone(width: number): Promise<{ context: BrowserContext; page: Page }> {
  const context = await env.browser.newContext({ viewport: { width, height: PHONE.height }, ...PHONE });
  return { context, page: await context.newPage() };
}

/** A viewport-sized screenshot at one CSS pixel per pixel, for the docs. */
const shoot = (page: Page, name: string) =>
  page.screenshot({ path: `${process.env.MOLM_DOC_SCREENSHOTS ? 'docs/images' : 'test-results'}/${name}`, scale: 'css' });

describe('on a phone’s screen', () => {
  for (const width of WIDTHS) {
    it(`the demo fits ${width} px: first screen, replies with long words, routing maps, a download, an error`, async () => {
      const { context, page } = await phone(width);
      // The routing maps scroll sideways in their own box when a reply has more tokens than fit.
      const fits = async (state: string) => expect(await sideways(page, width, ['#routing']), `${state}, ${width} px`).toEqual([]);
      await page.goto(`${env.base}/demo/`);
      await expect.poll(() => page.locator('#no-webgpu').isVisible()).toBe(true);
      await fits('the first screen, with the note that there is no WebGPU and the settings (always shown)');
      // Each control can be tapped: in view once scrolled to, and not covered by anything.
      for (const control of await page.locator('textarea:enabled, input:enabled, button:enabled').all()) await control.click({ trial: true });

      // A model that downloads slowly, then streams the long words itself. (It comes first: the
      // shard cache knows its weights by their hash, and the built-in model has the same ones.)
      await page.getByLabel('Converted model URL', { exact: true }).check();
      await page.locator('#model-url').fill(longModel());
      await page.getByLabel('New tokens').fill('400');
      await page.getByLabel('Temperature').fill('0');
      host.switches.throttle = { chunk: 256 * 1024, delayMs: 50 };
      const box = page.getByRole('textbox', { name: 'Message' });
      await box.fill('The committee said that');
      await box.press('Enter');
      await expect.poll(() => page.locator('#download').isVisible(), { timeout: 60_000 }).toBe(true);
      await fits('the download bar');
      host.switches.throttle = null;
      const long = page.locator('.message.assistant .text');
      await expect.poll(async () => ((await long.textContent()) ?? '').length, { timeout: 60_000 }).toBeGreaterThan(600);
      await fits('a long reply streaming');
      const stop = page.getByRole('button', { name: 'Stop' });
      if (await stop.isEnabled()) await stop.click();
      await expect.poll(() => page.locator('.message.assistant .meta').textContent(), { timeout: 60_000 }).toMatch(/tokens \(/);
      expect(await long.textContent(), 'the model’s reply has the URL and the code in it').toContain(`${URL_TEXT} ${CODE}`);
      await fits('after a long reply');

      // The built-in model, the long words typed by the user.
      await page.getByRole('button', { name: 'New conversation' }).click();
      await page.getByLabel(/Built-in: molm-brown/).check();
      await page.getByLabel('New tokens').fill('30');
      await sendMessage(page, PROMPT);
      expect(await page.locator('.message.user .text').textContent()).toBe(PROMPT);
      await expect.poll(() => page.locator('#routing canvas').count()).toBe(2);
      await expect.poll(() => page.locator('#cache-list li span').allTextContents()).toHaveLength(2);
      await fits('after a reply, with the routing maps and the cached models’ URLs');
      const [mapsWidth, room] = await page.locator('#routing').evaluate((r) => [r.scrollWidth, r.clientWidth]);
      expect(mapsWidth, 'the maps of a 30-token reply fit the screen').toBeLessThanOrEqual(room);
      if (width === 375) {
        await page.locator('.message.user').evaluate((m) => m.scrollIntoView({ block: 'start' }));
        await shoot(page, 'demo-375.png');
        await page.locator('#routing-title').evaluate((h) => h.scrollIntoView({ block: 'start' }));
        await shoot(page, 'demo-375-routing.png');
      }

      await page.getByLabel("Include the prompt's tokens").check();
      await page.locator('#routing canvas').first().focus();
      await page.keyboard.press('End');
      await expect.poll(() => page.locator('#routing-readout').textContent()).toMatch(/^Attention experts, token \d+ of \d+/);
      await fits('the routing maps with the prompt’s tokens, and the readout');

      // An error that quotes a long URL.
      await page.getByLabel('Converted model URL', { exact: true }).check();
      await page.locator('#model-url').fill(`${host.url}/models/${'nosuchmodel'.repeat(10)}/`);
      await box.fill('Hello');
      await box.press('Enter');
      await expect.poll(() => page.locator('#status.error').count(), { timeout: 60_000 }).toBe(1);
      expect(await page.locator('#status').textContent()).toContain('nosuchmodelnosuchmodel');
      await fits('an error message with a long URL');
      await context.close();
    });
  }

  for (const width of WIDTHS) {
    it(`the widget fits a ${width} px page: first screen, a long reply streaming and done, an error`, async () => {
      const { context, page } = await phone(width);
      const fits = async (state: string) => expect(await sideways(page, width), `${state}, ${width} px`).toEqual([]);
      // A phone-sized page that embeds the widget from its source, cross-origin isolated for the CPU engine's threads.
      await page.route(`${env.base}/narrow-widget.html`, (route) =>
        route.fulfill({
          contentType: 'text/html; charset=utf-8',
          headers: ISOLATION_HEADERS,
          body: `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>A phone page with a chat box</title><link rel="icon" href="data:,">
<h1>Ask the Brown corpus</h1>
<p>A small language model runs in this page, on this phone.</p>
<molm-chat model="${longModel()}" max-tokens="160" temperature="0" placeholder="Ask something"></molm-chat>
<script type="module">import '/src/widget/index.ts';</script>`,
        }),
      );
      await page.goto(`${env.base}/narrow-widget.html`);
      const input = page.getByRole('textbox', { name: 'Message' });
      await expect.poll(() => input.isVisible()).toBe(true);
      await fits('the first screen');
      await input.click({ trial: true });
      await page.getByRole('button', { name: 'Send' }).click({ trial: true });

      await input.fill(PROMPT);
      await input.press('Enter');
      const reply = page.locator('molm-chat li.assistant');
      await expect.poll(async () => ((await reply.textContent()) ?? '').length, { timeout: 60_000 }).toBeGreaterThan(300);
      await fits('a long reply streaming');
      const status = page.locator('molm-chat .status');
      await expect.poll(() => status.textContent(), { timeout: 60_000 }).toMatch(/^\d+ tokens · /);
      expect(await reply.textContent(), 'the model’s reply has the URL and the code in it').toContain(`${URL_TEXT} ${CODE}`);
      await fits('after a long reply');
      if (width === 375) {
        await reply.evaluate((li) => li.scrollIntoView({ block: 'end' }));
        await shoot(page, 'widget-375.png');
      }

      await page.locator('molm-chat').evaluate((chat, model) => chat.setAttribute('model', model), `${host.url}/models/${'nosuchmodel'.repeat(10)}/`);
      await input.fill('Hello');
      await input.press('Enter');
      await expect.poll(() => status.evaluate((s) => s.classList.contains('error')), { timeout: 60_000 }).toBe(true);
      expect(await status.textContent()).toContain('nosuchmodelnosuchmodel');
      await fits('an error message with a long URL');
      await context.close();
    });
  }
});
