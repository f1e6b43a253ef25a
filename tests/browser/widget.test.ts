import { mkdtempSync, readFileSync, rmSync, symlinkSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Browser } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/node.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { ISOLATION_HEADERS, launchBrowser, watchPage } from './harness.ts';
import { startModelServer, type ModelServer } from './model-server.ts';

// <molm-chat> built as it ships (vite.widget.config.ts), served with the built-in model from
// one origin (http://127.0.0.1:A, with the CORS and CORP headers docs/frontends.md names) and
// embedded by a plain page of another origin (http://localhost:B): in Chromium on SwiftShader's
// WebGPU, and in a Chromium without WebGPU (the WebAssembly engine), on a plain page (one
// thread) and on a cross-origin isolated one (COOP + COEP: threads).

/** The budget the issue sets for the widget's script, without the model. */
const WIDGET_GZIP_BUDGET = 150 * 1024;

let root: string;
let host: ModelServer;
let page: { server: Server; url: string; html: Map<string, string>; isolated: Set<string> };
let browser: Browser;
/** A Chromium with no WebGPU adapter at all. */
let noGpu: Browser;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'molm-widget-'));
  await build({ configFile: resolve('vite.widget.config.ts'), logLevel: 'error', build: { outDir: join(root, 'widget') } });
  mkdirSync(join(root, 'models'));
  symlinkSync(resolve(BUILT_IN_MODEL.dir), join(root, 'models', 'molm-brown'));
  host = await startModelServer(root);
  // The embedding page's origin serves nothing but its own HTML; the paths in `isolated` with COOP + COEP.
  const html = new Map<string, string>();
  const isolated = new Set<string>();
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const body = html.get(path);
    res.writeHead(body ? 200 : 404, { 'Content-Type': 'text/html; charset=utf-8', ...(isolated.has(path) && ISOLATION_HEADERS) });
    res.end(body ?? 'not found');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  page = { server, url: `http://localhost:${(server.address() as AddressInfo).port}`, html, isolated };
  browser = await launchBrowser();
  noGpu = await launchBrowser([], { webgpu: false });
});

afterAll(async () => {
  await browser?.close();
  await noGpu?.close();
  await host?.close();
  await new Promise((r) => page?.server.close(r));
  if (root) rmSync(root, { recursive: true, force: true });
});

/** What the engine in Node answers to the widget's chat request, per backend. */
const nodeReplies = new Map<string, Promise<string>>();
function nodeReply(backend: 'webgpu' | 'wasm'): Promise<string> {
  if (!nodeReplies.has(backend)) {
    nodeReplies.set(
      backend,
      (async () => {
        const node = await createEngine({ model: BUILT_IN_MODEL.dir, backend });
        try {
          const want = await node.chat.completions.create({ messages: [{ role: 'user', content: 'Where did the jury go?' }], max_tokens: 12, temperature: 0 });
          return want.choices[0].message.content;
        } finally {
          await node.dispose();
        }
      })(),
    );
  }
  return nodeReplies.get(backend)!;
}

describe('<molm-chat> widget', () => {
  it(`is at most ${WIDGET_GZIP_BUDGET / 1024} KB gzipped, worker included, model excluded`, () => {
    for (const file of ['molm-chat.js', 'molm-chat.iife.js']) {
      const bytes = readFileSync(join(root, 'widget', file));
      const gz = gzipSync(bytes, { level: 9 }).length;
      expect(gz, file).toBeLessThanOrEqual(WIDGET_GZIP_BUDGET);
      // The engine's worker travels inside the script (no second request, no cross-origin worker).
      expect(bytes.toString('utf8')).toContain('stickbreaking');
    }
  });

  it('on a page of another origin, one script tag gives a chat box that streams the built-in model’s reply', async () => {
    page.html.set(
      '/',
      `<!doctype html><html lang="en"><title>Someone else's page</title>
<h1>A page that embeds molm-web</h1>
<p>The chat box below runs on this device's GPU.</p>
<script src="${host.url}/widget/molm-chat.iife.js"></script>
<molm-chat placeholder="Ask the Brown corpus" max-tokens="12" temperature="0" backend="webgpu"></molm-chat>
<script>
  window.events = [];
  for (const type of ['token', 'done', 'error']) document.addEventListener(type, (e) => window.events.push({ type, detail: e.detail }));
</script>`,
    );
    const tab = await browser.newPage({ viewport: { width: 800, height: 600 } });
    const problems = watchPage(tab);
    await tab.goto(`${page.url}/`);
    const input = tab.getByRole('textbox', { name: 'Message' });
    expect(await input.getAttribute('placeholder')).toBe('Ask the Brown corpus');
    await input.fill('Where did the jury go?');
    await input.press('Enter');
    type Ev = { type: string; detail: { text: string; message?: string } };
    const events = () => tab.evaluate(() => (window as unknown as { events: Ev[] }).events);
    await expect.poll(async () => (await events()).filter((e) => e.type !== 'token').map((e) => e.type), { timeout: 120_000 }).toEqual(['done']);
    const all = await events();
    const streamed = all
      .filter((e) => e.type === 'token')
      .map((e) => e.detail.text)
      .join('');
    const done = all.find((e) => e.type === 'done')!.detail;
    const reply = tab.locator('molm-chat li.assistant');
    expect(await reply.textContent()).toBe(streamed);
    expect(done.text).toBe(streamed);
    // Text, never HTML: the reply is one text node.
    expect(await reply.evaluate((li) => li.childElementCount)).toBe(0);

    // The same reply as the engine in Node gives for the same chat request, on the same backend.
    expect(streamed).toBe(await nodeReply('webgpu'));
    // Which engine ran, out of the way: the status line, and its tooltip / accessible description.
    const status = tab.locator('molm-chat .status');
    expect(await status.textContent()).toMatch(/^\d+ tokens · [\d.]+ tokens\/s · WebGPU$/);
    expect(await status.getAttribute('title')).toMatch(/^Running on WebGPU: .*swiftshader/i);
    expect(host.count('/models/molm-brown/manifest.json')).toBeGreaterThan(0);
    expect(problems).toEqual([]);
    await tab.screenshot({ path: 'test-results/widget-cross-origin.png' });
    await tab.close();
  });

  for (const isolated of [false, true]) {
    it(`without WebGPU, on a page ${isolated ? 'that is cross-origin isolated (COOP + COEP): the CPU engine’s threads' : 'without COOP/COEP: the CPU engine on one thread, and it says why'}; the same reply as Node’s wasm engine`, async () => {
      const path = isolated ? '/isolated.html' : '/plain.html';
      if (isolated) page.isolated.add(path);
      page.html.set(
        path,
        `<!doctype html><html lang="en"><title>A page without WebGPU</title>
<h1>A page that embeds molm-web</h1>
<script src="${host.url}/widget/molm-chat.iife.js"></script>
<molm-chat max-tokens="12" temperature="0"></molm-chat>
<script>
  window.events = [];
  for (const type of ['token', 'done', 'error']) document.addEventListener(type, (e) => window.events.push({ type, detail: e.detail }));
</script>`,
      );
      const tab = await noGpu.newPage({ viewport: { width: 800, height: 600 } });
      const problems = watchPage(tab);
      await tab.goto(`${page.url}${path}`);
      const env = await tab.evaluate(async () => ({
        adapter: navigator.gpu ? (await navigator.gpu.requestAdapter()) !== null : false,
        isolated: crossOriginIsolated,
      }));
      expect(env).toEqual({ adapter: false, isolated });
      const input = tab.getByRole('textbox', { name: 'Message' });
      await input.fill('Where did the jury go?');
      await input.press('Enter');
      type Ev = { type: string; detail: { text: string; message?: string } };
      const events = () => tab.evaluate(() => (window as unknown as { events: Ev[] }).events);
      await expect.poll(async () => (await events()).filter((e) => e.type !== 'token').map((e) => e.type), { timeout: 120_000 }).toEqual(['done']);
      const done = (await events()).find((e) => e.type === 'done')!.detail;
      expect(done.text.length).toBeGreaterThan(0);
      expect(await tab.locator('molm-chat li.assistant').textContent()).toBe(done.text);
      expect(done.text).toBe(await nodeReply('wasm'));
      const threads = isolated ? Math.min(16, await tab.evaluate(() => navigator.hardwareConcurrency)) : 1;
      const t = `${threads} thread${threads === 1 ? '' : 's'}`;
      const status = tab.locator('molm-chat .status');
      expect(await status.textContent()).toMatch(new RegExp(`^12 tokens · [\\d.]+ tokens/s · WebAssembly, ${t}$`));
      expect(await status.getAttribute('title')).toBe(
        `Running on the CPU: WebAssembly SIMD, ${t}.` +
          (isolated ? '' : ' One thread because the page is not cross-origin isolated (it needs COOP and COEP headers).'),
      );
      expect(await status.getAttribute('aria-description')).toBe(await status.getAttribute('title'));
      expect(problems).toEqual([]);
      await tab.screenshot({ path: `test-results/widget-wasm${isolated ? '-isolated' : ''}.png` });
      await tab.close();
    });
  }

  it('imports as an ES module from the other origin, and reports a model it cannot load with an error event', async () => {
    page.html.set(
      '/module.html',
      `<!doctype html><html lang="en"><title>Module import</title>
<script type="module">
  import { MolmChat } from '${host.url}/widget/molm-chat.js';
  window.sameClass = document.createElement('molm-chat') instanceof MolmChat;
  const chat = document.createElement('molm-chat');
  chat.setAttribute('model', '${host.url}/models/no-such-model/');
  chat.setAttribute('theme', 'dark');
  chat.addEventListener('error', (e) => (window.failure = e.detail));
  document.body.append(chat);
  window.reply = chat.ask('Hello');
</script>`,
    );
    const tab = await browser.newPage();
    await tab.goto(`${page.url}/module.html`);
    await expect
      .poll(() => tab.evaluate(() => (window as unknown as { failure?: { name: string } }).failure?.name), { timeout: 60_000 })
      .toBe('ModelFormatError');
    expect(await tab.evaluate(() => (window as unknown as { sameClass: boolean }).sameClass)).toBe(true);
    expect(await tab.locator('molm-chat .status').textContent()).toMatch(/no-such-model/);
    await tab.close();
  });
});
