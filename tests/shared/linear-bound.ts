// The float32 error bound of nn.Linear, shared by the WGSL and wasm linear kernels' tests.

const U = 2 ** -24;

/**
 * Float32 error allowed in y[r, j] = Σ_i x[r, i]·W[j, i] + b[j]: 4·√in·2^-24·max_r ‖x_r‖₁·max|W|
 * + 2·2^-24·max|y|. Rounding errors of a long sum grow like √in times the size of its terms
 * (the worst-case bound, in·2^-24·Σ|x·W|, is ~30× looser at in = 1024 and never reached);
 * measured errors sit 80-800× below this (≈ 2e-7 at in = 1024, where it is 1.2e-4). With |x| ≤ 1
 * and |W| ≤ 1/√in, outputs are O(0.3): a wrong weight row or token row, a dropped or doubled term
 * (≈ 0.25/√in, up to 1/√in) or a missing bias exceeds it.
 */
export function linearTolerance(x: Float32Array, rows: number, inDim: number, maxW: number, expected: ArrayLike<number>): number {
  let l1 = 0;
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < inDim; i++) s += Math.abs(x[r * inDim + i]);
    l1 = Math.max(l1, s);
  }
  let maxY = 0;
  for (let i = 0; i < expected.length; i++) maxY = Math.max(maxY, Math.abs(expected[i]));
  return 4 * Math.sqrt(inDim) * U * l1 * maxW + 2 * U * maxY;
}
