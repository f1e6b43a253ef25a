import { describe, expect, it } from 'vitest';
import { preprocess } from '../../src/gpu/wgsl.ts';

// The `#if` and `NAME_at2` additions of the WGSL preprocessor, on a real shader that uses both.
const linear = (hasBias: boolean) => ({
  defines: { IN: 8, OUT: 4, LANES: 4, RPW: 8, CHUNK: 16, HAS_BIAS: hasBias, LAST_ROW_ONLY: false, SUBGROUPS: false },
  weights: { weight: 'bf16' as const },
});

describe('WGSL preprocessor', () => {
  it('#if / #if ! keep exactly one side, so an unused binding is not declared at all', () => {
    const withBias = preprocess('linear.wgsl', linear(true));
    expect(withBias).toContain('var<storage, read> bias: array<f32>;');
    expect(withBias).toContain('return bias[j];');
    expect(withBias).not.toContain('return 0.0;');
    const without = preprocess('linear.wgsl', linear(false));
    expect(without).not.toMatch(/var<storage, read> bias/);
    expect(without).toContain('fn bias_at(j: u32) -> f32 { return 0.0; }');
    expect(without).not.toMatch(/#(if|endif)/);
  });

  it('#if on a define the variant lacks is an error, not a silent false', () => {
    const { HAS_BIAS: _, ...defines } = linear(true).defines;
    expect(() => preprocess('linear.wgsl', { ...linear(true), defines })).toThrow(/#if HAS_BIAS/);
  });

  it('emits `enable` directives first (WGSL wants them before any declaration), only when asked', () => {
    const plain = preprocess('linear.wgsl', linear(false));
    expect(plain).not.toMatch(/^\s*enable /m);
    const withSubgroups = preprocess('linear.wgsl', {
      ...linear(false),
      defines: { ...linear(false).defines, SUBGROUPS: true },
      enables: ['subgroups'],
    });
    const lines = withSubgroups.split('\n');
    expect(lines[0]).toMatch(/^\/\//);
    expect(lines[1]).toBe('enable subgroups;');
    expect(withSubgroups).toContain('subgroupShuffleXor');
    expect(plain).not.toContain('subgroupShuffleXor');
    expect(() => preprocess('linear.wgsl', { ...linear(false), enables: ['sub groups'] })).toThrow(/extension/);
  });

  it('reads f16 weights as native f16 pairs only in variants that enable f16', () => {
    const unpacked = preprocess('linear.wgsl', { ...linear(false), weights: { weight: 'f16' } });
    expect(unpacked).toContain('var<storage, read> weight: array<u32>;');
    expect(unpacked).toContain('unpack2x16float(weight[i >> 1u])');
    const native = preprocess('linear.wgsl', { ...linear(false), weights: { weight: 'f16' }, enables: ['f16'] });
    expect(native.split('\n')[1]).toBe('enable f16;');
    expect(native).toContain('var<storage, read> weight: array<vec2<f16>>;');
    expect(native).toContain('fn weight_at2(i: u32) -> vec2f { return vec2f(weight[i >> 1u]); }');
    expect(native).not.toContain('unpack2x16float');
    // Other types are unaffected: bf16 is not an f16.
    expect(preprocess('linear.wgsl', { ...linear(false), enables: ['f16'] })).toContain('var<storage, read> weight: array<u32>;');
  });

  it('declares a pair accessor for every weight type', () => {
    for (const type of ['f32', 'bf16', 'f16'] as const) {
      expect(preprocess('linear.wgsl', { ...linear(false), weights: { weight: type } })).toContain('fn weight_at2(i: u32) -> vec2f');
    }
  });
});
