import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { evaluatePerplexity } from '../../src/cli/eval.ts';
import { MolmTokenizer } from '../../src/engine/tokenizer.ts';
import { openPackFolder } from '../../src/packs/load-pack.ts';
import { loadWasmModel } from '../../src/wasm/load.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';

// The JavaScript pack shipped beside the built-in model (public/models/molm-brown-js, trained by
// tools/train/pack.py): it names the built-in model, stays within 5 MB, and does what it is for
// on text it never saw. Its training data was npm packages' code; this project's own source and
// docs were never in it. docs/extending.md has the full held-out figures (Brown, npm packages).

const ROOT = join(__dirname, '..', '..');
const PACK_DIR = join(ROOT, 'public/models/molm-brown-js');
const tokenizer = MolmTokenizer.fromJson(readFileSync(join(BUILT_IN_MODEL.dir, 'tokenizer.json'), 'utf8'));

/** Up to `n` tokens of these files' text. */
function tokensOf(files: string[], n: number): number[] {
  return tokenizer.encode(files.map((f) => readFileSync(join(ROOT, f), 'utf8')).join('\n')).slice(0, n);
}

async function perplexity(ids: number[], packs: boolean): Promise<number> {
  const model = await loadWasmModel(nodeFileSource(BUILT_IN_MODEL.dir), {
    maxContext: 256,
    threads: 1,
    packs: packs ? [await openPackFolder(nodeFileSource(PACK_DIR))] : [],
  });
  try {
    return (await evaluatePerplexity(model, ids, { window: 256, eos: model.config.eosTokenId })).perplexity;
  } finally {
    model.destroy();
  }
}

describe('the shipped JavaScript pack (molm-brown-js)', () => {
  it('extends the built-in model and is at most 5 MB', async () => {
    const base = JSON.parse(readFileSync(join(BUILT_IN_MODEL.dir, 'manifest.json'), 'utf8'));
    const pack = await openPackFolder(nodeFileSource(PACK_DIR));
    expect(pack.info.base.weightsSha256).toBe(base.weightsSha256);
    expect(pack.info.name).toBe('molm-brown-js');
    const bytes = readdirSync(PACK_DIR).reduce((a, f) => a + statSync(join(PACK_DIR, f)).size, 0);
    expect(bytes).toBeLessThanOrEqual(5e6);
  });

  it('lowers the perplexity of JavaScript it never saw, and leaves English prose nearly as it was', async () => {
    // The project's own JavaScript and TypeScript, 1024 tokens (4 windows).
    const code = tokensOf(['bin/molm.mjs', 'bin/stderr-filter.mjs', 'tools/pack-check.mjs'], 1024);
    // English prose written for this project (its docs' opening paragraphs).
    const prose = tokensOf(['docs/extending.md'], 1024);
    expect(code.length).toBe(1024);
    expect(prose.length).toBe(1024);
    const [codeBase, codePack, proseBase, prosePack] = [
      await perplexity(code, false),
      await perplexity(code, true),
      await perplexity(prose, false),
      await perplexity(prose, true),
    ];
    // The targets are 0.6× on held-out code and 1.01× on held-out prose (docs/extending.md,
    // on 119 k and 64 k tokens); 1024 tokens of other text get a little slack on the prose side.
    expect(codePack / codeBase, `code: ${codeBase.toFixed(0)} → ${codePack.toFixed(0)}`).toBeLessThanOrEqual(0.6);
    expect(prosePack / proseBase, `prose: ${proseBase.toFixed(1)} → ${prosePack.toFixed(1)}`).toBeLessThanOrEqual(1.03);
  }, 120_000);
});
