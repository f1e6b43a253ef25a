#!/usr/bin/env node
// Median over several `bench.mjs --json FILE` runs: node summarize.mjs build/hot*.json
import { readFileSync } from 'node:fs';
const files = process.argv.slice(2);
if (!files.length) {
  console.error('usage: node summarize.mjs RUN.json ...');
  process.exit(2);
}
/**
 * What bench.mjs --json writes (its rows in pairs: C, then AS).
 * @typedef {{ kernel: string, shape: string, macs: number, rounds: number[], bitExact: boolean }} Row
 * @typedef {{ stream: boolean, node: string, sizes: { c: number, as: number }, rows: Row[] }} Run
 */
/** @type {Run[]} */
const runs = files.map((f) => JSON.parse(readFileSync(f, 'utf8')));
const median = (/** @type {number[]} */ a) => [...a].sort((p, q) => p - q)[a.length >> 1];
/** @type {Map<string, { kernel: string, shape: string, macs: number, c: number[], as: number[], pair: number[], exact: boolean }>} */
const by = new Map();
for (const run of runs)
  for (let i = 0; i < run.rows.length; i += 2) {
    const c = run.rows[i],
      a = run.rows[i + 1];
    const key = `${c.kernel} ${c.shape}`;
    let e = by.get(key);
    if (!e) by.set(key, (e = { kernel: c.kernel, shape: c.shape, macs: c.macs, c: [], as: [], pair: [], exact: true }));
    e.c.push(...c.rounds);
    e.as.push(...a.rounds);
    e.pair.push(...a.rounds.map((t, r) => t / c.rounds[r]));
    e.exact &&= c.bitExact && a.bitExact;
  }
const rounds = [...by.values()][0].c.length;
console.log(
  `${runs.length} run(s), ${rounds} rounds per kernel in all, ${runs[0].stream ? 'stream (weights rotate over >= 64 MiB)' : 'hot (same block every call)'}; node ${runs[0].node}; wasm bytes: c ${runs[0].sizes.c}, as ${runs[0].sizes.as}`,
);
console.log(`GMAC/s from the best round; AS/C = median of the paired per-round ratios (< 1: AS faster)`);
console.log(`\n| kernel | shape | C best ns | C GMAC/s | AS best ns | AS GMAC/s | AS/C time | C median ns | AS median ns |`);
console.log(`|---|---|---:|---:|---:|---:|---:|---:|---:|`);
for (const e of by.values()) {
  const cb = Math.min(...e.c),
    ab = Math.min(...e.as);
  console.log(
    `| ${e.kernel} | ${e.shape} | ${cb} | ${(e.macs / cb).toFixed(2)} | ${ab} | ${(e.macs / ab).toFixed(2)} | ${median(e.pair).toFixed(2)} | ${median(e.c)} | ${median(e.as)} |`,
  );
}
console.log(`\noutputs bit-exact vs the JS reference in every run: ${[...by.values()].every((e) => e.exact)}`);
