import { randomF32, rng } from './numeric.ts';

// Inputs of the stick-breaking attention tests, shared by the WGSL and wasm kernels' tests.

/** How the logits are drawn: about ±`spread` around `shift`. */
export interface Logits {
  spread: number;
  shift?: number;
}
/** Logits mostly near 0: a few recent keys take the stick. */
export const NORMAL: Logits = { spread: 6 };
/** Logits of ±30: both tails of softplus. */
export const LARGE: Logits = { spread: 30 };
/**
 * Logits near −5: each key breaks off only ~0.7% of the stick, so hundreds of keys, every
 * segment and every key block of a long context, carry visible weight (with logits near 0
 * everything older than ~30 keys is below rounding and a wrong old block would go unseen).
 */
export const SLOW: Logits = { spread: 1, shift: -5 };

/** The attention's shape: k slots, heads of size d; MoLM's keys and values are one buffer. */
export interface AttentionShape {
  k: number;
  heads: number;
  d: number;
  shared: boolean;
}

/**
 * q [qRows, k, H·d] and a cache of `rows` rows of which the first `filled` hold random data; the
 * rest are NaN, so a kernel that reads past the keys of its step (even with weight 0) poisons
 * the output. q and keys are uniform in ±a with a² = spread, so q·K/√d spans about ±spread. A
 * shift adds 1 to every key element and shift/√d to every q element, which moves q·K/√d by
 * `shift` (plus noise of order a). Values are uniform in ±1 (the keys themselves when shared).
 */
export function attentionInputs(seed: number, s: AttentionShape, qRows: number, rows: number, filled: number, logits: Logits) {
  const rand = rng(seed);
  const width = s.heads * s.d;
  const a = Math.sqrt(logits.spread);
  const shift = logits.shift ?? 0;
  const q = randomF32(qRows * s.k * width, rand, a);
  const keys = new Float32Array(rows * width).fill(NaN);
  keys.set(randomF32(filled * width, rand, a));
  if (shift !== 0) {
    // Σ_i (q_i + t)(K_i + 1) / √d = d·t / √d + noise = shift + noise with t = shift / √d.
    const t = shift / Math.sqrt(s.d);
    for (let i = 0; i < q.length; i++) q[i] += t;
    for (let i = 0; i < filled * width; i++) keys[i] += 1;
  }
  let values = keys;
  if (!s.shared) {
    values = new Float32Array(rows * width).fill(NaN);
    values.set(randomF32(filled * width, rand, 1));
  }
  let vmax = 0;
  for (let i = 0; i < filled * width; i++) vmax = Math.max(vmax, Math.abs(values[i]));
  return { q, keys, values, vmax, width };
}
