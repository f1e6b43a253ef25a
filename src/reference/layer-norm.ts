/**
 * LayerNorm over the last axis of x [rows, width], as torch.nn.LayerNorm computes it: biased
 * variance (divide by width), eps inside the square root, then the affine weight and bias.
 * Two passes (mean, then squared deviations) so that a large common offset does not cancel.
 */
export function layerNorm(x: Float64Array, rows: number, width: number, weight: ArrayLike<number>, bias: ArrayLike<number>, eps: number): Float64Array {
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) {
    const base = r * width;
    let mean = 0;
    for (let i = 0; i < width; i++) mean += x[base + i];
    mean /= width;
    let variance = 0;
    for (let i = 0; i < width; i++) {
      const dev = x[base + i] - mean;
      variance += dev * dev;
    }
    variance /= width;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let i = 0; i < width; i++) out[base + i] = (x[base + i] - mean) * inv * weight[i] + bias[i];
  }
  return out;
}
