#!/usr/bin/env node
// The CPU engines side by side in one run (issue: the wasm engine against ONNX Runtime Web's
// wasm backend on the same machine and threads): for each thread count and layer count, one
// fresh process each for
//   - ONNX Runtime Web (tools/bench/ort-peer/bench.mjs) on the dense one/two-layer MoLM-350M-4B
//     active shape (f32), and
//   - `molm bench --device wasm` on the real sparse shape (32 MLP and 16 attention experts,
//     top 2) in f32 and q4,
// each with a 32-token prompt and 64 decoded tokens, rounds interleaved. Prints JSON lines and
// a Markdown table of medians.
//
//   node tools/bench/cpu-engines.mjs --models /tmp/m --ort /tmp/ort-peer [--rounds 3] [--threads 1,2] [--layers 1,2]
//
// Models (once): for L in 1 2:
//   npx molm synth --config tests/fixtures/configs/molm-350m-4b.json --layers $L --out /tmp/m/l$L-bf16
//   npx molm convert --model /tmp/m/l$L-bf16 --out /tmp/m/l$L-q4 --dtype q4   (and --dtype f32 → l$L-f32)
// ONNX models: tools/bench/ort-peer/README.md (export.py writes /tmp/ort-peer).
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The value after --NAME on the command line, or `fallback` without one. */
const arg = (/** @type {string} */ name, /** @type {string} */ fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i <= 0) return fallback;
  const value = process.argv[i + 1];
  if (value === undefined) throw new Error(`--${name} needs a value`);
  return value;
};
const models = arg('models', '/tmp/m');
const ortDir = arg('ort', '/tmp/ort-peer');
const rounds = Number(arg('rounds', '3'));
const threadCounts = arg('threads', '1,2').split(',').map(Number);
const layerCounts = arg('layers', '1,2').split(',').map(Number);

/** @type {{ engine: string, threads: number, layers: number, cmd: [file: string, args: string[]] }[]} */
const runs = [];
for (const threads of threadCounts) {
  for (const layers of layerCounts) {
    runs.push({
      engine: 'onnxruntime-web (dense f32)',
      threads,
      layers,
      cmd: [
        'node',
        [
          join(root, 'tools/bench/ort-peer/bench.mjs'),
          '--dir',
          ortDir,
          '--layers',
          String(layers),
          '--threads',
          String(threads),
          '--prefill',
          '32',
          '--decode',
          '64',
          '--reps',
          '1',
        ],
      ],
    });
    for (const dtype of ['f32', 'q4']) {
      runs.push({
        engine: `molm-web wasm (sparse ${dtype})`,
        threads,
        layers,
        cmd: [
          'node',
          [
            join(root, 'bin/molm.mjs'),
            'bench',
            '--model',
            join(models, `l${layers}-${dtype}`),
            '--device',
            'wasm',
            '--threads',
            String(threads),
            '--prompt-tokens',
            '32',
            '--new-tokens',
            '64',
            '--json',
          ],
        ],
      });
    }
  }
}

/** @typedef {{ engine: string, threads: number, layers: number, decode: number, prefill: number }} Row */
/** @type {Map<string, Row[]>} */
const results = new Map();
for (let round = 0; round < rounds; round++) {
  for (const r of runs) {
    const out = execFileSync(r.cmd[0], r.cmd[1], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const j = JSON.parse(/** @type {string} */ (out.trim().split('\n').at(-1)));
    /** @type {Row} */
    const row = { engine: r.engine, threads: r.threads, layers: r.layers, decode: j.decode_tokens_per_s, prefill: j.prefill_tokens_per_s };
    console.log(JSON.stringify(row));
    const key = `${r.engine}|${r.threads}|${r.layers}`;
    results.set(key, [...(results.get(key) ?? []), row]);
  }
}
const median = (/** @type {number[]} */ xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log('\n| engine | threads | layers | decode tokens/s | ms / token | prefill tokens/s (32) |\n|---|---|---|---|---|---|');
for (const rows of results.values()) {
  const d = median(rows.map((x) => x.decode));
  const p = median(rows.map((x) => x.prefill));
  console.log(`| ${rows[0].engine} | ${rows[0].threads} | ${rows[0].layers} | ${d.toFixed(1)} | ${(1000 / d).toFixed(1)} | ${p.toFixed(0)} |`);
}
