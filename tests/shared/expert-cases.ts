import { expertCombine as combineRef, expertProject as projectRef } from '../../src/reference/experts.ts';

// Random expert routing and the float32 error bounds shared by the expert kernels' tests
// (expert-matvec for decode, expert-grouped for prefill).

export const U = 2 ** -24;
/** max |gelu_tanh'(v)|: how much a pre-activation error can grow through the GELU. */
export const GELU_SLOPE = 1.13;

/**
 * Float32 error allowed in one slot's x @ W[e]: 4·√in·2^-24·max ‖x‖₁·max|W|. Rounding errors of a
 * long sum grow like √in times the size of its terms (the worst-case bound, in·2^-24·Σ|x·W|, is
 * ~30× looser at in = 1024 and never reached); measured errors sit 100-800× below this (≈ 2.5e-7
 * at in = 1024, where it is 1.2e-4). With |x| ≤ 1 and |W| ≤ 1/√in, outputs are O(0.3): a wrong
 * expert, slot, gate or row, or a dropped term (≈ 0.25/√in, up to 1/√in), exceeds it.
 */
export function slotBound(x: Float32Array, inDim: number, maxW: number): number {
  let l1 = 0;
  for (let r = 0; r * inDim < x.length; r++) {
    let s = 0;
    for (let i = 0; i < inDim; i++) s += Math.abs(x[r * inDim + i]);
    l1 = Math.max(l1, s);
  }
  return 4 * Math.sqrt(inDim) * U * l1 * maxW;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export function maxGateSum(gates: Float32Array, k: number): number {
  let m = 0;
  for (let r = 0; r * k < gates.length; r++)
    m = Math.max(
      m,
      gates.slice(r * k, (r + 1) * k).reduce((a, b) => a + b, 0),
    );
  return m;
}

/**
 * k distinct random experts per row, as a top-k router gives. With `bias` > 0 the choice leans
 * towards low ids (a pool position is drawn as rand^(1 + bias)), so some experts get many slots
 * and others none, as real routing does.
 */
export function randomIds(rows: number, k: number, experts: number, rand: () => number, bias = 0): Uint32Array {
  const ids = new Uint32Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const pool = Array.from({ length: experts }, (_, e) => e);
    for (let s = 0; s < k; s++) ids[r * k + s] = pool.splice(Math.floor(rand() ** (1 + bias) * pool.length), 1)[0];
  }
  return ids;
}

/** Gates as the router gives them: positive, not renormalised (sum < 1). */
export function randomGates(rows: number, k: number, rand: () => number): Float32Array {
  return Float32Array.from({ length: rows * k }, () => 0.05 + 0.4 * rand());
}

/**
 * The float64 reference of a combine, h0[r] + Σ_s gates[r, s]·(x[r, s] @ W[ids[r, s]]), and its
 * float32 tolerance: each slot's bound scaled by its gate, plus k + 2 roundings of the gate
 * products, their sum and the residual add.
 */
export function combineCase(
  c: { rows: number; inDim: number; outDim: number; k: number },
  x: Float32Array,
  weight: Float32Array,
  maxW: number,
  ids: Uint32Array,
  gates: Float32Array,
  h0: Float32Array,
): { expected: Float64Array; tol: number } {
  const ys = projectRef(Float64Array.from(x), c.rows, c.k, true, c.inDim, c.outDim, weight, ids, 'none');
  const add = combineRef(ys, Float64Array.from(gates), c.rows, c.k, c.outDim);
  const expected = Float64Array.from(h0, (v, i) => v + add[i]);
  return { expected, tol: maxGateSum(gates, c.k) * slotBound(x, c.inDim, maxW) + (c.k + 2) * U * maxAbs(expected) };
}
