#!/usr/bin/env node
// molm-web wasm toolchain bench: check, then time, the same kernels built by clang (C) and asc
// (AssemblyScript). Run `bash build.sh` first. Usage:
//   node bench.mjs                 # hot cache: the same weight block every call
//   node bench.mjs --stream        # rotate over copies of the block totalling >= 64 MiB (> L3)
//   node bench.mjs --only q4       # substring filter on "kernel_variant shape"
//   node bench.mjs --c-wasm other.wasm --as-wasm other.wasm   # time other builds of the same exports
//   node bench.mjs --rounds 5 --ms 10 --batches 5 --json out.json
// Each kernel is timed in `rounds` rounds, C and AS back to back, alternating which goes first; a
// round's figure is the median of its batches. Reported: best = the fastest round (other load on
// the machine only ever adds time), median = the median round, and AS/C = the median over rounds of
// the paired ratio AS time / C time (both measured within ~0.1 s of each other).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
/** The value after `name` on the command line, or `dflt`. @template T @param {string} name @param {T} dflt @returns {string | T} */
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i < 0 ? dflt : argv[i + 1];
};
const STREAM = argv.includes('--stream');
const ONLY = opt('--only', '');
const BATCH_MS = Number(opt('--ms', 10));
const BATCHES = Number(opt('--batches', 5));
const ROUNDS = Number(opt('--rounds', 5));
const WARM_MS = Number(opt('--warm', 60));
const JSON_OUT = opt('--json', '');
const STREAM_BYTES = 64 << 20;

// ------------------------------------------------------------------ data
/** @param {number} seed @returns {() => number} uniform in [0, 1) */
function rng(seed) {
  // mulberry32
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** @param {number} h f16 bits */
function f16ToF32(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** A random f16 scale: mostly positive normals in [2^-10, 2^-1), plus some zeros, subnormals and negatives. @param {() => number} r */
function randomScale(r) {
  const u = r();
  if (u < 0.01) return 0;
  if (u < 0.02) return 1 + Math.floor(r() * 0x3ff); // subnormal
  const h = ((5 + Math.floor(r() * 9)) << 10) | Math.floor(r() * 1024);
  return u < 0.03 ? h | 0x8000 : h;
}

/**
 * One quantised block [IN, OUT] in molm-web's layout: words [IN/P, OUT] then f16 scales [IN/32, OUT], two per u32.
 * @param {4 | 8} bits @param {number} IN @param {number} OUT @param {() => number} r
 */
function makeQuant(bits, IN, OUT, r) {
  const per = 32 / bits;
  const nWords = (IN / per) * OUT;
  const nScales = (IN / 32) * OUT;
  const block = new Uint32Array(nWords + Math.ceil(nScales / 2));
  const lo = bits === 4 ? -8 : -128; // q8 stores -127..127; -128 also checks sign extension
  const span = bits === 4 ? 16 : 256;
  const mask = (1 << bits) - 1;
  for (let m = 0; m < nWords; m++) {
    let word = 0;
    for (let k = 0; k < per; k++) word |= ((lo + Math.floor(r() * span)) & mask) << (bits * k);
    block[m] = word >>> 0;
  }
  const scales = new Uint16Array(block.buffer, nWords * 4, nScales); // little-endian: scale 2m low half of word m
  for (let m = 0; m < nScales; m++) scales[m] = randomScale(r);
  return block;
}

/** @param {number} IN @param {() => number} r */
function makeX(IN, r) {
  const x = new Float32Array(IN);
  for (let i = 0; i < IN; i++) x[i] = r() * 2 - 1;
  return x;
}

// ------------------------------------------------------------------ plain JS references
const fr = Math.fround;
/** @param {4 | 8} bits @param {Float32Array} x @param {Uint32Array} block @param {number} IN @param {number} OUT */
function refQuant(bits, x, block, IN, OUT) {
  const per = 32 / bits;
  const nWords = (IN / per) * OUT;
  const scales = new Uint16Array(block.buffer, block.byteOffset + nWords * 4, (IN / 32) * OUT);
  const y = new Float32Array(OUT);
  const up = 32 - bits;
  for (let g = 0; g < IN / 32; g++) {
    for (let j = 0; j < OUT; j++) {
      let s = 0;
      for (let i = 32 * g; i < 32 * g + 32; i++) {
        const word = block[Math.floor(i / per) * OUT + j];
        const q = (word << (up - bits * (i % per))) >> up;
        s = fr(s + fr(x[i] * q));
      }
      y[j] = fr(y[j] + fr(s * f16ToF32(scales[g * OUT + j])));
    }
  }
  return y;
}
/** @param {Float32Array} x @param {Float32Array} W @param {number} IN @param {number} OUT */
function refF32(x, W, IN, OUT) {
  const y = new Float32Array(OUT);
  for (let i = 0; i < IN; i++) for (let j = 0; j < OUT; j++) y[j] = fr(y[j] + fr(x[i] * W[i * OUT + j]));
  return y;
}

// ------------------------------------------------------------------ modules
/** A kernel: y = x · W, each argument a byte address in the module's memory. @typedef {(x: number, w: number, y: number, IN: number, OUT: number) => void} Kernel */
/** What as.wasm and c.wasm export. @typedef {{ memory: WebAssembly.Memory, heap_base: () => number } & Record<`${'q4' | 'q8' | 'f32'}_${'x4' | 'x16'}`, Kernel>} Exports */
/** @typedef {Awaited<ReturnType<typeof load>>} Module */

/** @param {string} name @param {string} [path] */
async function load(name, path = join(here, 'build', `${name}.wasm`)) {
  const bytes = readFileSync(path);
  const { instance } = await WebAssembly.instantiate(bytes, {
    env: {
      abort: () => {
        throw new Error(`${name}: abort`);
      },
    },
  });
  const ex = /** @type {Exports} */ (instance.exports);
  return { name, size: bytes.length, ex, mem: ex.memory, base: (ex.heap_base() + 63) & ~63 };
}
/** @param {Module} mod @param {number} bytes */
function ensure(mod, bytes) {
  const have = mod.mem.buffer.byteLength;
  if (have < bytes) mod.mem.grow(Math.ceil((bytes - have) / 65536));
}
/**
 * Lay x, y and `copies` copies of W out in the module's memory; returns byte addresses.
 * @param {Module} mod @param {Float32Array} x @param {Float32Array | Uint32Array} W @param {number} OUT @param {number} copies
 */
function place(mod, x, W, OUT, copies) {
  const xp = mod.base;
  const yp = xp + ((x.byteLength + 63) & ~63);
  const wp = yp + ((OUT * 4 + 4095) & ~4095);
  const stride = (W.byteLength + 4095) & ~4095;
  ensure(mod, wp + stride * copies);
  const u8 = new Uint8Array(mod.mem.buffer);
  u8.set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength), xp);
  u8.set(new Uint8Array(W.buffer, W.byteOffset, W.byteLength), wp);
  for (let c = 1; c < copies; c++) u8.copyWithin(wp + c * stride, wp, wp + W.byteLength);
  return { xp, yp, wp, stride };
}
/** @param {Module} mod @param {number} yp @param {number} OUT */
function readY(mod, yp, OUT) {
  return new Float32Array(mod.mem.buffer, yp, OUT).slice();
}

/** @param {Float32Array} got @param {Float32Array} want */
function compare(got, want) {
  const gb = new Uint32Array(got.buffer),
    wb = new Uint32Array(want.buffer);
  let mismatched = 0,
    maxRel = 0,
    maxAbs = 0,
    refMax = 0;
  for (let j = 0; j < want.length; j++) {
    refMax = Math.max(refMax, Math.abs(want[j]));
    if (gb[j] === wb[j] || (Number.isNaN(got[j]) && Number.isNaN(want[j]))) continue;
    mismatched++;
    const d = Math.abs(got[j] - want[j]);
    maxAbs = Math.max(maxAbs, d);
    maxRel = Math.max(maxRel, want[j] === 0 ? (d === 0 ? 0 : Infinity) : d / Math.abs(want[j]));
  }
  return { mismatched, maxRel, maxAbs, refMax, ok: maxRel <= 1e-5 };
}

// ------------------------------------------------------------------ timing
/** @param {(call: number) => void} fn @param {number} warmMs */
function time(fn, warmMs) {
  // warm up (lets v8 tier each kernel up from Liftoff to TurboFan), calibrate, then time batches
  let t0 = performance.now(),
    calls = 0;
  do {
    fn(calls);
    calls++;
  } while (performance.now() - t0 < warmMs);
  const perCall = (performance.now() - t0) / calls;
  const n = Math.max(1, Math.round(BATCH_MS / perCall));
  const ns = [];
  let c = 0;
  for (let b = 0; b < BATCHES; b++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) fn(c++);
    ns.push(((performance.now() - t) * 1e6) / n);
  }
  return median(ns);
}
const median = (/** @type {number[]} */ a) => [...a].sort((p, q) => p - q)[a.length >> 1];

// ------------------------------------------------------------------ main
const mods = [await load('c', opt('--c-wasm', undefined)), await load('as', opt('--as-wasm', undefined))];
const shapes = [
  [1024, 2048],
  [2048, 1024],
];
const kernels = /** @type {const} */ (['q4', 'q8', 'f32']);
const variants = /** @type {const} */ (['x4', 'x16']);
let failures = 0;

// 1. Exhaustive f16 scale check: IN = 32, OUT = 65536, scale j = f16 bits j, q = 1 at input 0 only.
{
  const IN = 32,
    OUT = 65536;
  const x = new Float32Array(IN).fill(0.25);
  x[0] = 1;
  for (const bits of /** @type {const} */ ([4, 8])) {
    const per = 32 / bits;
    const block = new Uint32Array((IN / per) * OUT + OUT / 2);
    for (let j = 0; j < OUT; j++) block[j] = 1; // word (0, j): value k = 0 is 1, the rest 0
    const scales = new Uint16Array(block.buffer, (IN / per) * OUT * 4, OUT);
    for (let j = 0; j < OUT; j++) scales[j] = j;
    const want = refQuant(bits, x, block, IN, OUT);
    for (const mod of mods)
      for (const v of variants) {
        const { xp, yp, wp } = place(mod, x, block, OUT, 1);
        mod.ex[`q${bits}_${v}`](xp, wp, yp, IN, OUT);
        const c = compare(readY(mod, yp, OUT), want);
        if (c.mismatched) {
          failures++;
          console.log(`FAIL f16 check ${mod.name} q${bits}_${v}: ${c.mismatched} of 65536 differ`);
        }
      }
  }
  console.log(`f16 scale check (all 65536 f16 bit patterns, q4/q8 x4/x16, c/as): ${failures ? 'FAILED' : 'bit-exact'}`);
}

// 2. Correctness against the JS reference, then timing.
/**
 * @typedef {{ kernel: string, shape: string, toolchain: string, ns: number, best: number, rounds: number[], spread: number,
 *   macs: number, gmacs: number, gbs: number, bitExact: boolean, maxRel: number, copies: number, pair?: number }} Row
 */
/** @type {Row[]} */
const rows = [];
console.log(
  `mode: ${STREAM ? `stream (weights rotate over copies totalling >= ${STREAM_BYTES >> 20} MiB)` : 'hot (same block every call)'}; ` +
    `median of ${ROUNDS} rounds, each the median of ${BATCHES} batches of ~${BATCH_MS} ms; node ${process.version}`,
);
for (const [IN, OUT] of shapes) {
  const r = rng(IN * 7 + OUT);
  const x = makeX(IN, r);
  for (const k of kernels) {
    let W, want;
    if (k === 'f32') {
      W = new Float32Array(IN * OUT);
      for (let m = 0; m < W.length; m++) W[m] = r() * 2 - 1;
      want = refF32(x, W, IN, OUT);
    } else {
      const bits = k === 'q4' ? 4 : 8;
      W = makeQuant(bits, IN, OUT, r);
      want = refQuant(bits, x, W, IN, OUT);
    }
    const copies = STREAM ? Math.max(2, Math.ceil(STREAM_BYTES / W.byteLength)) : 1;
    for (const v of variants) {
      const label = `${k}_${v} ${IN}x${OUT}`;
      if (ONLY && !label.includes(ONLY)) continue;
      const runs = mods.map((mod) => {
        const { xp, yp, wp, stride } = place(mod, x, W, OUT, copies);
        const fn = mod.ex[`${k}_${v}`];
        for (let c = 0; c < copies; c++) fn(xp, wp + c * stride, yp, IN, OUT);
        const check = compare(readY(mod, yp, OUT), want);
        if (!check.ok) failures++;
        const call = copies === 1 ? () => fn(xp, wp, yp, IN, OUT) : (/** @type {number} */ i) => fn(xp, wp + (i % copies) * stride, yp, IN, OUT);
        return { mod, check, call, rounds: /** @type {number[]} */ ([]) };
      });
      for (let r = 0; r < ROUNDS; r++) {
        for (const run of r % 2 ? [...runs].reverse() : runs) run.rounds.push(time(run.call, r === 0 ? WARM_MS : 5));
      }
      for (const { mod, check, rounds } of runs) {
        const ns = median(rounds);
        /** @type {Row} */
        const row = {
          kernel: `${k}_${v}`,
          shape: `${IN}x${OUT}`,
          toolchain: mod.name,
          ns: Math.round(ns),
          best: Math.round(Math.min(...rounds)),
          rounds: rounds.map(Math.round),
          spread: (Math.max(...rounds) - Math.min(...rounds)) / ns,
          macs: IN * OUT,
          gmacs: (IN * OUT) / Math.min(...rounds),
          gbs: W.byteLength / Math.min(...rounds),
          bitExact: check.mismatched === 0,
          maxRel: check.maxRel,
          copies,
        };
        rows.push(row);
        console.log(
          `${label.padEnd(20)} ${mod.name.padEnd(3)} best ${String(row.best).padStart(8)} ns/call (rounds ${row.rounds.join(' ')})` +
            `  ${row.gmacs.toFixed(2).padStart(6)} GMAC/s  ${row.gbs.toFixed(2).padStart(6)} GB/s weights` +
            `  ${check.mismatched === 0 ? 'bit-exact' : `${check.mismatched} differ, max rel ${check.maxRel.toExponential(2)}`}${check.ok ? '' : '  FAIL'}`,
        );
      }
    }
  }
}

// 3. Summary table (markdown). GMAC/s from the best round.
console.log(
  `\n| kernel | shape | C best ns | C GMAC/s | AS best ns | AS GMAC/s | AS/C time (paired median) | C median ns | AS median ns | outputs vs JS ref |`,
);
console.log(`|---|---|---:|---:|---:|---:|---:|---:|---:|---|`);
for (let i = 0; i < rows.length; i += 2) {
  const c = rows[i],
    a = rows[i + 1];
  c.pair = a.pair = median(a.rounds.map((t, r) => t / c.rounds[r]));
  const exact = c.bitExact && a.bitExact ? 'bit-exact (both)' : `max rel C ${c.maxRel.toExponential(1)}, AS ${a.maxRel.toExponential(1)}`;
  console.log(
    `| ${c.kernel} | ${c.shape} | ${c.best} | ${c.gmacs.toFixed(2)} | ${a.best} | ${a.gmacs.toFixed(2)} | ${c.pair.toFixed(2)} | ${c.ns} | ${a.ns} | ${exact} |`,
  );
}
console.log(`\nwasm size: c.wasm ${mods[0].size} B, as.wasm ${mods[1].size} B (all six kernels each)`);
if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ stream: STREAM, node: process.version, sizes: { c: mods[0].size, as: mods[1].size }, rows }, null, 2));
console.log(failures ? `${failures} check(s) FAILED` : 'all outputs match the JS reference');
process.exitCode = failures ? 1 : 0;
