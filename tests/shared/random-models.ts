import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../../src/cli/synth.ts';

// Random models of shapes no golden has, shared by the WebGPU and wasm whole-model tests:
// odd widths, three heads, k/v projections, k = 3 of 5 attention experts. Larger-than-default
// init so logits spread over several units and a routing error shows.

export const GENERIC = {
  model_type: 'moduleformer',
  vocab_size: 301,
  n_embd: 40,
  n_layer: 3,
  n_head: 3,
  att_hidden: 36,
  ffd_hidden: 52,
  gating_size: 12,
  n_att_experts: 5,
  k_att: 3,
  n_mlp_experts: 7,
  k_mlp: 2,
  layer_norm_epsilon: 1e-5,
  initializer_range: 0.25,
  att_func: 'stickbreaking',
  gate_type: 'mlp',
  moe_type: 'moe',
  activation_function: 'gelu_new',
};
export const MOLM_LIKE = { ...GENERIC, n_embd: 48, n_head: 1, att_hidden: 48, ffd_hidden: 64, n_att_experts: 4, k_att: 2, n_mlp_experts: 6, k_mlp: 2 };

/** Writes a random checkpoint of `config` (seed 7) into a new temporary folder, listed in `dirs` for removal; its path. */
export async function synthRandomModel(config: object, dtype: 'F32' | 'BF16' | 'F16', dirs: string[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'molm-random-'));
  dirs.push(dir);
  const configPath = join(dir, 'source-config.json');
  writeFileSync(configPath, JSON.stringify(config));
  await synthesize({ configPath, outDir: join(dir, 'model'), dtype, seed: 7 });
  return join(dir, 'model');
}
