import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Locator, Page } from 'playwright-core';
import { build, preview, type PreviewServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { convertPack } from '../../src/packs/convert-pack.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { rng } from '../shared/numeric.ts';
import { sendMessage } from './demo-driver.ts';
import { launchBrowser, watchPage } from './harness.ts';

// The demo's expert-pack switch, as `npm run demo` ships it (vite.demo.config.ts: production
// build, service worker, COOP/COEP), on a phone's 375 px screen, in Chromium on SwiftShader
// (Auto runs the WebAssembly engine). The switch adds the built-in model's pack
// (public/models/molm-brown-js) to the loaded model and takes it away; the routing maps then
// have the base's expert rows plus the pack's, drawn apart (a legend, a band of another hue),
// and the base's alone again, whose reply is the base's, bit for bit. Then offline: the pack
// the shard cache kept loads with the model, the switch named from the cached manifest.
// Without the shipped pack (it is trained separately), the test converts a stand-in with
// random weights of the same form into the built app.

const PACK_DIR = 'models/molm-brown-js';
const WIDTH = 375;
const PROMPT = 'function add(a, b) {';

let outDir: string;
let server: PreviewServer | undefined;
let base: string;
let browser: Browser;
let pack: { name: string; domain: string; adds: { attExperts: number; mlpExperts: number; routerUnits: number } };

/** A pack source folder (pack.json + model.safetensors) for the built-in model, random weights. */
function writeStandInSource(dir: string): void {
  const manifest = JSON.parse(readFileSync(join(BUILT_IN_MODEL.dir, 'manifest.json'), 'utf8'));
  const c = manifest.config;
  const [A, M, U] = [4, 4, 32];
  const rand = rng(16);
  const tensors: [string, number[], number][] = [];
  for (let l = 0; l < c.n_layer; l++) {
    for (const [moe, n, hidden] of [
      ['attn.q_proj', A, c.att_hidden],
      ['mlpf', M, c.ffd_hidden],
    ] as const) {
      const p = `transformer.h.${l}.${moe}`;
      tensors.push([`${p}.gate.w_gate.0.weight`, [U, c.n_embd], 0.5], [`${p}.gate.w_gate.0.bias`, [U], 0.2]);
      tensors.push([`${p}.gate.w_gate.3.weight`, [n, c.gating_size + U], 1.7]);
      tensors.push([`${p}.experts.weight`, [n, c.n_embd, hidden], 0.035], [`${p}.output_experts.weight`, [n, hidden, c.n_embd], 0.035]);
    }
  }
  const header: Record<string, { dtype: 'F32'; shape: number[]; data_offsets: [number, number] }> = {};
  const bodies: Buffer[] = [];
  let offset = 0;
  for (const [name, shape, scale] of tensors) {
    const values = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(() => (rand() * 2 - 1) * scale);
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + values.byteLength] };
    bodies.push(Buffer.from(values.buffer));
    offset += values.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([length, Buffer.from(json), ...bodies]));
  const info = {
    name: 'molm-brown-js',
    domain: 'JavaScript and TypeScript source code',
    description: 'A stand-in with random weights (tests/browser/demo-packs.test.ts).',
    base: { name: 'molm-brown', weightsSha256: manifest.weightsSha256 },
    adds: { attExperts: A, mlpExperts: M, routerUnits: U },
    training: { data: 'none: random weights' },
  };
  writeFileSync(join(dir, 'pack.json'), JSON.stringify(info));
}

beforeAll(async () => {
  outDir = mkdtempSync(join(tmpdir(), 'molm-app-packs-'));
  await build({ configFile: resolve('vite.demo.config.ts'), logLevel: 'error', build: { outDir } });
  const packOut = join(outDir, PACK_DIR);
  if (!existsSync(join(packOut, 'manifest.json'))) {
    const source = join(outDir, 'pack-source');
    writeStandInSource(source);
    await convertPack({ source: nodeFileSource(source), outDir: packOut, dtype: 'q8' });
  }
  pack = JSON.parse(readFileSync(join(packOut, 'manifest.json'), 'utf8'));
  server = await preview({ configFile: resolve('vite.demo.config.ts'), logLevel: 'error', build: { outDir }, preview: { port: 0, strictPort: false } });
  base = server.resolvedUrls!.local[0];
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

/** What the routing maps show: per map its expert rows, the base's, the legend's packs, and its pixels in a pack's hue. */
function maps(page: Page) {
  return page.locator('#routing figure').evaluateAll((figures) =>
    figures.map((f) => {
      const canvas = f.querySelector('canvas')!;
      const d = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      // Base experts are blue and text is grey; a pack's hue (orange) has red well above blue.
      let packHue = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] - d[i + 2] > 60) packHue++;
      const el = f as HTMLElement;
      return {
        caption: f.querySelector('figcaption')?.textContent ?? '',
        experts: Number(el.dataset.experts),
        baseExperts: Number(el.dataset.baseExperts),
        packs: [...f.querySelectorAll<HTMLElement>('.routing-legend li.pack')].map((li) => ({
          name: li.dataset.pack,
          from: Number(li.dataset.from),
          to: Number(li.dataset.to),
          text: li.textContent,
        })),
        packHue,
      };
    }),
  );
}

/** What the readout says of each token in each layer of a map, as the arrow keys walk it. */
async function readouts(page: Page, map: Locator, tokens: number, layers: number, experts: number): Promise<string[]> {
  const out: string[] = [];
  await map.focus();
  await page.keyboard.press('Home');
  for (let l = 0; l < layers; l++) {
    for (let t = 0; t < tokens; t++) {
      out.push((await page.locator('#routing-readout').textContent()) ?? '');
      await page.keyboard.press(t < tokens - 1 ? 'ArrowRight' : 'Home');
    }
    for (let e = 0; e < experts; e++) await page.keyboard.press('ArrowDown');
  }
  return out;
}

/** The page: the document no wider than the screen, and the maps of a short reply in their box. */
async function fitsTheScreen(page: Page, state: string): Promise<void> {
  const [doc, maps, room] = await page.evaluate(() => {
    const r = document.getElementById('routing')!;
    return [document.documentElement.scrollWidth, r.scrollWidth, r.clientWidth];
  });
  expect(doc, `${state}: the page does not scroll sideways at ${WIDTH} px`).toBeLessThanOrEqual(WIDTH);
  expect(maps, `${state}: the maps of a short reply fit the screen`).toBeLessThanOrEqual(room);
}

describe('the demo’s expert pack', () => {
  // First: the next test ends with the server shut down.
  it('a pack that does not fit the model is refused, said plainly, and the base keeps running', async () => {
    // The shipped pack's manifest, naming another base (no service worker, so the route sees every request).
    const context = await browser.newContext({ viewport: { width: WIDTH, height: 800 }, serviceWorkers: 'block' });
    const manifest = JSON.parse(readFileSync(join(outDir, PACK_DIR, 'manifest.json'), 'utf8'));
    manifest.base.weightsSha256 = '0'.repeat(64);
    await context.route(`${base}${PACK_DIR}/manifest.json`, (route) => route.fulfill({ json: manifest }));
    const page = await context.newPage();
    const problems = watchPage(page);
    await page.goto(base);
    await page.getByLabel('New tokens').fill('4');
    await page.getByLabel('Temperature').fill('0');
    await sendMessage(page, PROMPT);
    const toggle = page.getByRole('checkbox', { name: `JavaScript expert pack (${pack.name})`, exact: true });
    await toggle.click();
    const packStatus = page.locator('#pack-status');
    await expect.poll(() => packStatus.evaluate((s) => s.classList.contains('error')), { timeout: 60_000 }).toBe(true);
    expect(await packStatus.textContent()).toMatch(
      /^The JavaScript experts could not be added: ModelFormatError: .*extends .*\(weights 0+…\), but .* holds other weights/,
    );
    expect(await toggle.isChecked(), 'the switch shows what the engine runs: the base').toBe(false);
    expect(await toggle.isEnabled()).toBe(true);
    expect(await page.locator('.message.assistant').count(), 'nothing changed, so the conversation goes on').toBe(1);
    await sendMessage(page, ' return');
    expect((await maps(page)).map((m) => [m.experts, m.packs.length])).toEqual([
      [8, 0],
      [8, 0],
    ]);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('a switch adds the pack to the loaded built-in model and takes it away; the routing maps draw its experts apart; offline too', async () => {
    const context = await browser.newContext({ viewport: { width: WIDTH, height: 800 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    const problems = watchPage(page);
    await page.goto(base);
    const settings = async () => {
      await page.getByLabel('New tokens').fill('12');
      await page.getByLabel('Temperature').fill('0');
    };
    await settings();
    const A = pack.adds.attExperts;
    const M = pack.adds.mlpExperts;
    /** The pack's name in a regular expression. */
    const name = pack.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

    // The switch, named from the pack's manifest.
    const toggle = page.getByRole('checkbox', { name: `JavaScript expert pack (${pack.name})`, exact: true });
    await expect.poll(() => toggle.isVisible()).toBe(true);
    expect(await toggle.isChecked()).toBe(false);
    expect(await page.locator('#pack-about').textContent()).toContain(pack.domain);

    // The base model: 8 + 8 experts, no pack in the maps.
    const baseReply = await sendMessage(page, PROMPT);
    const plain = await maps(page);
    expect(plain.map((m) => [m.experts, m.baseExperts, m.packs.length, m.packHue])).toEqual([
      [8, 8, 0, 0],
      [8, 8, 0, 0],
    ]);
    expect(plain.map((m) => m.caption)).toEqual([
      'Attention experts: 4 layers × 8 experts, 2 chosen per token',
      'MLP experts: 4 layers × 8 experts, 2 chosen per token',
    ]);

    // Disabled while a reply runs (the submit handler disables it before its first await).
    const duringReply = await page.evaluate(() => {
      (document.getElementById('prompt') as HTMLTextAreaElement).value = ' x';
      (document.getElementById('run') as HTMLFormElement).requestSubmit();
      return (document.getElementById('pack-toggle') as HTMLInputElement).disabled;
    });
    expect(duringReply, 'the switch is disabled while a reply is generated').toBe(true);
    await expect.poll(() => toggle.isEnabled(), { timeout: 60_000 }).toBe(true);

    // On: setPacks on the live engine; the switch and Generate wait, the conversation restarts.
    const whileSwitching = await page.evaluate(() => {
      (document.getElementById('pack-toggle') as HTMLInputElement).click();
      return {
        toggle: (document.getElementById('pack-toggle') as HTMLInputElement).disabled,
        go: (document.getElementById('go') as HTMLButtonElement).disabled,
        status: document.getElementById('pack-status')!.textContent,
      };
    });
    expect(whileSwitching).toEqual({ toggle: true, go: true, status: 'Adding the JavaScript experts…' });
    const packStatus = page.locator('#pack-status');
    await expect.poll(() => packStatus.textContent(), { timeout: 60_000 }).not.toBe('Adding the JavaScript experts…');
    expect(await packStatus.textContent()).toBe(
      `${A} attention + ${M} MLP experts per layer added (${pack.name}): ${8 + A} + ${8 + M} in all. ` +
        'The conversation starts anew: the model changed, and forgot the context.',
    );
    expect(await packStatus.evaluate((s) => s.classList.contains('error'))).toBe(false);
    expect(await toggle.isChecked()).toBe(true);
    expect(await toggle.isEnabled()).toBe(true);
    expect(await page.locator('.message').count(), 'the conversation restarted').toBe(0);
    expect(await page.locator('#routing canvas').count(), 'the old maps are gone').toBe(0);

    // The maps: the base's 8 expert rows plus the pack's, marked apart, in both maps.
    await sendMessage(page, PROMPT);
    const withPack = await maps(page);
    // Per map, the pack's rows after the base's 8 (none where the pack adds no expert of that kind).
    const expected = ([title, n]: [string, number]) => ({
      caption: n
        ? `${title}: 4 layers × ${8 + n} experts (8 of the base + ${n} of ${pack.name}), 2 chosen per token`
        : `${title}: 4 layers × 8 experts, 2 chosen per token`,
      experts: 8 + n,
      baseExperts: 8,
      packs: n ? [{ name: pack.name, from: 8, to: 8 + n, text: `${pack.name} (expert pack): ${n === 1 ? 'expert 8' : `experts 8–${7 + n}`}` }] : [],
      packHue: n > 0,
    });
    expect(withPack.map((m) => ({ ...m, packHue: m.packHue > 100 }))).toEqual(
      (
        [
          ['Attention experts', A],
          ['MLP experts', M],
        ] as [string, number][]
      ).map(expected),
    );
    await fitsTheScreen(page, 'the maps with the pack');
    await page.locator('#routing-title').evaluate((h) => h.scrollIntoView({ block: 'start' }));
    await page.screenshot({ path: 'test-results/demo-packs-375.png', scale: 'css' });
    // The readout names the pack's experts: its first row, and the picks of the reply's tokens.
    const canvases = page.locator('#routing canvas');
    const readout = page.locator('#routing-readout');
    await canvases.nth(A > 0 ? 0 : 1).focus();
    const tokens = Number((await readout.textContent())?.match(/, token 1 of (\d+) /)?.[1]);
    expect(tokens).toBeGreaterThan(0);
    for (let e = 0; e < 8; e++) await page.keyboard.press('ArrowDown');
    expect(await readout.textContent()).toMatch(new RegExp(`; expert 8 of ${name} (has gate \\d\\.\\d{3}|was not chosen)\\.$`));
    const said = [...(await readouts(page, canvases.nth(0), tokens, 4, 8 + A)), ...(await readouts(page, canvases.nth(1), tokens, 4, 8 + M))];
    expect(
      said.some((r) => new RegExp(`chose [^;]*\\d+ of ${name} \\(`).test(r)),
      'the routers chose some of the pack’s experts for the reply',
    ).toBe(true);

    // Off: the base again, bit for bit (the same reply to the same prompt), maps of 8 + 8.
    await toggle.click();
    await expect.poll(() => packStatus.textContent(), { timeout: 60_000 }).toMatch(/^Base model/);
    expect(await packStatus.textContent()).toBe(
      'Base model: 8 attention + 8 MLP experts per layer. The conversation starts anew: the model changed, and forgot the context.',
    );
    expect(await toggle.isChecked()).toBe(false);
    expect(await sendMessage(page, PROMPT)).toBe(baseReply);
    const again = await maps(page);
    expect(again.map((m) => [m.experts, m.baseExperts, m.packs.length, m.packHue])).toEqual([
      [8, 8, 0, 0],
      [8, 8, 0, 0],
    ]);
    expect(problems).toEqual([]);

    // Offline: the service worker's shell, the model and the pack from the shard cache. The switch
    // is named from the cached manifest; on before the model loads, the model loads with the pack.
    await page.evaluate(() => navigator.serviceWorker.ready);
    await expect.poll(() => page.evaluate(() => navigator.serviceWorker.controller !== null)).toBe(true);
    await server!.close();
    server = undefined;
    await context.setOffline(true);
    await page.reload();
    await settings();
    await expect.poll(() => toggle.isVisible()).toBe(true);
    await toggle.check();
    expect(await packStatus.textContent()).toBe('The JavaScript experts are added when the model loads, with the next message.');
    await sendMessage(page, PROMPT);
    expect(await packStatus.textContent()).toMatch(new RegExp(`^${A} attention \\+ ${M} MLP experts per layer added \\(${name}\\)`));
    expect((await maps(page)).map((m) => [m.experts, m.packs.length])).toEqual([
      [8 + A, Math.sign(A)],
      [8 + M, Math.sign(M)],
    ]);
    await context.close();
  });
});
