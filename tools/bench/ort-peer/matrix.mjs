#!/usr/bin/env node
// Runs bench.mjs for every (layers, threads) pair, one fresh process each, interleaved
// over --rounds rounds (so slow drift of a shared/virtualised machine hits every config
// alike), and prints the per-config median of the runs as JSON lines plus a Markdown table.
//
// The machine may be shared: before each run it waits (up to --wait-s) until the other
// processes use under --max-other cores, and a run whose bench.mjs reports other_load above
// --max-other is thrown away and redone (up to --tries times; the last try is kept, flagged).
//
//   node matrix.mjs [--rounds 3] [--layers 1,2] [--threads 1,2] [--reps 3] [--dir /tmp/ort-peer]
//                   [--max-other 0.15] [--tries 6] [--wait-s 120]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// Numbers by default; what the command line gives stays a string (used through Number/String).
/**
 * @type {{ rounds: number | string, layers: string, threads: string, reps: number | string, dir: string, prefill: number | string,
 *   decode: number | string, 'max-other': number | string, tries: number | string, 'wait-s': number | string }}
 */
const o = { rounds: 3, layers: '1,2', threads: '1,2', reps: 3, dir: '/tmp/ort-peer', prefill: 32, decode: 64, 'max-other': 0.15, tries: 6, 'wait-s': 120 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const k = /** @type {keyof typeof o} */ (argv[i].replace(/^--/, ''));
  if (!(k in o)) throw new Error(`unknown argument ${argv[i]}`);
  o[k] = argv[++i];
}
function busyMs() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return ((f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] || 0)) * 1000) / 100;
  } catch {
    return null;
  }
}
const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));
// Wait until the rest of the machine is (nearly) idle for a 1 s window.
async function waitIdle() {
  const t0 = Date.now();
  for (;;) {
    const b0 = busyMs();
    if (b0 === null) return null;
    await sleep(1000);
    const b1 = busyMs();
    if (b1 === null) return null;
    const load = (b1 - b0) / 1000;
    if (load < Number(o['max-other']) || Date.now() - t0 > Number(o['wait-s']) * 1000) return load;
  }
}
const here = path.dirname(fileURLToPath(import.meta.url));
/**
 * What bench.mjs prints for a model (the fields used here), and whether the run was contended.
 * @typedef {{ layers: number, threads: number, prefill_tokens_per_s: number, decode_tokens_per_s: number, ms_per_decode_token: number,
 *   ort_version?: string, cpu_per_wall_prefill: number, cpu_per_wall_decode: number, other_load: number | null, contended?: boolean }} BenchOutput
 */
/** @type {Map<string, BenchOutput[]>} */
const results = new Map();
for (let r = 0; r < Number(o.rounds); r++) {
  for (const layers of o.layers.split(',')) {
    for (const threads of o.threads.split(',')) {
      /** @type {BenchOutput} */
      let j;
      for (let attempt = 1; ; attempt++) {
        const idle = await waitIdle();
        const p = spawnSync(
          process.execPath,
          [
            path.join(here, 'bench.mjs'),
            '--dir',
            o.dir,
            '--layers',
            layers,
            '--threads',
            threads,
            '--reps',
            String(o.reps),
            '--prefill',
            String(o.prefill),
            '--decode',
            String(o.decode),
          ],
          { encoding: 'utf8' },
        );
        if (p.status !== 0) throw new Error(`bench.mjs failed (layers ${layers}, threads ${threads}):\n${p.stderr}`);
        j = JSON.parse(/** @type {string} */ (p.stdout.trim().split('\n').pop()));
        const contended = j.other_load !== null && j.other_load > Number(o['max-other']);
        console.error(
          `[matrix] round ${r} layers ${layers} threads ${threads} try ${attempt}: prefill ${j.prefill_tokens_per_s} tok/s, ` +
            `decode ${j.decode_tokens_per_s} tok/s, cpu/wall decode ${j.cpu_per_wall_decode}, other load ${j.other_load} ` +
            `(idle before ${idle?.toFixed(2)})${contended ? ' CONTENDED' : ''}`,
        );
        j.contended = contended;
        if (!contended || attempt >= Number(o.tries)) break;
      }
      const key = `${layers}/${threads}`;
      let runs = results.get(key);
      if (!runs) results.set(key, (runs = []));
      runs.push(j);
    }
  }
}
const med = (/** @type {number[]} */ xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
};
const rows = [];
for (const runs of results.values()) {
  const f = (/** @type {'prefill_tokens_per_s' | 'decode_tokens_per_s' | 'ms_per_decode_token' | 'cpu_per_wall_prefill' | 'cpu_per_wall_decode'} */ k) =>
    med(runs.map((x) => x[k]));
  const row = {
    layers: runs[0].layers,
    threads: runs[0].threads,
    prefill_tokens_per_s: f('prefill_tokens_per_s'),
    decode_tokens_per_s: f('decode_tokens_per_s'),
    ms_per_decode_token: f('ms_per_decode_token'),
    ort_version: runs[0].ort_version,
    cpu_per_wall_prefill: f('cpu_per_wall_prefill'),
    cpu_per_wall_decode: f('cpu_per_wall_decode'),
    decode_tokens_per_s_range: [Math.min(...runs.map((x) => x.decode_tokens_per_s)), Math.max(...runs.map((x) => x.decode_tokens_per_s))],
    prefill_tokens_per_s_range: [Math.min(...runs.map((x) => x.prefill_tokens_per_s)), Math.max(...runs.map((x) => x.prefill_tokens_per_s))],
    processes: runs.length,
    contended_processes: runs.filter((x) => x.contended).length,
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}
console.log('\n| layers | threads | prefill tok/s (min–max) | decode tok/s (min–max) | ms/decode token | CPU/wall decode |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.layers} | ${r.threads} | ${r.prefill_tokens_per_s} (${r.prefill_tokens_per_s_range.join('–')}) | ` +
      `${r.decode_tokens_per_s} (${r.decode_tokens_per_s_range.join('–')}) | ${r.ms_per_decode_token} | ${r.cpu_per_wall_decode} |`,
  );
}
