#!/usr/bin/env node
// The `molm` command: runs the bundled CLI (built by `npm run build:cli`, which `npm ci` runs).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../dist/cli.mjs', import.meta.url));
if (!existsSync(cli)) {
  console.error('molm: dist/cli.mjs is missing. Run `npm run build:cli` (npm ci runs it for you).');
  process.exit(2);
}
const { main } = await import(cli);
process.exitCode = await main(process.argv.slice(2));
