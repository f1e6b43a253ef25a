import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser } from 'playwright-core';
import { build, preview, type PreviewServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendMessage } from './demo-driver.ts';
import { launchBrowser } from './harness.ts';

// The demo as `npm run demo` ships it (vite.demo.config.ts: production build, Workbox service
// worker, web app manifest, COOP/COEP), in Chromium on SwiftShader, where Auto runs the
// WebAssembly engine. One online visit loads the built-in model; then the server is shut down
// and the browser set offline, and the app must start, reload and generate from the service
// worker's app shell and the IndexedDB weights, still cross-origin isolated (the cached
// responses keep their headers), so still on the wasm engine's threads.

let outDir: string;
let server: PreviewServer | undefined;
let base: string;
let browser: Browser;

beforeAll(async () => {
  outDir = mkdtempSync(join(tmpdir(), 'molm-app-'));
  await build({ configFile: resolve('vite.demo.config.ts'), logLevel: 'error', build: { outDir } });
  server = await preview({ configFile: resolve('vite.demo.config.ts'), logLevel: 'error', build: { outDir }, preview: { port: 0, strictPort: false } });
  base = server.resolvedUrls!.local[0];
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  rmSync(outDir, { recursive: true, force: true });
});

describe('offline PWA', () => {
  it('is installable: a web app manifest with icons, and a service worker that precaches the app shell but no weights', async () => {
    const manifest = JSON.parse(readFileSync(join(outDir, 'manifest.webmanifest'), 'utf8'));
    expect(manifest.display).toBe('standalone');
    expect(manifest.icons.map((i: { sizes: string }) => i.sizes)).toEqual(expect.arrayContaining(['192x192', '512x512']));
    const sw = readFileSync(join(outDir, 'sw.js'), 'utf8');
    expect(sw).toContain('index.html');
    expect(sw).toMatch(/assets\/worker-[\w-]+\.js/);
    expect(sw).not.toMatch(/models\//);
  });

  it('after one online visit, starts and generates with the network off, reload included', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(base);
    await page.getByLabel('New tokens').fill('8');
    await page.getByLabel('Temperature').fill('0');
    const online = await sendMessage(page, 'The jury said');
    expect(online.length).toBeGreaterThan(0);
    const threads = Math.min(16, await page.evaluate(() => navigator.hardwareConcurrency));
    const engine = `Running on the CPU: WebAssembly SIMD, ${threads} thread${threads === 1 ? '' : 's'}.`;
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    expect(await page.locator('#engine').textContent()).toBe(engine);
    // The service worker has installed (precached the shell) and controls the page.
    await page.evaluate(() => navigator.serviceWorker.ready);
    await expect.poll(() => page.evaluate(() => navigator.serviceWorker.controller !== null)).toBe(true);

    // No network at all: the browser offline, and the server gone.
    await server!.close();
    server = undefined;
    await context.setOffline(true);
    for (const round of [1, 2]) {
      await page.reload();
      expect(await page.getByRole('heading', { name: 'molm-web' }).isVisible()).toBe(true);
      expect(await page.title()).toBe('molm-web: MoLM on this device');
      await page.getByLabel('New tokens').fill('8');
      await page.getByLabel('Temperature').fill('0');
      expect(await sendMessage(page, 'The jury said'), `offline, reload ${round}`).toBe(online);
      expect(await page.locator('#status').textContent()).toMatch(/8 tokens \(length\)/);
      expect(await page.evaluate(() => crossOriginIsolated), `offline, reload ${round}: still cross-origin isolated`).toBe(true);
      expect(await page.locator('#engine').textContent()).toBe(engine);
    }
    await page.screenshot({ path: 'test-results/pwa-offline.png', fullPage: true });
    await context.close();
  });
});
