import { softplus } from './math.ts';

// Stick-breaking attention (ModuleFormer): the newest key breaks off sigmoid(l_t) of the stick,
// each older key j gets sigmoid(l_j) of what the newer ones left:
//   A_j = sigmoid(l_j) · Π_{j<m≤t} (1 − sigmoid(l_m)),   o = Σ_j A_j V_j,
// and the leftover 1 − Σ A_j is discarded. Products of (1 − sigmoid) underflow quickly over a
// long context, so they are summed in log space: log(1 − sigmoid(l)) = −softplus(l) and
// log sigmoid(l) = −softplus(−l). Every exponent is ≤ 0, so no running maximum is needed.

/** log(sigmoid(l)), accurate for both signs of l. */
function logSigmoid(l: number): number {
  return -softplus(-l);
}

function dot(a: Float64Array, aOff: number, b: Float64Array, bOff: number, n: number): number {
  let acc = 0;
  for (let i = 0; i < n; i++) acc += a[aOff + i] * b[bOff + i];
  return acc;
}

/**
 * Causal stick-breaking attention for T query rows, each with k slot queries of H heads.
 *
 * q is [T, k, H, d]; keys and values are [L, H*d] (head h in columns h*d..h*d+d-1) and L must
 * cover pos0 + T rows. Query row t is at absolute position pos0 + t and attends keys
 * 0..pos0+t, its own key included; keys after it neither receive weight nor break the stick.
 * Head h of every slot reads K/V head h. Scale 1/√d. Returns [T, k, H*d].
 *
 * This is the direct form: all logits of a row first, then the suffix sums of softplus, then
 * the weighted sum in key order — a different order of operations from the segment walk below,
 * so the two check each other.
 */
export function stickBreakingAttention(
  q: Float64Array,
  keys: Float64Array,
  values: Float64Array,
  T: number,
  k: number,
  H: number,
  d: number,
  pos0: number,
): Float64Array {
  const width = H * d;
  const L = pos0 + T;
  if (keys.length < L * width || values.length < L * width) {
    throw new RangeError(`attention needs ${L} cached rows of width ${width}; keys hold ${keys.length / width}, values ${values.length / width}`);
  }
  const scale = 1 / Math.sqrt(d);
  const out = new Float64Array(T * k * width);
  const logits = new Float64Array(L);
  // brokenAfter[j] = Σ_{j<m≤t} softplus(l_m): minus the log of what keys newer than j left.
  const brokenAfter = new Float64Array(L);

  for (let t = 0; t < T; t++) {
    const last = pos0 + t;
    for (let s = 0; s < k; s++) {
      for (let h = 0; h < H; h++) {
        const qOff = ((t * k + s) * H + h) * d;
        const col = h * d;
        for (let j = 0; j <= last; j++) logits[j] = dot(q, qOff, keys, j * width + col, d) * scale;
        brokenAfter[last] = 0;
        for (let j = last; j > 0; j--) brokenAfter[j - 1] = brokenAfter[j] + softplus(logits[j]);
        const oOff = (t * k + s) * width + col;
        for (let j = 0; j <= last; j++) {
          const a = Math.exp(logSigmoid(logits[j]) - brokenAfter[j]);
          const vOff = j * width + col;
          for (let i = 0; i < d; i++) out[oOff + i] += a * values[vOff + i];
        }
      }
    }
  }
  return out;
}

/** Partial result of stick-breaking attention over one contiguous segment of keys. */
export interface Segment {
  /** Σ_j A_j V_j over the segment, with the stick restarted at the segment's newest key. */
  o: Float64Array;
  /** −Σ_j softplus(l_j) over the segment: the log of the stick the segment leaves to older keys. */
  s: number;
}

/**
 * One head of one query over keys from..to−1 (to−1 newest), the unit of split-context decode.
 * keys/values rows are `stride` wide and this head's d columns start at `offset`. Walks keys
 * newest to oldest carrying the log of the remaining stick, exactly as the decode kernel does.
 * An empty segment is the identity of mergeSegments (o = 0, s = 0).
 */
export function stickBreakingSegment(
  q: Float64Array,
  keys: Float64Array,
  values: Float64Array,
  stride: number,
  offset: number,
  d: number,
  from: number,
  to: number,
): Segment {
  const scale = 1 / Math.sqrt(d);
  const o = new Float64Array(d);
  let remaining = 0; // log of the stick left by keys newer than j
  for (let j = to - 1; j >= from; j--) {
    const l = dot(q, 0, keys, j * stride + offset, d) * scale;
    const a = Math.exp(logSigmoid(l) + remaining);
    const vOff = j * stride + offset;
    for (let i = 0; i < d; i++) o[i] += a * values[vOff + i];
    remaining -= softplus(l);
  }
  return { o, s: remaining };
}

/**
 * Joins two adjacent segments, `newer` directly after `older`: every weight in the older one is
 * further scaled by the stick the newer one leaves, exp(S_newer). Associative, so segments can
 * be reduced in any tree as long as older/newer order is kept.
 */
export function mergeSegments(older: Segment, newer: Segment): Segment {
  const f = Math.exp(newer.s);
  const o = new Float64Array(newer.o.length);
  for (let i = 0; i < o.length; i++) o[i] = newer.o[i] + f * older.o[i];
  return { o, s: older.s + newer.s };
}
