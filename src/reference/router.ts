import { linear } from './linear.ts';
import { geluErf } from './math.ts';

export interface Routing {
  /** Selected expert of each slot, [rows * k], slots in descending probability. */
  ids: Uint32Array;
  /** Softmax probability of each selected expert, [rows * k]; NOT renormalised over the k. */
  gates: Float64Array;
  /** Softmax over all experts, [rows * experts]. */
  probs: Float64Array;
}

/**
 * The ModuleFormer "mlp" gate: p = softmax(gelu_erf(x W0ᵀ + b0) W3ᵀ), then the k most likely
 * experts. The exact erf GELU matters here (the tanh one moves tiny-model logits by ~3e-3), and
 * the gates keep their raw probabilities: renormalising them over the k is a large error.
 * Ties are broken by the lower expert index so the result is deterministic.
 */
export function routerTopK(
  x: Float64Array,
  rows: number,
  width: number,
  w0: ArrayLike<number>,
  b0: ArrayLike<number>,
  w3: ArrayLike<number>,
  gating: number,
  experts: number,
  k: number,
): Routing {
  const hidden = linear(x, rows, width, gating, w0, b0);
  for (let i = 0; i < hidden.length; i++) hidden[i] = geluErf(hidden[i]);
  const probs = linear(hidden, rows, gating, experts, w3, null);
  const ids = new Uint32Array(rows * k);
  const gates = new Float64Array(rows * k);
  const taken = new Uint8Array(experts);

  for (let r = 0; r < rows; r++) {
    const row = probs.subarray(r * experts, (r + 1) * experts);
    softmaxInPlace(row);
    // k selection passes: each takes the largest untaken probability; strict > keeps the
    // lowest index among equals.
    taken.fill(0);
    for (let s = 0; s < k; s++) {
      let best = -1;
      for (let e = 0; e < experts; e++) {
        if (!taken[e] && (best < 0 || row[e] > row[best])) best = e;
      }
      taken[best] = 1;
      ids[r * k + s] = best;
      gates[r * k + s] = row[best];
    }
  }
  return { ids, gates, probs };
}

/** Softmax with the maximum subtracted, so no exponent is positive. */
function softmaxInPlace(v: Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < v.length; i++) max = Math.max(max, v[i]);
  let sum = 0;
  for (let i = 0; i < v.length; i++) {
    v[i] = Math.exp(v[i] - max);
    sum += v[i];
  }
  for (let i = 0; i < v.length; i++) v[i] /= sum;
}
