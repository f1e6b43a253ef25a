import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { hasKvProjections, headSize, kvWidth, parseConfig } from '../../src/config.ts';
import { ModelFormatError } from '../../src/errors.ts';

const fixture = (path: string) => readFileSync(new URL(`../fixtures/${path}`, import.meta.url), 'utf8');
const json = (path: string) => JSON.parse(fixture(path)) as Record<string, unknown>;

describe('parseConfig on the released MoLM configs', () => {
  it.each([
    ['molm-350m-4b.json', 24, 2, 2, 12288],
    ['molm-700m-4b.json', 24, 4, 4, 12288],
    ['molm-700m-8b.json', 48, 2, 2, 24576],
  ])('%s', (file, nLayer, kAtt, kMlp, nCtx) => {
    const c = parseConfig(fixture(`configs/${file}`));
    expect(c).toEqual({
      vocabSize: 50295,
      nEmbd: 1024,
      nLayer,
      nHead: 1,
      attHidden: 1024,
      ffdHidden: 2048,
      gatingSize: 256,
      nAttExperts: 16,
      kAtt,
      nMlpExperts: 32,
      kMlp,
      layerNormEpsilon: 1e-5,
      bosTokenId: 50256,
      eosTokenId: 50256,
      nCtx,
    });
    expect(hasKvProjections(c)).toBe(false);
    expect(kvWidth(c)).toBe(1024);
    expect(headSize(c)).toBe(1024);
  });

  it('accepts an object as well as text', () => {
    expect(parseConfig(json('configs/molm-700m-8b.json'))).toEqual(parseConfig(fixture('configs/molm-700m-8b.json')));
  });

  it('sees k/v projections in the generic golden model', () => {
    const c = parseConfig(fixture('golden/tiny-generic-bf16/config.json'));
    expect(hasKvProjections(c)).toBe(true);
    expect(headSize(c)).toBe(12);
    expect(kvWidth(c)).toBe(24);
  });
});

describe('parseConfig errors', () => {
  const base = () => json('configs/molm-350m-4b.json');
  const check = (cfg: Record<string, unknown> | string, message: RegExp) => {
    expect(() => parseConfig(cfg)).toThrow(ModelFormatError);
    expect(() => parseConfig(cfg)).toThrow(message);
  };

  it('names a missing field', () => {
    const cfg = base();
    delete cfg.n_layer;
    check(cfg, /field "n_layer" is missing/);
  });

  it('rejects a field of the wrong type', () => {
    check({ ...base(), n_embd: '1024' }, /field "n_embd" must be a positive integer, got "1024"/);
    check({ ...base(), k_att: 1.5 }, /field "k_att" must be a positive integer, got 1.5/);
    check({ ...base(), layer_norm_epsilon: -1 }, /field "layer_norm_epsilon" must be a positive number/);
  });

  it('rejects an unsupported attention, gate or activation', () => {
    check({ ...base(), att_func: 'softmax' }, /field "att_func" is "softmax"; molm-web supports "stickbreaking"/);
    check({ ...base(), gate_type: 'linear' }, /field "gate_type" is "linear"/);
    check({ ...base(), activation_function: 'relu' }, /field "activation_function" is "relu"/);
  });

  it('rejects other model types and inconsistent sizes', () => {
    check({ ...base(), model_type: 'gpt2' }, /model_type.*"gpt2"/);
    check({ ...base(), n_att_experts: 4, k_att: 5 }, /"k_att" \(5\) exceeds "n_att_experts" \(4\)/);
    check({ ...base(), n_head: 3 }, /"att_hidden" \(1024\) must be divisible by "n_head" \(3\)/);
  });

  it('rejects text that is not a JSON object', () => {
    check('{"vocab_size": ', /config.json is not valid JSON/);
    check('[1, 2]', /must hold a JSON object/);
  });
});
