import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/node.ts';
import { builtInModelDecoding } from '../built-in-model.ts';
import { sendMessage } from './demo-driver.ts';
import { useBrowser, watchPage } from './harness.ts';
import { startModelServer, type ModelServer } from './model-server.ts';

// Output is text: prompts, the model's output, its token pieces and error messages reach the DOM
// as text, never as HTML, in the demo, its routing view, the widget and the benchmark page.
//
// The model's output is hostile end to end: the built-in model's weights with a tokenizer.json
// whose decoder ends in a Replace step that turns every "e" into markup. The real engine in its
// worker generates; every piece it streams, and every token piece of its routing trace, passes
// through that decoder, so the reply the demo and the widget show is markup. Errors carry markup
// too: a model host whose HTTP status text is markup (the loader quotes it), and model URLs that
// are markup or javascript: URLs. Chromium without WebGPU, so the wasm engine runs (the faster
// one here).

const env = useBrowser({ webgpu: false });

/** What an HTML sink would turn into elements or run; each leaves a trace `injected` finds. */
const HOSTILE =
  '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script></textarea><b id=injected>x</b>' +
  '<a id=injected-link href="javascript:window.__pwned=1">javascript:window.__pwned=1</a>';
/** The prompt typed into the demo and the widget. */
const PROMPT = `The jury said ${HOSTILE} and`;
const SETTINGS = { maxNewTokens: 12, temperature: 0, topK: 40, topP: 0.95, seed: 1 };

let root: string;
let host: ModelServer;
/** A model host that answers every request HTTP 500 with markup as its status text. */
let evil: { server: Server; url: string };
const EVIL_STATUS = '<img src=x onerror="window.__pwned=1"><b id=injected>x</b>';

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'molm-hostile-'));
  const dir = join(root, 'models', 'hostile');
  builtInModelDecoding(dir, 'e', HOSTILE);
  host = await startModelServer(root);
  const server = createServer((_req, res) => {
    res.writeHead(500, EVIL_STATUS, { 'Access-Control-Allow-Origin': '*', 'Cross-Origin-Resource-Policy': 'cross-origin', 'Content-Type': 'text/plain' });
    res.end('no');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  evil = { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
});

afterAll(async () => {
  await host?.close();
  if (evil) {
    evil.server.closeAllConnections();
    await new Promise((r) => evil.server.close(r));
  }
  if (root) rmSync(root, { recursive: true, force: true });
});

const hostileModel = () => `${host.url}/models/hostile/`;

/**
 * Everything hostile markup would have left in the page, its widgets' shadow roots included:
 * its elements, a script that mentions __pwned, and window.__pwned set by a handler that ran.
 * The wait lets an <img src=x> fail to load and fire its onerror first.
 */
async function injected(page: Page): Promise<string[]> {
  await page.waitForTimeout(300);
  return page.evaluate(() => {
    const roots: (Document | ShadowRoot)[] = [document];
    for (const el of document.querySelectorAll('*')) if (el.shadowRoot) roots.push(el.shadowRoot);
    const found: string[] = [];
    for (const r of roots) {
      for (const el of r.querySelectorAll('#injected, #injected-link, img, a[href^="javascript:"]')) found.push(el.outerHTML);
      for (const s of r.querySelectorAll('script')) if (s.textContent?.includes('__pwned')) found.push(s.outerHTML);
    }
    if ('__pwned' in window) found.push('window.__pwned is set');
    return found;
  });
}

/** An element's text, and whether it holds nothing but text (no element came out of it). */
const textOf = (page: Page, selector: string) => page.locator(selector).evaluate((el) => ({ text: el.textContent, elements: el.childElementCount }));

describe('output is text', () => {
  it('the hostile strings are hostile: put in as HTML, they make elements and run their handler', async () => {
    const page = await env.browser.newPage();
    await page.goto(`${env.base}/tests/browser/pages/widget.html`);
    await page.evaluate((html) => {
      const sink = document.createElement('div');
      sink.innerHTML = html;
      document.body.append(sink);
    }, HOSTILE);
    await expect
      .poll(() => injected(page))
      .toEqual([
        '<img src="x" onerror="window.__pwned=1">',
        '<b id="injected">x</b>',
        '<a id="injected-link" href="javascript:window.__pwned=1">javascript:window.__pwned=1</a>',
        '<script>window.__pwned=1</script>',
        'window.__pwned is set',
      ]);
    await page.close();
  });

  it('demo: a hostile prompt and a model whose output is markup show as literal text, in the messages and the routing readout', async () => {
    const page = await env.browser.newPage({ viewport: { width: 1100, height: 1300 } });
    const problems = watchPage(page);
    await page.goto(`${env.base}/demo/?model=${encodeURIComponent(hostileModel())}`);
    await page.getByLabel('New tokens').fill(String(SETTINGS.maxNewTokens));
    await page.getByLabel('Temperature').fill(String(SETTINGS.temperature));
    const shown = await sendMessage(page, PROMPT);

    expect(await textOf(page, '.message.user .text')).toEqual({ text: PROMPT, elements: 0 });
    // The reply is what the engine generated, markup and all, character for character.
    const node = await createEngine({ model: join(root, 'models', 'hostile'), backend: 'wasm' });
    try {
      expect(shown).toBe((await node.complete(PROMPT, SETTINGS)).text);
    } finally {
      await node.dispose();
    }
    expect(shown).toContain(HOSTILE);
    expect(await textOf(page, '.message.assistant .text')).toEqual({ text: shown, elements: 0 });

    // The routing readout quotes each token's piece; with the prompt's tokens, every one of them.
    await page.getByLabel("Include the prompt's tokens").check();
    const map = page.locator('#routing canvas').first();
    await map.focus();
    await page.keyboard.press('Home');
    const readouts: { text: string | null; elements: number }[] = [];
    const tokens = Number((await page.locator('#routing-readout').textContent())!.match(/of (\d+)/)![1]);
    for (let t = 0; t < tokens; t++) {
      readouts.push(await textOf(page, '#routing-readout'));
      await page.keyboard.press('ArrowRight');
    }
    expect(readouts.every((r) => r.elements === 0)).toBe(true);
    expect(readouts.filter((r) => r.text?.includes(HOSTILE)).length).toBeGreaterThan(0);

    expect(await injected(page)).toEqual([]);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('demo: a ?prompt= and ?model= of markup, and an error whose text is markup, stay text', async () => {
    const page = await env.browser.newPage();
    const problems = watchPage(page, /\/manifest\.json$/);
    // A model URL that is markup: it fills the URL box as it is, and the error quotes the URL the engine tried.
    const markupModel = '<img src=x onerror="window.__pwned=1">';
    await page.goto(`${env.base}/demo/?model=${encodeURIComponent(markupModel)}&prompt=${encodeURIComponent(HOSTILE)}`);
    expect(await page.locator('#model-url').inputValue()).toBe(markupModel);
    expect(await page.getByRole('textbox', { name: 'Message' }).inputValue()).toBe(HOSTILE);
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.locator('#status.error').count(), { timeout: 60_000 }).toBe(1);
    expect(await textOf(page, '.message.user .text')).toEqual({ text: HOSTILE, elements: 0 });
    expect((await textOf(page, '#status')).elements).toBe(0);
    expect(await page.locator('#status').textContent()).toContain('%3Cimg%20src=x');

    // A host whose status text is markup: the message quotes it, literally.
    await page.locator('#model-url').fill(`${evil.url}/`);
    await page.getByRole('textbox', { name: 'Message' }).fill('Hello');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.locator('#status').textContent(), { timeout: 60_000 }).toContain(evil.url);
    expect(await textOf(page, '#status')).toEqual({
      text: expect.stringMatching(/^MolmError: http:.* answered HTTP 500 <img src=x onerror="window\.__pwned=1"><b id=injected>x<\/b>\.$/),
      elements: 0,
    });

    expect(await injected(page)).toEqual([]);
    expect(problems.filter((p) => !p.startsWith(`HTTP 500: ${evil.url}`))).toEqual([]);
    await page.close();
  });

  it('widget: a hostile prompt, placeholder and model output stay text in its shadow root', async () => {
    const page = await env.browser.newPage();
    const problems = watchPage(page);
    await page.goto(`${env.base}/tests/browser/pages/widget.html`);
    await page.waitForFunction(() => (window as unknown as { widgetReady?: boolean }).widgetReady);
    await page.evaluate(
      ({ model, placeholder }) => {
        const chat = document.createElement('molm-chat');
        chat.setAttribute('model', model);
        chat.setAttribute('placeholder', placeholder);
        chat.setAttribute('max-tokens', '12');
        chat.setAttribute('temperature', '0');
        const w = window as unknown as { events: { type: string; detail: { text: string } }[] };
        w.events = [];
        for (const type of ['token', 'done', 'error']) chat.addEventListener(type, (e) => w.events.push({ type, detail: (e as CustomEvent).detail }));
        document.body.append(chat);
      },
      { model: hostileModel(), placeholder: '</textarea><b id=injected>x</b>' },
    );
    const input = page.getByRole('textbox', { name: 'Message' });
    expect(await input.getAttribute('placeholder')).toBe('</textarea><b id=injected>x</b>');
    await input.fill(PROMPT);
    await input.press('Enter');
    type Ev = { type: string; detail: { text: string; message?: string } };
    const events = () => page.evaluate(() => (window as unknown as { events: Ev[] }).events);
    await expect.poll(async () => (await events()).some((e) => e.type !== 'token'), { timeout: 120_000 }).toBe(true);
    const ended = (await events()).filter((e) => e.type !== 'token');
    expect(ended.map((e) => [e.type, e.detail.message])).toEqual([['done', undefined]]);
    const done = ended[0].detail;
    expect(done.text).toContain(HOSTILE);
    expect(await textOf(page, 'molm-chat li.user')).toEqual({ text: PROMPT, elements: 0 });
    expect(await textOf(page, 'molm-chat li.assistant')).toEqual({ text: done.text, elements: 0 });
    expect(await injected(page)).toEqual([]);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('widget: model attributes that are markup or javascript: URLs, and a host whose error is markup, give errors as text', async () => {
    const page = await env.browser.newPage();
    await page.goto(`${env.base}/tests/browser/pages/widget.html`);
    await page.waitForFunction(() => (window as unknown as { widgetReady?: boolean }).widgetReady);
    const models = ['<img src=x onerror="window.__pwned=1">', 'javascript:window.__pwned=1', `${evil.url}/`];
    const errors = await page.evaluate(async (models) => {
      const out: { message: string; status: string | null; elements: number }[] = [];
      for (const model of models) {
        const chat = document.createElement('molm-chat');
        chat.setAttribute('model', model);
        const failed = new Promise<string>((r) => chat.addEventListener('error', (e) => r((e as unknown as CustomEvent<{ message: string }>).detail.message)));
        document.body.append(chat);
        void (chat as unknown as { ask(text: string): Promise<unknown> }).ask('Hello');
        const message = await failed;
        const status = chat.shadowRoot!.querySelector('.status')!;
        out.push({ message, status: status.textContent, elements: status.childElementCount });
      }
      return out;
    }, models);
    for (const e of errors) expect({ status: e.status, elements: e.elements }).toEqual({ status: e.message, elements: 0 });
    expect(errors[1].message).toContain('javascript:window.__pwned=1');
    expect(errors[2].message).toContain(`answered HTTP 500 ${EVIL_STATUS}`);
    expect(await injected(page)).toEqual([]);
    await page.close();
  });

  it('benchmark page: a ?model= whose host answers with markup shows the error as text', async () => {
    const page = await env.browser.newPage();
    await page.goto(`${env.base}/demo/bench.html?model=${encodeURIComponent(`${evil.url}/`)}&contexts=8&new=2&backend=wasm&run=1`);
    await page.waitForFunction(() => 'benchResults' in window || 'benchError' in window, null, { timeout: 60_000 });
    const error = await page.evaluate(() => (window as unknown as { benchError?: string }).benchError);
    expect(error).toContain(`answered HTTP 500 ${EVIL_STATUS}`);
    expect(await textOf(page, '#status')).toEqual({ text: error, elements: 0 });
    expect(await injected(page)).toEqual([]);
    await page.close();
  });
});
