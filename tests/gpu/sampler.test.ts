import { describe, expect, it } from 'vitest';
import { sampler, SamplerParams } from '../../src/kernels/sampler.ts';
import type { SamplingOptions } from '../../src/token-model.ts';
import { embedding } from '../../src/kernels/embedding.ts';
import { runDispatches, type Dispatch } from '../../src/kernels/dispatch.ts';
import { StepUniform } from '../../src/kernels/step.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { applyRepetitionPenalty, argmax, sample, uniformFromSeed } from '../../src/reference/sampler.ts';
import { gpuContext, output, randomF32, readF32, readU32, rng, upload } from './harness.ts';

/** One sampler over a fixed vocabulary, rerun with new logits, options and positions. */
class Rig {
  private constructor(
    private readonly ctx: GpuContext,
    readonly logits: GPUBuffer,
    readonly params: SamplerParams,
    readonly step: StepUniform,
    readonly out: GPUBuffer,
    readonly dispatch: Dispatch,
  ) {}

  static async create(ctx: GpuContext, vocab: number): Promise<Rig> {
    const logits = output(ctx, vocab * 4, 'logits');
    const params = new SamplerParams(ctx.device, vocab);
    const step = new StepUniform(ctx.device);
    const out = output(ctx, 4, 'token');
    const d = await sampler(ctx, { vocab }, { step: step.buffer, logits, params: params.buffer, out, seen: params.seen });
    return new Rig(ctx, logits, params, step, out, d);
  }

  async run(logits: Float32Array | null, opts: SamplingOptions, rows = 1, pos = 0): Promise<number> {
    if (logits) this.ctx.device.queue.writeBuffer(this.logits, 0, new Float32Array(logits));
    this.params.write(opts);
    this.step.write(rows, pos);
    runDispatches(this.ctx, [this.dispatch], rows);
    return (await readU32(this.ctx, this.out, 1))[0];
  }
}

const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0 };

describe('sample kernel', () => {
  it('greedy: argmax of random logits, MoLM vocabulary included', async () => {
    const ctx = await gpuContext();
    for (const vocab of [1, 7, 1000, 50295]) {
      const rig = await Rig.create(ctx, vocab);
      const rand = rng(vocab);
      for (let trial = 0; trial < 3; trial++) {
        const logits = randomF32(vocab, rand, 10);
        expect(await rig.run(logits, GREEDY), `V=${vocab} trial ${trial}`).toBe(argmax(logits));
      }
      // The maximum at either end of the vocabulary.
      const edge = randomF32(vocab, rand, 10);
      edge[vocab - 1] = 11;
      expect(await rig.run(edge, GREEDY)).toBe(argmax(edge));
      edge[0] = 12;
      expect(await rig.run(edge, GREEDY)).toBe(0);
    }
  });

  it('greedy: the lowest index wins a tie, and sampling options are ignored', async () => {
    const ctx = await gpuContext();
    const vocab = 50295;
    const rig = await Rig.create(ctx, vocab);
    const logits = randomF32(vocab, rng(3), 5);
    for (const i of [40000, 1234, 30000]) logits[i] = 9;
    expect(await rig.run(logits, GREEDY)).toBe(1234);
    expect(await rig.run(null, { temperature: -1, topK: 5, topP: 0.5, seed: 9 })).toBe(1234);
  });

  // The GPU draws exactly the reference's token unless the draw sits within float32 rounding of
  // a decision: target = u·mass near a boundary between two tokens, or the top-p mass near its
  // threshold. Cases are called stable when the reference answer survives moving u by ±1e-5 and
  // top_p by ±1e-5 (relative errors of float32 sums here are ~1e-6): on those the ids must be
  // equal, exactly. Logits are random float32 values, so no two probabilities are tied.
  for (const vocab of [37, 1000, 50295]) {
    it(`draws the reference's token for random options and seeds, V=${vocab}`, async () => {
      const ctx = await gpuContext();
      const rig = await Rig.create(ctx, vocab);
      const rand = rng(vocab * 17 + 1);
      const cases = vocab === 50295 ? 16 : 60;
      let stable = 0;
      for (let c = 0; c < cases; c++) {
        const logits = randomF32(vocab, rand, 1 + rand() * 8);
        const opts: SamplingOptions = {
          temperature: [0.3, 0.7, 1, 1.6][c % 4],
          topK: [0, 1, 5, 40, vocab][Math.floor(rand() * 5)],
          topP: [1, 0.95, 0.8, 0.5, 0.1][Math.floor(rand() * 5)],
          seed: Math.floor(rand() * 2 ** 32),
        };
        const rows = 1 + Math.floor(rand() * 4);
        const pos = Math.floor(rand() * 3000);
        const u = uniformFromSeed(opts.seed, pos + rows);
        const want = sample(logits, opts, u);
        const got = await rig.run(logits, opts, rows, pos);
        const robust = [
          sample(logits, opts, Math.max(0, u - 1e-5)),
          sample(logits, opts, Math.min(1 - 2 ** -24, u + 1e-5)),
          sample(logits, { ...opts, topP: opts.topP * (1 - 1e-5) }, u),
          opts.topP < 1 ? sample(logits, { ...opts, topP: opts.topP * (1 + 1e-5) }, u) : want,
        ].every((id) => id === want);
        if (robust) {
          stable++;
          expect(got, `case ${c}: ${JSON.stringify({ ...opts, rows, pos, u })}`).toBe(want);
        }
        // Whatever the rounding, the token is one the options allow: never below the top-k cut.
        if (opts.topK > 0 && opts.topK < vocab) {
          const higher = logits.reduce((n, l) => n + (l > logits[got] ? 1 : 0), 0);
          expect(higher, `case ${c}: token ranks inside the top ${opts.topK}`).toBeLessThan(opts.topK);
        }
      }
      expect(stable, 'too few stable cases').toBeGreaterThanOrEqual(cases * 0.8);
    });
  }

  it('is deterministic in (seed, position), and top_k = 1 is argmax', async () => {
    const ctx = await gpuContext();
    const vocab = 1000;
    const rig = await Rig.create(ctx, vocab);
    // A flat distribution, so that the draw really depends on u.
    const logits = randomF32(vocab, rng(11), 0.5);
    const opts = { temperature: 1, topK: 0, topP: 1, seed: 1234 };
    const first = await rig.run(logits, opts, 1, 10);
    expect(await rig.run(null, opts, 1, 10)).toBe(first);
    expect(await rig.run(null, opts, 3, 8)).toBe(first); // the same position pos + n_tokens = 11
    const seen = new Set<number>();
    for (let pos = 0; pos < 8; pos++) seen.add(await rig.run(null, opts, 1, pos));
    expect(seen.size, 'different positions draw different tokens').toBeGreaterThan(4);
    for (const seed of [1, 2, 3]) {
      expect(await rig.run(null, { temperature: 5, topK: 1, topP: 1, seed }, 1, seed)).toBe(argmax(logits));
    }
  });

  it('feeds the chosen id to the next step’s embedding on the GPU', async () => {
    const ctx = await gpuContext();
    const vocab = 300;
    const width = 8;
    const rig = await Rig.create(ctx, vocab);
    const wte = randomF32(vocab * width, rng(12));
    const h = output(ctx, width * 4);
    const embedStep = new StepUniform(ctx.device);
    embedStep.write(1, 5);
    const embed = await embedding(ctx, { width, vocab }, 'f32', { step: embedStep.buffer, ids: rig.out, wte: upload(ctx, wte), h });
    const logits = randomF32(vocab, rng(13), 3);
    const id = await rig.run(logits, { temperature: 0.8, topK: 20, topP: 0.9, seed: 77 }, 1, 4);
    runDispatches(ctx, [embed], 1);
    expect(Array.from(await readF32(ctx, h))).toEqual(Array.from(wte.subarray(id * width, (id + 1) * width)));
  });

  it('rejects options the uniform cannot hold', async () => {
    const ctx = await gpuContext();
    const params = new SamplerParams(ctx.device, 10);
    expect(() => params.write({ temperature: 1, topK: 0, topP: 1, seed: 0, repetitionPenalty: 0 })).toThrow(/repetitionPenalty/);
    expect(() => params.write({ temperature: NaN, topK: 0, topP: 1, seed: 0 })).toThrow(/temperature/);
    expect(() => params.write({ temperature: 1, topK: -1, topP: 1, seed: 0 })).toThrow(/topK/);
    expect(() => params.write({ temperature: 1, topK: 0, topP: 1, seed: 0.5 })).toThrow(/seed/);
  });

  it('repetition penalty: penalises exactly the tokens in the context, and marks each chosen token', async () => {
    const ctx = await gpuContext();
    const vocab = 50295;
    const rig = await Rig.create(ctx, vocab);
    const rand = rng(21);
    const logits = randomF32(vocab, rand, 3);
    // The two best tokens: one positive, one made negative-best by shifting everything down.
    const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
    const [best, second] = order;
    const penalty = 1.8;
    const opts = { temperature: 0, topK: 0, topP: 1, seed: 0, repetitionPenalty: penalty };
    rig.params.writeSeen([best, 40000, vocab - 1]);
    const want = argmax(applyRepetitionPenalty(logits, [best, 40000, vocab - 1], penalty));
    expect(want, 'the fixture makes the penalty matter').not.toBe(best);
    expect(await rig.run(logits, opts)).toBe(want);
    // The chosen token is now seen too: the next greedy pick on the same logits moves on.
    const want2 = argmax(applyRepetitionPenalty(logits, [best, 40000, vocab - 1, want], penalty));
    expect(await rig.run(null, opts)).toBe(want2);
    expect(want2).not.toBe(want);
    // Negative logits are multiplied: all logits negative, the seen best falls behind.
    const negative = logits.map((l) => l - 20);
    rig.params.writeSeen([best]);
    expect(await rig.run(negative, opts)).toBe(second);
    // Penalty 1 leaves the logits alone whatever is seen.
    rig.params.writeSeen(order.slice(0, 100));
    expect(await rig.run(logits, { ...opts, repetitionPenalty: 1 })).toBe(best);
    // With sampling, the draw is the reference's on the penalised logits (a stable case: u far
    // from any boundary is checked by comparing with u ± 1e-5).
    let checked = 0;
    for (let pos = 0; pos < 12; pos++) {
      const seen = order.slice(0, 5);
      rig.params.writeSeen(seen);
      const sampling = { temperature: 0.7, topK: 40, topP: 0.9, seed: 5, repetitionPenalty: 1.3 };
      const penalised = applyRepetitionPenalty(logits, seen, 1.3);
      const u = uniformFromSeed(5, pos + 1);
      const ref = sample(penalised, sampling, u);
      if ([u - 1e-5, u + 1e-5].every((x) => sample(penalised, sampling, Math.min(Math.max(x, 0), 0.999999)) === ref)) {
        expect(await rig.run(null, sampling, 1, pos)).toBe(ref);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(8);
  });
});
