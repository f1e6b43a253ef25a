// Renders public/icons/icon.svg to the PNG sizes the web app manifest lists, with Debian's
// Chromium (the browser the tests use). Run after editing the SVG: node tools/make-icons.mjs
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const svg = readFileSync(new URL('../public/icons/icon.svg', import.meta.url), 'utf8');
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: ['--headless=new', '--no-sandbox'] });
try {
  for (const [size, name, pad] of /** @type {[size: number, name: string, pad: number][]} */ ([
    [192, 'icon-192.png', 0],
    [512, 'icon-512.png', 0],
    // Maskable: the platform crops to a circle or squircle, so the art sits in the middle 80 %.
    [512, 'icon-maskable-512.png', 0.1],
  ])) {
    const page = await browser.newPage({ viewport: { width: size, height: size } });
    const inner = Math.round(size * (1 - 2 * pad));
    await page.setContent(
      `<body style="margin:0;background:${pad ? '#1d4ed8' : 'transparent'};display:grid;place-items:center;height:${size}px">` +
        `<img style="width:${inner}px;height:${inner}px" src="data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}"></body>`,
    );
    await page.screenshot({ path: new URL(`../public/icons/${name}`, import.meta.url).pathname, omitBackground: pad === 0 });
    await page.close();
  }
} finally {
  await browser.close();
}
