import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectClose } from './harness.ts';
import { molm } from '../molm-cli.ts';

const FIXTURES = join(__dirname, '..', 'fixtures');
const tmp = mkdtempSync(join(tmpdir(), 'molm-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function expected(name: string) {
  const dir = join(FIXTURES, 'golden', name);
  const e = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { input_ids: number[]; greedy_new_tokens: number[] };
  const raw = readFileSync(join(dir, 'expected_logits.f32'));
  return { ...e, logits: new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4) };
}

// Every checkpoint form holds the same tiny-molm weights (tools/fixtures/make_checkpoints.py).
const FORMS = [
  ['safetensors', 'golden/tiny-molm', 'tiny-molm'],
  ['pytorch_model.bin', 'checkpoints/tiny-molm-bin', 'tiny-molm'],
  ['sharded pytorch_model.bin', 'checkpoints/tiny-molm-bin-sharded', 'tiny-molm'],
  ['sharded safetensors', 'checkpoints/tiny-molm-st-sharded', 'tiny-molm'],
  ['bf16 pytorch_model.bin, k/v projections', 'checkpoints/tiny-generic-bf16-bin', 'tiny-generic-bf16'],
] as const;

describe('molm CLI on WebGPU', () => {
  it.each(FORMS)('logits and generate on %s match the reference', async (_form, dir, golden) => {
    const e = expected(golden);
    const model = join(FIXTURES, dir);
    const out = join(tmp, `${golden}-${_form.replace(/\W/g, '_')}.f32`);
    const r = await molm('logits', '--model', model, '--ids', e.input_ids.join(','), '--out', out);
    expect(r.code, r.stderr).toBe(0);
    const raw = readFileSync(out);
    expectClose(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), e.logits, 1e-4, 'logits file');

    const g = await molm('generate', '--model', model, '--ids', e.input_ids.join(','), '--max-new-tokens', '8', '--greedy', '--json');
    expect(g.code, g.stderr).toBe(0);
    expect(JSON.parse(g.stdout)).toEqual({ new_tokens: e.greedy_new_tokens });
  });

  it('runs the float64 reference with --device cpu', async () => {
    const e = expected('tiny-generic-bf16');
    const g = await molm(
      'generate',
      '--model',
      join(FIXTURES, 'golden/tiny-generic-bf16'),
      '--ids',
      e.input_ids.join(','),
      '--max-new-tokens',
      '8',
      '--greedy',
      '--json',
      '--device',
      'cpu',
    );
    expect(g.code, g.stderr).toBe(0);
    expect(JSON.parse(g.stdout)).toEqual({ new_tokens: e.greedy_new_tokens });
  });

  it('bench reports throughput and the adapter', async () => {
    const r = await molm('bench', '--model', join(FIXTURES, 'golden/tiny-molm'), '--prompt-tokens', '8', '--new-tokens', '4', '--json');
    expect(r.code, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout);
    expect(b.prefill_tokens_per_s).toBeGreaterThan(0);
    expect(b.decode_tokens_per_s).toBeGreaterThan(0);
    expect(typeof b.adapter).toBe('string');
    expect(b.new_tokens).toBe(4);
    expect(b.context).toBe(8);
    expect(b.dispatches_per_token).toBeGreaterThan(0);
    expect(b.gpu_bytes).toBeGreaterThan(0);
    // SwiftShader: the CPU-adapter shapes (no reductions, so no subgroups); tiny-molm is f32, so no f16 reads.
    expect(b.kernels).toEqual({ profile: 'cpu', subgroups: false, shader_f16: false });
    // What a decoded token reads, by hand for tiny-molm (f32; C 32, 2 layers, A 32, F 48, G 16,
    // 2 of 4 attention and 2 of 6 MLP experts, vocabulary 97): per layer 128 LayerNorm floats,
    // 592 + 624 router floats, half of the 2 × 4096 attention expert floats and a third of the
    // 2 × 9216 MLP ones = 11 584; then one embedding row (32), ln_f (64), lm_head (3104): 26 368
    // floats = 105 472 bytes, plus the KV cache, 2 layers × 32 floats per token at the mean
    // context of the decode (8 prompt tokens + 1.5).
    expect(b.decode_bytes_per_token).toBe(105_472 + 2 * 32 * 4 * 9.5);
    expect(b.copy_bandwidth_bytes_per_s).toBeGreaterThan(0);
    expect(b.roofline_ratio).toBeCloseTo((b.decode_bytes_per_token * b.decode_tokens_per_s) / b.copy_bandwidth_bytes_per_s, 6);
    // Past the config's n_ctx (128): the command sizes the context for what it runs.
    const c = JSON.parse((await molm('bench', '--model', join(FIXTURES, 'golden/tiny-molm'), '--context', '200', '--new-tokens', '2', '--json')).stdout);
    expect(c.context).toBe(200);
    // Per-kernel times: GPU timestamps where the adapter has them (Dawn's SwiftShader does), else the wall clock.
    const k = JSON.parse(
      (await molm('bench', '--model', join(FIXTURES, 'golden/tiny-molm'), '--context', '8', '--new-tokens', '2', '--kernels', '--json')).stdout,
    );
    expect(['timestamp', 'wall']).toContain(k.kernel_timing);
    expect(Object.keys(k.decode_kernel_ms)).toEqual(
      expect.arrayContaining(['embedding', 'router.att', 'q_proj', 'attention.split', 'o_proj', 'mlp_up', 'mlp_down', 'lm_head', 'sample']),
    );
    expect(Object.values(k.decode_kernel_ms as Record<string, number>).every((ms) => ms >= 0)).toBe(true);
  });

  it('synth writes a checkpoint the engine loads', async () => {
    const out = join(tmp, 'synth');
    const r = await molm(
      'synth',
      '--config',
      join(FIXTURES, 'configs/molm-350m-4b.json'),
      '--layers',
      '1',
      '--out',
      out,
      '--set',
      'n_embd=64',
      '--set',
      'att_hidden=64',
      '--set',
      'ffd_hidden=32',
      '--set',
      'gating_size=8',
      '--set',
      'vocab_size=500',
    );
    expect(r.code, r.stderr).toBe(0);
    const g = await molm('generate', '--model', out, '--ids', '1,2,3', '--max-new-tokens', '3', '--json');
    expect(g.code, g.stderr).toBe(0);
    expect(JSON.parse(g.stdout).new_tokens).toHaveLength(3);
  });

  it('gives clear errors for bad input', async () => {
    const missing = await molm('generate', '--model', join(tmp, 'nope'), '--ids', '1');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/config\.json/);
    const badIds = await molm('logits', '--model', join(FIXTURES, 'golden/tiny-molm'), '--ids', '1,x', '--out', join(tmp, 'x'));
    expect(badIds.code).toBe(2);
    expect(badIds.stderr).toMatch(/--ids must be comma-separated/);
    const outOfVocab = await molm('logits', '--model', join(FIXTURES, 'golden/tiny-molm'), '--ids', '1,500', '--out', join(tmp, 'x'));
    expect(outOfVocab.code).toBe(2);
    expect(outOfVocab.stderr).toMatch(/outside the vocabulary/);
    const unknown = await molm('frobnicate');
    expect(unknown.code).toBe(2);
  });
});
