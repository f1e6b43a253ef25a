import { describe, expect, it } from 'vitest';
import { applyRepetitionPenalty, argmax as argmaxRef, sample as sampleRef, uniformFromSeed } from '../../src/reference/sampler.ts';
import { randomF32, rng } from '../shared/numeric.ts';
import { kernelMemory, THREADS, type KernelMemory } from './harness.ts';

// Token selection must be the same token as src/reference/sampler.ts's, not merely close: the
// kernel implements the same definition in float64 (softmax with the maximum subtracted, the
// top-k and top-p thresholds with ties at a threshold kept, the draw walking the kept tokens in
// index order). Its float32 inputs (logits, temperature, topP) are handed to the reference as
// the same float32 values, so both compute the same float64 expressions; they differ only in
// the last bits of exp (the kernel's own polynomial, math.c's exp_f64, against Math.exp) and in
// the order some sums are taken (the thresholds come from a quickselect instead of a sort). Those
// are relative differences of ~1e-16, and they can change a token only where two probabilities,
// a cumulative mass and topP · (kept mass), or u · total and a running sum lie within ~1e-16 of
// each other. Random logits and u never put a boundary that close, and exact ties (equal logits)
// give exactly equal probabilities on each side, so both keep or drop a tied group whole: every
// comparison here must be equal. A mismatch is a real difference of definition (a tie kept on
// one side only, a threshold off by one token, a draw in probability order instead of index
// order, a probability that is 0 on one side only), not a rounding matter. The one found so far
// was the last: exp_f64 flushed e^x to 0 from x < −745.0 where float64 still has 2^-1074 (see
// the underflow test below).

/** The sampling settings, as the kernel receives them (temperature and topP are f32 arguments). */
interface Settings {
  temperature: number;
  topK: number;
  topP: number;
}

/** Logits shapes: each keeps some case interesting (flat mass, one clear head, many exact ties). */
function logitsOf(kind: 'spread' | 'peaked' | 'ties' | 'equal', vocab: number, rand: () => number): Float32Array {
  switch (kind) {
    case 'spread': // many tokens with visible mass: top-p keeps hundreds
      return randomF32(vocab, rand, 8);
    case 'peaked': {
      // a language model's shape: a handful of likely tokens over a broad tail
      const l = randomF32(vocab, rand, 4);
      for (let i = 0; i < 20; i++) l[Math.floor(rand() * vocab)] += 10 + 5 * rand();
      return l;
    }
    case 'ties': // 25 levels: the top-k and top-p thresholds fall inside groups of equal logits
      return randomF32(vocab, rand, 6).map((v) => Math.round(v * 2) / 2);
    case 'equal':
      return new Float32Array(vocab).fill(1.5);
  }
}

/**
 * Runs the kernel for every setting and u on one logits vector, and returns the mismatches with
 * the reference (empty when all agree) and the set of tokens drawn.
 */
function compare(m: KernelMemory, logits: Float32Array, settings: Settings[], us: number[]) {
  const V = logits.length;
  const at = m.put(logits);
  const p = m.alloc(V * 8);
  const sel = m.alloc(V * 8);
  const mismatches: string[] = [];
  const drawn = new Set<number>();
  for (const s of settings) {
    const ref = { temperature: Math.fround(s.temperature), topK: s.topK, topP: Math.fround(s.topP) };
    for (const u of us) {
      const got = m.k.sample(at, V, s.temperature, s.topK, s.topP, u, p, sel);
      const want = sampleRef(logits, ref, u);
      drawn.add(got);
      if (got !== want) mismatches.push(`${JSON.stringify(s)} u=${u}: got ${got}, want ${want}`);
    }
  }
  // The kernel must not touch the logits (the model reads them again for the next draw).
  expect(Buffer.from(m.f32(at, V).buffer).equals(Buffer.from(logits.buffer)), 'logits unchanged').toBe(true);
  return { mismatches, drawn };
}

function grid(temperatures: number[], topKs: number[], topPs: number[]): Settings[] {
  const out: Settings[] = [];
  for (const temperature of temperatures) for (const topK of topKs) for (const topP of topPs) out.push({ temperature, topK, topP });
  return out;
}

/** u at both ends of [0, 1), the engine's hashed draws, and plain random doubles. */
function draws(rand: () => number, seed: number): number[] {
  return [0, 1 - 2 ** -24, uniformFromSeed(seed, 1), uniformFromSeed(seed, 2), rand(), rand()];
}

describe('wasm sampler', () => {
  for (const threads of THREADS) {
    describe(`${threads} thread(s)`, () => {
      it('sample: the reference token for vocab 1000, every combination of settings', async () => {
        const m = await kernelMemory(threads);
        const rand = rng(1000 + threads);
        const settings = grid([0, 0.05, 0.7, 1, 1.8], [0, 1, 40, 1000], [1, 0.9, 0.5, 0]);
        const all = new Set<number>();
        for (const kind of ['spread', 'peaked', 'ties', 'equal'] as const) {
          for (let v = 0; v < 3; v++) {
            const { mismatches, drawn } = compare(m, logitsOf(kind, 1000, rand), settings, draws(rand, v));
            expect(mismatches, `${kind} logits #${v}`).toEqual([]);
            drawn.forEach((t) => {
              all.add(t);
            });
          }
        }
        // The draws really spread over the vocabulary (u, top-k and top-p all matter).
        expect(all.size).toBeGreaterThan(100);
      });

      it('sample: the reference token for vocab 50295 (MoLM)', async () => {
        const m = await kernelMemory(threads);
        const rand = rng(50295 + threads);
        // One temperature per logits shape and two draws each: the float64 reference sorts the
        // whole vocabulary on every call (~15 ms), so the full grid stays with vocab 1000.
        for (const [kind, temperature] of [
          ['spread', 1],
          ['peaked', 0.7],
          ['ties', 1.3],
        ] as const) {
          const settings = grid([temperature], [0, 1, 40, 50295], [1, 0.9, 0.5, 0]);
          const { mismatches } = compare(m, logitsOf(kind, 50295, rand), settings, [uniformFromSeed(7, temperature * 10), rand()]);
          expect(mismatches, `${kind} logits`).toEqual([]);
        }
      });
    });
  }

  it('sample: a probability that underflows to a subnormal still counts (the float64 exp underflows where Math.exp does)', async () => {
    // Two tokens, [−d, 0] at temperature 0.01, u = 0: the draw is the first token with p > 0, so
    // token 0 exactly while e^(−d / 0.01) is not 0 in float64 (down to 2^-1074 at −745.13).
    // math.c's exp_f64 once cut to 0 below −745.0: token 1 for d in (7.4500, 7.4513).
    const m = await kernelMemory(1);
    const mismatches: string[] = [];
    for (let i = 0; i <= 400; i++) {
      const logits = new Float32Array([-(7.449 + i * 1e-5), 0]);
      const got = m.k.sample(m.put(logits), 2, 0.01, 0, 1, 0, m.alloc(16), m.alloc(16));
      const want = sampleRef(logits, { temperature: Math.fround(0.01), topK: 0, topP: 1 }, 0);
      if (got !== want) mismatches.push(`logits ${Array.from(logits)}: got ${got}, want ${want}`);
    }
    expect(mismatches).toEqual([]);
  });

  it('argmax: the lowest index among equal maxima, at either end, past -Infinity', async () => {
    const m = await kernelMemory(1);
    const rand = rng(5);
    const cases: Float32Array[] = [];
    for (const V of [1, 2, 1000, 50295]) cases.push(randomF32(V, rand, 10));
    const ties = randomF32(1000, rand, 10).map((v) => Math.round(v)); // the maximum, 10, occurs ~50 times
    cases.push(ties);
    const first = randomF32(1000, rand);
    first[0] = 5;
    cases.push(first);
    const last = randomF32(1000, rand);
    last[999] = 5;
    cases.push(last);
    cases.push(new Float32Array(1000).fill(-Infinity).map((v, i) => (i === 600 || i === 800 ? -1e30 : v)));
    cases.push(new Float32Array(777).fill(-2));
    for (const l of cases) expect(m.k.argmax(m.put(l), l.length), `vocab ${l.length}`).toBe(argmaxRef(l));
  });

  it('apply_penalty: the reference values, bit for bit, and nothing else changed', async () => {
    const m = await kernelMemory(1);
    const rand = rng(9);
    for (const penalty of [1.3, 0.8, 1, 2]) {
      const logits = randomF32(1000, rand, 6);
      logits[17] = 0;
      logits[18] = -0;
      // Distinct ids, as the model passes them (its context as a set): the kernel applies the
      // penalty once per listed id, the reference once per distinct id.
      const ids = [17, 18, 999, 0];
      while (ids.length < 150) {
        const id = Math.floor(rand() * 1000);
        if (!ids.includes(id)) ids.push(id);
      }
      const at = m.put(logits);
      m.k.apply_penalty(at, m.put(Int32Array.from(ids)), ids.length, penalty);
      // l / r in float32 is l / r in float64 rounded once (division is correctly rounded and
      // double rounding through float64 is innocuous), l · r is exact in float64: so the kernel
      // gives exactly the reference rounded to float32, with the f32 penalty it was given.
      const want = Float32Array.from(applyRepetitionPenalty(logits, ids, Math.fround(penalty)));
      expect(Buffer.from(m.f32(at, 1000).buffer).equals(Buffer.from(want.buffer)), `penalty ${penalty}`).toBe(true);
    }
  });
});
