#!/usr/bin/env node
// Peer benchmark: onnxruntime-web, wasm execution provider (CPU, not WebGPU), in Node,
// on the dense MoLM-350M-4B-active-shape models written by export.py.
//
//   node bench.mjs [--dir /tmp/ort-peer] [--layers 1,2] [--threads 2]
//                  [--prefill 32] [--decode 64] [--reps 3] [--prefill-reps 5] [--check]
//
// For each layer count: load dense-<L>layer.onnx, warm up (a short prefill plus a few
// decode steps), then, --reps times: time a --prefill token prefill from an empty cache
// (--prefill-reps times, median kept: one prefill is only tens of ms) followed by --decode
// greedy decode steps (argmax of the last logits, present_x fed back as past_x).
// Reported figures are medians over the reps.
// Prints one JSON object per model on stdout; progress goes to stderr.
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-web';

// System-wide busy CPU time in ms from /proc/stat (Linux), or null elsewhere. Used to
// tell how much CPU *other* processes took while we were timing (the machine may be shared).
function systemBusyMs() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = f;
    return ((user + nice + system + irq + softirq + (steal || 0)) * 1000) / 100; // USER_HZ = 100
  } catch {
    return null;
  }
}

/** @param {string[]} argv */
function parseArgs(argv) {
  const o = { dir: '/tmp/ort-peer', layers: '1,2', threads: 2, prefill: 32, decode: 64, reps: 3, 'prefill-reps': 5, check: false };
  // Written by name below: a number where the default is one, else the string.
  const fields = /** @type {Record<string, unknown>} */ (o);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const key = a.replace(/^--/, '');
    if (key === 'check') o.check = true;
    else if (key === 'help' || key === 'h') {
      console.log('usage: node bench.mjs [--dir D] [--layers 1,2] [--threads N] [--prefill 32] [--decode 64] [--reps 3] [--prefill-reps 5] [--check]');
      process.exit(0);
    } else if (key in o) fields[key] = typeof fields[key] === 'number' ? Number(argv[++i]) : argv[++i];
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const C = 1024;
const log = (/** @type {unknown[]} */ ...a) => console.error('[ort-peer]', ...a);

ort.env.wasm.numThreads = opts.threads;
ort.env.wasm.simd = true; // SIMD is the only build shipped in current releases; kept for older ones.
ort.env.logLevel = 'warning';

/** @param {ort.Tensor} logits float32 [1, S, V] */
function argmaxLast(logits) {
  const [, s, v] = logits.dims;
  const d = /** @type {Float32Array} */ (logits.data);
  let best = 0;
  let bv = -Infinity;
  for (let i = (s - 1) * v, j = 0; j < v; i++, j++)
    if (d[i] > bv) {
      bv = d[i];
      best = j;
    }
  return best;
}

/** @param {number[]} ids */
function idsTensor(ids) {
  return new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
}

/** @param {number} layers */
function emptyPast(layers) {
  return new ort.Tensor('float32', new Float32Array(0), [layers, 0, C]);
}

/** @param {ort.InferenceSession} session @param {number[]} ids @param {ort.Tensor} past */
async function step(session, ids, past) {
  const out = await session.run({ input_ids: idsTensor(ids), past_x: past });
  return { logits: out.logits, present: out.present_x };
}

/**
 * Prefill `prompt`, then `n` greedy decode steps. Returns timings and tokens.
 * @param {ort.InferenceSession} session @param {number} layers @param {number[]} prompt @param {number} n @param {number} [prefillReps]
 */
async function generate(session, layers, prompt, n, prefillReps = 1) {
  const cpu0 = process.cpuUsage();
  const sys0 = systemBusyMs();
  const t0 = performance.now();
  /** @type {number[]} */
  const prefillTimes = [];
  /** @type {ort.Tensor | undefined} */
  let logits;
  /** @type {ort.Tensor | undefined} */
  let present;
  for (let i = 0; i < prefillReps; i++) {
    const ts = performance.now();
    ({ logits, present } = await step(session, prompt, emptyPast(layers)));
    prefillTimes.push(performance.now() - ts);
  }
  if (!logits || !present) throw new Error(`--prefill-reps must be at least 1, got ${prefillReps}`);
  const t1 = performance.now();
  const cpu1 = process.cpuUsage(cpu0);
  const tokens = [];
  const lastHead = (/** @type {ort.Tensor} */ l) =>
    Array.from(/** @type {Float32Array} */ (l.data).subarray((l.dims[1] - 1) * l.dims[2], (l.dims[1] - 1) * l.dims[2] + 8));
  const firstHead = lastHead(logits);
  for (let i = 0; i < n; i++) {
    const tok = argmaxLast(logits);
    tokens.push(tok);
    ({ logits, present } = await step(session, [tok], present));
  }
  const t2 = performance.now();
  const cpu2 = process.cpuUsage(cpu0);
  const sys2 = systemBusyMs();
  const cpuMs = (/** @type {NodeJS.CpuUsage} */ u) => (u.user + u.system) / 1000;
  return {
    prefillMs: median(prefillTimes),
    decodeMs: t2 - t1,
    prefillCpuMs: cpuMs(cpu1), // over all prefill reps
    prefillWallMs: t1 - t0,
    decodeCpuMs: cpuMs(cpu2) - cpuMs(cpu1),
    tokens,
    firstHead,
    lastHead: lastHead(logits),
    presentDims: present.dims,
    // cores' worth of CPU used by other processes (and steal) during this run
    otherLoad: sys0 === null || sys2 === null ? null : Math.max(0, (sys2 - sys0 - cpuMs(cpu2)) / (t2 - t0)),
  };
}

/**
 * export.py's PyTorch reference for a model.
 * @typedef {{ prompt: number[], greedy_tokens: number[], prefill_last_logits_head: number[], final_last_logits_head: number[] }} Reference
 */
/** @param {string} refPath @param {Awaited<ReturnType<typeof generate>>} r */
function checkAgainstRef(refPath, r) {
  /** @type {Reference} */
  const ref = JSON.parse(fs.readFileSync(refPath, 'utf8'));
  const maxDiff = (/** @type {number[]} */ a, /** @type {number[]} */ b) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));
  const d1 = maxDiff(r.firstHead, ref.prefill_last_logits_head);
  const d2 = maxDiff(r.lastHead, ref.final_last_logits_head);
  const tokOk = JSON.stringify(r.tokens) === JSON.stringify(ref.greedy_tokens);
  const ok = tokOk && d1 < 1e-3 && d2 < 1e-3;
  log(
    `check vs PyTorch: tokens ${tokOk ? 'match' : `DIFFER ${r.tokens} vs ${ref.greedy_tokens}`}, ` +
      `max |dlogit| prefill ${d1.toExponential(2)}, after decode ${d2.toExponential(2)} -> ${ok ? 'OK' : 'FAIL'}`,
  );
  return ok;
}

/** @param {number[]} xs */
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

/** Deterministic pseudo-random prompt. @param {number} n */
function makePrompt(n, seed = 12345) {
  let x = seed;
  const out = [];
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out.push(x % 50295);
  }
  return out;
}

let allOk = true;
for (const layers of String(opts.layers).split(',').map(Number)) {
  const file = path.join(opts.dir, `dense-${layers}layer.onnx`);
  if (!fs.existsSync(file)) throw new Error(`${file} missing: run export.py first`);
  const tl0 = performance.now();
  const bytes = fs.readFileSync(file);
  const session = await ort.InferenceSession.create(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
  });
  const loadMs = performance.now() - tl0;
  log(`loaded ${path.basename(file)} in ${loadMs.toFixed(0)} ms (threads=${ort.env.wasm.numThreads})`);

  let checkOk = null;
  if (opts.check) {
    /** @type {Reference} */
    const ref = JSON.parse(fs.readFileSync(file.replace(/\.onnx$/, '.ref.json'), 'utf8'));
    checkOk = checkAgainstRef(file.replace(/\.onnx$/, '.ref.json'), await generate(session, layers, ref.prompt, ref.greedy_tokens.length));
    allOk &&= checkOk;
  }

  // Warm-up: full-size prefill + a few decode steps.
  await generate(session, layers, makePrompt(opts.prefill, 999), 4);

  /** @type {Awaited<ReturnType<typeof generate>>[]} */
  const runs = [];
  for (let r = 0; r < opts.reps; r++) {
    const res = await generate(session, layers, makePrompt(opts.prefill), opts.decode, opts['prefill-reps']);
    log(
      `rep ${r}: prefill ${opts.prefill} tok ${res.prefillMs.toFixed(1)} ms, decode ${opts.decode} tok ${res.decodeMs.toFixed(1)} ms ` +
        `(cpu/wall prefill ${(res.prefillCpuMs / res.prefillWallMs).toFixed(2)}, decode ${(res.decodeCpuMs / res.decodeMs).toFixed(2)}), ` +
        `other load ${res.otherLoad?.toFixed(2)} cores, present ${res.presentDims}`,
    );
    runs.push(res);
  }
  const prefillMs = median(runs.map((r) => r.prefillMs));
  const decodeMs = median(runs.map((r) => r.decodeMs));
  const sum = (/** @type {'prefillCpuMs' | 'prefillWallMs' | 'decodeCpuMs' | 'decodeMs'} */ k) => runs.reduce((a, r) => a + r[k], 0);
  console.log(
    JSON.stringify({
      layers,
      threads: ort.env.wasm.numThreads,
      prefill_tokens_per_s: +(opts.prefill / (prefillMs / 1000)).toFixed(2),
      decode_tokens_per_s: +(opts.decode / (decodeMs / 1000)).toFixed(2),
      ms_per_decode_token: +(decodeMs / opts.decode).toFixed(3),
      ort_version: ort.env.versions?.web ?? ort.env.versions?.common,
      prefill_tokens: opts.prefill,
      prefill_reps: opts['prefill-reps'],
      decode_tokens: opts.decode,
      reps: opts.reps,
      prefill_ms: +prefillMs.toFixed(1),
      // process CPU time / wall time: ~N when N threads are really busy.
      cpu_per_wall_prefill: +(sum('prefillCpuMs') / sum('prefillWallMs')).toFixed(2),
      cpu_per_wall_decode: +(sum('decodeCpuMs') / sum('decodeMs')).toFixed(2),
      load_ms: +loadMs.toFixed(0),
      // CPU cores' worth taken by other processes while timing (max over reps); >~0.1 means contended.
      other_load: runs[0].otherLoad === null ? null : +Math.max(...runs.map((r) => r.otherLoad ?? 0)).toFixed(2),
      check: checkOk,
    }),
  );
  await session.release();
}
if (!allOk) process.exit(1);
