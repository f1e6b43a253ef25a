import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CampaignResult, runCampaign } from './campaign.ts';
import { type Fixtures, type FuzzTarget, fuzzTargets, loadFixtures } from './targets.ts';

// Every reader against damaged and hostile inputs (issue 14): each input must load or end in one
// of the project's errors — never another exception, a hang, a memory peak past the bound, or a
// fetch outside the model's folder. `npm test` runs a short fixed-seed campaign; `npm run fuzz`
// runs a long one (MOLM_FUZZ_INPUTS inputs per reader, MOLM_FUZZ_SEED) and prints the figures
// that docs/robustness.md quotes.

const INPUTS = Number(process.env.MOLM_FUZZ_INPUTS ?? 150);
const SEED = Number(process.env.MOLM_FUZZ_SEED ?? 14);
const SAVE = process.env.MOLM_FUZZ_SAVE;

let fixtures: Fixtures;
let targets: FuzzTarget[];
const results: CampaignResult[] = [];

beforeAll(async () => {
  fixtures = await loadFixtures();
  targets = fuzzTargets(fixtures);
  expect(targets.map((t) => t.name)).toEqual(fuzzTargetNames());
});
afterAll(async () => {
  await fixtures?.cleanup();
  if (process.env.MOLM_FUZZ_INPUTS) {
    const rows = results.map(
      (r) =>
        `| ${r.target} | ${r.inputs} | ${r.loaded} | ${Object.entries(r.refused)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')} | ${r.failures.length} | ${(r.ms / 1000).toFixed(1)} |`,
    );
    console.log(['| reader | inputs | loaded | refused | failures | seconds |', '|---|---|---|---|---|---|', ...rows].join('\n'));
  }
});

describe(`fuzz: ${INPUTS} inputs per reader, seed ${SEED}`, () => {
  it.each(fuzzTargetNames())(
    '%s',
    async (name) => {
      const target = targets.find((t) => t.name === name)!;
      // The undamaged input loads: the damage, not the harness, is what the refusals are about.
      await target.run(target.seed(), []);
      const result = await runCampaign(target, Math.max(5, Math.round(INPUTS / (target.cost ?? 1))), SEED, SAVE);
      results.push(result);
      expect(result.failures, JSON.stringify(result.failures.slice(0, 5), null, 1)).toEqual([]);
    },
    3_600_000,
  );
});

function fuzzTargetNames(): string[] {
  return [
    'safetensors bytes',
    'safetensors header',
    'config.json',
    'index.json over URLs',
    'index.json in a local folder',
    'pytorch_model.bin bytes',
    'pytorch_model.bin pickle',
    'pytorch_model.bin tensor geometry',
    'manifest.json',
    'manifest.json over URLs, with the cache',
    'expert pack manifest.json, merged into its base',
    'expert pack shards, merged into its base',
    'shards and tokenizer.json of a converted model',
    'tokenizer.json (the tokenizer library behind it)',
  ];
}
