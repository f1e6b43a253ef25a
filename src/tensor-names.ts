import { hasKvProjections, type ModelConfig } from './config.ts';

/** Hugging Face names of one block's tensors (docs/architecture.md, "The numerical contract"). */
export interface LayerTensorNames {
  ln1Weight: string;
  ln1Bias: string;
  attGate0Weight: string;
  attGate0Bias: string;
  attGate3Weight: string;
  queryExperts: string;
  outputExperts: string;
  kWeight: string;
  kBias: string;
  vWeight: string;
  vBias: string;
  ln2Weight: string;
  ln2Bias: string;
  mlpGate0Weight: string;
  mlpGate0Bias: string;
  mlpGate3Weight: string;
  upExperts: string;
  downExperts: string;
}

export const WTE = 'transformer.wte.weight';
export const LN_F_WEIGHT = 'transformer.ln_f.weight';
export const LN_F_BIAS = 'transformer.ln_f.bias';
export const LM_HEAD = 'lm_head.weight';

export function layerTensorNames(layer: number): LayerTensorNames {
  const p = `transformer.h.${layer}`;
  return {
    ln1Weight: `${p}.ln_1.weight`,
    ln1Bias: `${p}.ln_1.bias`,
    attGate0Weight: `${p}.attn.q_proj.gate.w_gate.0.weight`,
    attGate0Bias: `${p}.attn.q_proj.gate.w_gate.0.bias`,
    attGate3Weight: `${p}.attn.q_proj.gate.w_gate.3.weight`,
    queryExperts: `${p}.attn.q_proj.experts.weight`,
    outputExperts: `${p}.attn.q_proj.output_experts.weight`,
    kWeight: `${p}.attn.k_proj.weight`,
    kBias: `${p}.attn.k_proj.bias`,
    vWeight: `${p}.attn.v_proj.weight`,
    vBias: `${p}.attn.v_proj.bias`,
    ln2Weight: `${p}.ln_2.weight`,
    ln2Bias: `${p}.ln_2.bias`,
    mlpGate0Weight: `${p}.mlpf.gate.w_gate.0.weight`,
    mlpGate0Bias: `${p}.mlpf.gate.w_gate.0.bias`,
    mlpGate3Weight: `${p}.mlpf.gate.w_gate.3.weight`,
    upExperts: `${p}.mlpf.experts.weight`,
    downExperts: `${p}.mlpf.output_experts.weight`,
  };
}

/** Buffers a checkpoint carries that the math never reads. */
export function isUnusedBuffer(name: string): boolean {
  return name.endsWith('.attn.mask') || name.endsWith('.attn.cum_weight');
}

/**
 * Every tensor the forward pass reads, with its shape, in load order (embedding, blocks, head).
 * Matrices are the tensors worth keeping in 16 bits; vectors are always uploaded as f32.
 */
export function expectedTensorShapes(c: ModelConfig): Map<string, number[]> {
  const C = c.nEmbd;
  const shapes = new Map<string, number[]>([[WTE, [c.vocabSize, C]]]);
  for (let l = 0; l < c.nLayer; l++) {
    const n = layerTensorNames(l);
    shapes.set(n.ln1Weight, [C]).set(n.ln1Bias, [C]);
    shapes.set(n.attGate0Weight, [c.gatingSize, C]).set(n.attGate0Bias, [c.gatingSize]);
    shapes.set(n.attGate3Weight, [c.nAttExperts, c.gatingSize]);
    shapes.set(n.queryExperts, [c.nAttExperts, C, c.attHidden]);
    shapes.set(n.outputExperts, [c.nAttExperts, c.attHidden, C]);
    if (hasKvProjections(c)) {
      shapes.set(n.kWeight, [c.attHidden, C]).set(n.kBias, [c.attHidden]);
      shapes.set(n.vWeight, [c.attHidden, C]).set(n.vBias, [c.attHidden]);
    }
    shapes.set(n.ln2Weight, [C]).set(n.ln2Bias, [C]);
    shapes.set(n.mlpGate0Weight, [c.gatingSize, C]).set(n.mlpGate0Bias, [c.gatingSize]);
    shapes.set(n.mlpGate3Weight, [c.nMlpExperts, c.gatingSize]);
    shapes.set(n.upExperts, [c.nMlpExperts, C, c.ffdHidden]);
    shapes.set(n.downExperts, [c.nMlpExperts, c.ffdHidden, C]);
  }
  shapes.set(LN_F_WEIGHT, [C]).set(LN_F_BIAS, [C]).set(LM_HEAD, [c.vocabSize, C]);
  return shapes;
}
