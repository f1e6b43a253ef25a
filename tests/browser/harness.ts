import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { createServer, type ViteDevServer } from 'vite';
import { ISOLATION_HEADERS } from '../../vite.demo.config.ts';
import { CHROMIUM, CHROMIUM_FLAGS, WEBGPU_FLAGS } from '../../tools/chromium.mjs';

const FLAGS = CHROMIUM_FLAGS;

/**
 * Chromium with SwiftShader's WebGPU, or with `webgpu: false` none at all: no flag that makes
 * an adapter, and WebGPU's features disabled. (Chromium keeps navigator.gpu there; its
 * requestAdapter() answers null, as on a machine without a usable GPU.)
 */
export async function launchBrowser(extraArgs: string[] = [], options: { webgpu?: boolean } = {}): Promise<Browser> {
  const webgpu = options.webgpu ?? true;
  const args = webgpu ? [...FLAGS, ...WEBGPU_FLAGS] : [...FLAGS, '--disable-features=WebGPU,WebGPUService'];
  return chromium.launch({ executablePath: CHROMIUM, args: [...args, ...extraArgs] });
}

/** What makes a page cross-origin isolated (SharedArrayBuffer, so the wasm engine's threads): the app's own headers. */
export { ISOLATION_HEADERS };

/**
 * The repository served by Vite on 127.0.0.1 (a secure context, so navigator.gpu exists):
 * pages under tests/browser/pages import the engine's TypeScript directly. The pages are
 * cross-origin isolated (COOP + COEP, as `npm run dev` and `npm run demo` serve the app) unless
 * `isolated` is false.
 */
export async function startViteServer(options: { isolated?: boolean } = {}): Promise<{ server: ViteDevServer; url: string }> {
  const server = await createServer({
    configFile: false,
    root: process.cwd(),
    publicDir: 'public',
    logLevel: 'error',
    server: { host: '127.0.0.1', port: 0, strictPort: false, hmr: false, headers: options.isolated === false ? {} : ISOLATION_HEADERS },
    optimizeDeps: { noDiscovery: true, include: [] },
  });
  await server.listen();
  const address = server.httpServer?.address();
  if (!address || typeof address === 'string') throw new Error('vite server has no address');
  return { server, url: `http://127.0.0.1:${address.port}` };
}

/**
 * Collects page errors, console errors and failed requests so a failing page says why. A 404
 * for `allowMissing` files (the loader probes for manifest.json before a Hugging Face layout)
 * is expected; the browser's own console line for it is not counted, the response is.
 */
export function watchPage(page: Page, allowMissing: RegExp = /\/manifest\.json$/): string[] {
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !allowMissing.test(new URL(r.url()).pathname)) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  return problems;
}

/**
 * A browser and a Vite server shared by the tests of one file: registers beforeAll / afterAll
 * and returns a handle whose fields are set once beforeAll has run. `webgpu: false` launches a
 * browser without WebGPU; `isolated: false` serves pages without COOP/COEP.
 */
export function useBrowser(options: { webgpu?: boolean; isolated?: boolean; args?: string[] } = {}): { browser: Browser; base: string } {
  const handle = {} as { browser: Browser; base: string; server: ViteDevServer };
  beforeAll(async () => {
    const { server, url } = await startViteServer({ isolated: options.isolated });
    handle.server = server;
    handle.base = url;
    handle.browser = await launchBrowser(options.args, { webgpu: options.webgpu });
  });
  afterAll(async () => {
    await handle.browser?.close();
    await handle.server?.close();
  });
  return handle;
}

/**
 * Calls function `fn` of the object a test page exposes as `window[api]` with `args` (all
 * structured-cloneable), and resolves to what it returns.
 */
export function callPage<T>(page: Page, api: string, fn: string, ...args: unknown[]): Promise<T> {
  return page.evaluate(([name, f, a]) => (window as unknown as Record<string, Record<string, (...x: unknown[]) => unknown>>)[name][f](...a), [
    api,
    fn,
    args,
  ] as const) as Promise<T>;
}
