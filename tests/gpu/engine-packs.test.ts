import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalEngine } from '../../src/engine/engine.ts';
import { ModelFormatError } from '../../src/errors.ts';
import { createEngine } from '../../src/node.ts';
import { GREEDY } from '../../src/token-model.ts';
import { BASE, type ConvertedPacks, MERGED_AB, convertPackFixtures } from '../shared/pack-fixtures.ts';
import { expectClose } from '../shared/numeric.ts';

// Expert packs on a live engine (engine.setPacks), on both engines: the packs' logits against
// PyTorch's merged checkpoint (tools/fixtures/make_pack.py) within 1e-4, the base given back bit
// for bit when the packs are removed, and a bad pack changing nothing.

const TOKENIZER = readFileSync(join(__dirname, '..', 'fixtures', 'tokenizer', 'tokenizer.json'), 'utf8');
const tmp = mkdtempSync(join(tmpdir(), 'molm-engine-packs-'));
let fx: ConvertedPacks;
beforeAll(async () => {
  fx = await convertPackFixtures(tmp);
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const logitsOf = (e: LocalEngine, ids: readonly number[]) => {
  e.model.reset();
  return e.model.prefillLogits(ids);
};

describe.each(['wasm', 'webgpu'] as const)('expert packs on a live %s engine', (backend) => {
  it('packs at creation, removed, refused, added again', async () => {
    const engine = (await createEngine({ model: fx.base.f32, backend, tokenizer: TOKENIZER, packs: [fx.a.f32, fx.b.f32] })) as LocalEngine;
    try {
      expect(engine.packs.map((p) => [p.name, p.att, p.mlp])).toEqual([
        ['tiny-pack-a', [4, 6], [6, 9]],
        ['tiny-pack-b', [6, 7], [9, 9]],
      ]);
      expect([engine.config.nAttExperts, engine.config.nMlpExperts, engine.config.gatingSize]).toEqual([7, 9, 24]);
      const merged = await logitsOf(engine, MERGED_AB.input_ids);
      expectClose(merged, MERGED_AB.logits, 1e-4, `${backend}: base + a + b`);

      // The base alone, from a separate engine, is what setPacks([]) must give back exactly.
      const alone = (await createEngine({ model: fx.base.f32, backend, tokenizer: TOKENIZER })) as LocalEngine;
      const baseLogits = await logitsOf(alone, BASE.input_ids);
      await alone.dispose();
      expectClose(baseLogits, BASE.logits, 1e-4, `${backend}: base`);

      await engine.setPacks([]);
      expect(engine.packs).toEqual([]);
      expect(engine.config.nAttExperts).toBe(4);
      expect(engine.model.contextIds).toEqual([]);
      expect(await logitsOf(engine, BASE.input_ids)).toEqual(baseLogits);

      // A pack for another base (the q8 conversion's weights): refused, the engine unchanged.
      await expect(engine.setPacks([fx.onQ8.f32.a])).rejects.toThrow(ModelFormatError);
      await expect(engine.setPacks([join(tmp, 'no-such-pack')])).rejects.toThrow(/manifest\.json/);
      expect(engine.packs).toEqual([]);
      expect(await logitsOf(engine, BASE.input_ids)).toEqual(baseLogits);

      await engine.setPacks([fx.a.f32, fx.b.f32]);
      expect(await logitsOf(engine, MERGED_AB.input_ids)).toEqual(merged);
      engine.model.reset();
      const tokens: number[] = [];
      for await (const id of engine.model.generate(MERGED_AB.input_ids, MERGED_AB.greedy_new_tokens.length, GREEDY)) tokens.push(id);
      expect(tokens).toEqual(MERGED_AB.greedy_new_tokens);
    } finally {
      await engine.dispose();
    }
  }, 120_000);
});
