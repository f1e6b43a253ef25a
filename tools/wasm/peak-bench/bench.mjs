#!/usr/bin/env node
// Float32 multiply-add ceiling of WebAssembly SIMD on this machine, on 1..N worker threads.
// Usage: node tools/wasm/peak-bench/bench.mjs [--threads 2]
// Builds peak.c with clang (mul + add) and, when clang-16 or newer is on PATH, with relaxed SIMD's
// fused multiply-add (run under --experimental-wasm-relaxed-simd, which Node 20 needs).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const maxThreads = Number(argv[argv.indexOf('--threads') + 1] || 2);

if (argv.includes('--child')) {
  const wasm = argv[argv.indexOf('--child') + 1];
  const k = 256,
    reps = 40000,
    rounds = 5;
  const source = `const { parentPort, workerData } = require('node:worker_threads');
    WebAssembly.instantiate(require('node:fs').readFileSync(workerData)).then(({ instance }) => {
      instance.exports.run(1024, 65536, ${k}, 2000);
      parentPort.on('message', () => { instance.exports.run(1024, 65536, ${k}, ${reps}); parentPort.postMessage(0); });
      parentPort.postMessage(0);
    });`;
  for (let n = 1; n <= maxThreads; n++) {
    const workers = await Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise((ready) => {
            const w = new Worker(source, { eval: true, workerData: wasm });
            w.once('message', () => ready(w));
          }),
      ),
    );
    let best = 0;
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      await Promise.all(
        workers.map(
          (w) =>
            new Promise((done) => {
              w.once('message', done);
              w.postMessage(0);
            }),
        ),
      );
      best = Math.max(best, (n * k * reps * 48) / ((performance.now() - t0) * 1e6));
    }
    console.log(`  ${n} thread${n > 1 ? 's' : ''}: ${best.toFixed(1)} GMAC/s (best of ${rounds})`);
    await Promise.all(workers.map((w) => w.terminate()));
  }
  process.exit(0);
}

const out = mkdtempSync(join(tmpdir(), 'molm-peak-'));
const build = (/** @type {string} */ clang, /** @type {boolean} */ madd) => {
  const wasm = join(out, madd ? 'madd.wasm' : 'muladd.wasm');
  const flags = ['--target=wasm32', '-O3', '-msimd128', `-DMADD=${madd ? 1 : 0}`, '-nostdlib', '-Wl,--no-entry'];
  if (madd) flags.push('-mrelaxed-simd');
  execFileSync(clang, [...flags, '-o', wasm, join(here, 'peak.c')]);
  return wasm;
};
const hasClang16 = spawnSync('clang-16', ['--version']).status === 0;
console.log("f32 multiply then add (the engine's arithmetic):");
spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', build('clang', false), '--threads', String(maxThreads)], { stdio: 'inherit' });
if (hasClang16) {
  console.log('relaxed SIMD fused multiply-add (machine-dependent rounding):');
  spawnSync(
    process.execPath,
    ['--experimental-wasm-relaxed-simd', fileURLToPath(import.meta.url), '--child', build('clang-16', true), '--threads', String(maxThreads)],
    { stdio: 'inherit' },
  );
} else console.log('(clang-16 not found: relaxed SIMD skipped)');
