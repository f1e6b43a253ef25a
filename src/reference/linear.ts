/**
 * nn.Linear on x [rows, inDim]: y = x · Wᵀ + b with W stored [outDim, inDim] as torch stores it,
 * so each output is a dot product of two contiguous rows. Returns [rows, outDim].
 */
export function linear(x: Float64Array, rows: number, inDim: number, outDim: number, weight: ArrayLike<number>, bias: ArrayLike<number> | null): Float64Array {
  const out = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    const xBase = r * inDim;
    for (let o = 0; o < outDim; o++) {
      const wBase = o * inDim;
      let acc = 0;
      for (let i = 0; i < inDim; i++) acc += x[xBase + i] * weight[wBase + i];
      out[r * outDim + o] = bias ? acc + bias[o] : acc;
    }
  }
  return out;
}
