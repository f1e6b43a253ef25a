import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { createServer, type ViteDevServer } from 'vite';

// Debian's Chromium with SwiftShader's WebGPU (no GPU here), never a downloaded browser.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-webgpu',
  '--enable-unsafe-swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-angle=swiftshader',
];

export async function launchBrowser(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: [...FLAGS, ...extraArgs] });
}

/**
 * The repository served by Vite on 127.0.0.1 (a secure context, so navigator.gpu exists):
 * pages under tests/browser/pages import the engine's TypeScript directly.
 */
export async function startViteServer(): Promise<{ server: ViteDevServer; url: string }> {
  const server = await createServer({
    configFile: false,
    root: process.cwd(),
    publicDir: 'public',
    logLevel: 'error',
    server: { host: '127.0.0.1', port: 0, strictPort: false, hmr: false },
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
 * and returns a handle whose fields are set once beforeAll has run.
 */
export function useBrowser(): { browser: Browser; base: string } {
  const handle = {} as { browser: Browser; base: string; server: ViteDevServer };
  beforeAll(async () => {
    const { server, url } = await startViteServer();
    handle.server = server;
    handle.base = url;
    handle.browser = await launchBrowser();
  });
  afterAll(async () => {
    await handle.browser?.close();
    await handle.server?.close();
  });
  return handle;
}
