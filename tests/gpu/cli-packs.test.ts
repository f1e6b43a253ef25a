import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { molm } from '../molm-cli.ts';
import { BASE_SRC, MERGED_AB, PACK_SRC, firstDifference, readF32 } from '../shared/pack-fixtures.ts';
import { maxAbsDiff } from './harness.ts';

// Expert packs through the CLI: `molm convert` of a pack's source folder, `--pack` on logits and
// generate on every device, and `molm merge`, against the PyTorch merged checkpoint
// (tools/fixtures/make_pack.py): logits within 1e-4, its greedy tokens. A bad pack exits 1 with
// a message that says what to do; a bad command line exits 2.

const LOGIT_TOL = 1e-4;
const ids = MERGED_AB.input_ids.join(',');

const tmp = mkdtempSync(join(tmpdir(), 'molm-cli-packs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const dirs = { base: join(tmp, 'base'), baseQ8: join(tmp, 'base-q8'), a: join(tmp, 'a'), b: join(tmp, 'b') };

beforeAll(async () => {
  for (const [src, out, dtype] of [
    [BASE_SRC, dirs.base, 'f32'],
    [BASE_SRC, dirs.baseQ8, 'q8'],
    [PACK_SRC.a, dirs.a, 'f32'],
    [PACK_SRC.b, dirs.b, 'q8'],
  ]) {
    const r = await molm('convert', '--model', src, '--out', out, '--dtype', dtype, '--shard-mib', '0.01');
    expect(r.code, r.stderr).toBe(0);
  }
});

let outs = 0;
async function logits(model: string, ...more: string[]): Promise<Float32Array> {
  const file = join(tmp, `logits-${outs++}.f32`);
  const r = await molm('logits', '--model', model, '--ids', ids, '--out', file, ...more);
  expect(r.code, r.stderr).toBe(0);
  return readF32(file);
}

describe('molm with expert packs', () => {
  it('molm convert turns a pack source folder into a converted pack', async () => {
    const out = join(tmp, 'a-again');
    const r = await molm('convert', '--model', PACK_SRC.a, '--out', out, '--dtype', 'q8');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^expert pack tiny-pack-a: 20 tensors, \d+ shard\(s\), [\d.]+ MiB \(q8\) written to /);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ format: 'molm-web-pack', name: 'tiny-pack-a', dtype: 'q8', adds: { attExperts: 2, mlpExperts: 3, routerUnits: 8 } });
  });

  it('--pack a --pack b (pack b converted to q8) on every device: the merged checkpoint’s logits within 1e-4 and its greedy tokens', async () => {
    // Pack b's q8 conversion: its experts' input dimension (32) is quantised, so compare to the reference on it.
    const packs = ['--pack', dirs.a, '--pack', dirs.b];
    const cpu = await logits(dirs.base, ...packs, '--device', 'cpu');
    for (const device of ['gpu', 'wasm'] as const) {
      expect(maxAbsDiff(await logits(dirs.base, ...packs, '--device', device), cpu), device).toBeLessThanOrEqual(LOGIT_TOL);
    }
    // With b in f32, the PyTorch logits.
    const bF32 = join(tmp, 'b-f32');
    expect((await molm('convert', '--model', PACK_SRC.b, '--out', bF32, '--dtype', 'f32')).code).toBe(0);
    for (const device of ['cpu', 'gpu', 'wasm'] as const) {
      expect(maxAbsDiff(await logits(dirs.base, '--pack', dirs.a, '--pack', bF32, '--device', device), MERGED_AB.logits), device).toBeLessThanOrEqual(
        LOGIT_TOL,
      );
      const g = await molm(
        'generate',
        '--model',
        dirs.base,
        '--pack',
        dirs.a,
        '--pack',
        bF32,
        '--ids',
        ids,
        '--max-new-tokens',
        '6',
        '--greedy',
        '--json',
        '--device',
        device,
      );
      expect(g.code, g.stderr).toBe(0);
      expect(JSON.parse(g.stdout), device).toEqual({ new_tokens: MERGED_AB.greedy_new_tokens });
    }
  });

  it('molm merge writes a checkpoint that `--device cpu` reads with the logits of --pack, bit for bit', async () => {
    const out = join(tmp, 'merged');
    const r = await molm('merge', '--model', dirs.base, '--pack', dirs.a, '--pack', dirs.b, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^7 attention and 9 MLP experts per layer, router width 24 → .*merged \(F32, [\d.]+ MB\)\n$/);
    expect(existsSync(join(out, 'model.safetensors.tmp'))).toBe(false);
    const merged = await logits(out, '--device', 'cpu');
    expect(firstDifference(merged, await logits(dirs.base, '--pack', dirs.a, '--pack', dirs.b, '--device', 'cpu'))).toBe(-1);
    // And on the GPU, the merged checkpoint gives the same logits as the packs merged at load time.
    expect(maxAbsDiff(await logits(out), merged)).toBeLessThanOrEqual(LOGIT_TOL);

    const json = await molm('merge', '--model', dirs.base, '--pack', dirs.a, '--out', join(tmp, 'merged-a'), '--json');
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ nAttExperts: 6, nMlpExperts: 9, gatingSize: 24 });
  });

  it('a bad --pack exits 1 with a message that says what to do; the base alone still runs', async () => {
    const file = join(tmp, 'bad.f32');
    const run = (...more: string[]) => molm('logits', '--model', dirs.base, '--ids', ids, '--out', file, '--device', 'cpu', ...more);
    const other = await molm('logits', '--model', dirs.baseQ8, '--ids', ids, '--out', file, '--device', 'cpu', '--pack', dirs.a);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/the pack tiny-pack-a extends tiny-molm .*holds other weights.*Use the pack with the model it was trained on/);
    const twice = await run('--pack', dirs.b, '--pack', dirs.b);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/The pack tiny-pack-b is given twice/);
    const model = await run('--pack', dirs.base);
    expect(model.code).toBe(1);
    expect(model.stderr).toMatch(/this is not a molm-web expert pack.*molm convert/);
    const source = await run('--pack', PACK_SRC.a);
    expect(source.code).toBe(1);
    expect(source.stderr).toMatch(/has no manifest\.json: give a converted expert pack's folder/);
    const merge = await molm('merge', '--model', dirs.baseQ8, '--pack', dirs.a, '--out', join(tmp, 'never'));
    expect(merge.code).toBe(1);
    expect(merge.stderr).toMatch(/holds other weights/);
    expect(existsSync(join(tmp, 'never', 'model.safetensors'))).toBe(false);
    const alone = await molm('logits', '--model', dirs.base, '--ids', ids, '--out', file, '--device', 'cpu');
    expect(alone.code, alone.stderr).toBe(0);
  });

  it('molm merge without --pack, or into the model’s folder, exits 2', async () => {
    const none = await molm('merge', '--model', dirs.base, '--out', join(tmp, 'x'));
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/molm merge needs at least one --pack DIR/);
    const same = await molm('merge', '--model', dirs.base, '--pack', dirs.a, '--out', dirs.base);
    expect(same.code).toBe(2);
    expect(same.stderr).toMatch(/--out must be a new folder/);
    const noOut = await molm('merge', '--model', dirs.base, '--pack', dirs.a);
    expect(noOut.code).toBe(2);
  });
});
