import { expect } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../src/checkpoint/dtype.ts';
import { openCheckpoint } from '../../src/checkpoint/index.ts';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { planWeights } from '../../src/weight-plan.ts';
import { dequantize, isQuantType, quantize } from '../../src/quant/layout.ts';
import { ReferenceModel, loadReferenceWeights } from '../../src/reference/model.ts';

// tiny-molm (in `dir`) with q8 / q4 matrices, as both engines store it: C = 32 is a multiple of
// 32, so wte, lm_head, the routers' first layers, the attention experts and the MLP
// up-projection are quantised; G = 16 and F = 48 are not, and fall back to f16.

/** The float64 reference on the weights as the plan stores them: quantised, f16 or as is. */
export async function quantizedReference(dir: string, type: 'q8' | 'q4'): Promise<ReferenceModel> {
  const { config, tensors } = await openCheckpoint(nodeFileSource(dir));
  try {
    const plan = planWeights(config, tensors, { matrixType: type });
    const weights = await loadReferenceWeights(tensors);
    let quantised = 0;
    for (const e of plan.entries) {
      const values = Float32Array.from(weights.get(e.name)!);
      if (isQuantType(e.storage)) {
        weights.set(e.name, Float64Array.from(dequantize(quantize(values, e.shape, e.storage), e.shape, e.storage)));
        quantised++;
      } else if (e.storage === 'f16') {
        weights.set(
          e.name,
          Float64Array.from(values, (v) => f16ToF32(f32ToF16(v))),
        );
      } else {
        expect(e.storage).toBe('f32');
      }
    }
    expect(quantised).toBe(2 + 2 * 5); // wte, lm_head; per layer w_gate.0 ×2, q and o experts, MLP up
    return new ReferenceModel(config, weights);
  } finally {
    await tensors.close();
  }
}
