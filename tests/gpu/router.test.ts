import { describe, expect, it } from 'vitest';
import { routerTopK } from '../../src/kernels/router.ts';
import { runDispatches } from '../../src/kernels/dispatch.ts';
import { shaderSource } from '../../src/gpu/shader-sources.ts';
import type { StorageType } from '../../src/storage-types.ts';
import { routerTopK as routerRef } from '../../src/reference/router.ts';
import { geluErf, geluTanh } from '../../src/reference/math.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { submit } from '../../src/gpu/queue.ts';
import { expectClose, gpuContext, output, randomF32, readF32, readU32, rng, stepUniform, upload, useKernelProfile, weightData } from './harness.ts';

interface Case {
  rows: number;
  width: number;
  gating: number;
  experts: number;
  k: number;
}

/** Runs the kernel on the given (already rounded) weights; returns what it wrote. */
type RouterTypes = StorageType | { w0: StorageType; w3: StorageType };

async function runRouter(
  ctx: GpuContext,
  c: Case,
  type: RouterTypes,
  x: Float32Array,
  w0: ArrayBufferView,
  b0: Float32Array,
  w3: ArrayBufferView,
  manyRows = false,
) {
  const ids = output(ctx, c.rows * c.k * 4);
  const gates = output(ctx, c.rows * c.k * 4);
  const probs = output(ctx, c.rows * c.experts * 4);
  const d = await routerTopK(ctx, { width: c.width, gating: c.gating, experts: c.experts, k: c.k, manyRows }, type, {
    step: stepUniform(ctx, c.rows).buffer,
    x: upload(ctx, x),
    w0: upload(ctx, w0),
    b0: upload(ctx, b0),
    w3: upload(ctx, w3),
    ids,
    gates,
    probs,
  });
  runDispatches(ctx, [d], c.rows);
  return {
    ids: await readU32(ctx, ids, c.rows * c.k),
    gates: await readF32(ctx, gates, c.rows * c.k),
    probs: await readF32(ctx, probs, c.rows * c.experts),
  };
}

// The 'cpu' profile has two shapes: the workgroup kernel for one-row steps, and one invocation
// per row (router_topk_serial.wgsl) for steps of many rows.
const SHAPES = [
  ['gpu', false],
  ['cpu', false],
  ['cpu', true],
] as const;
for (const [profile, manyRows] of SHAPES)
  describe(`router_topk kernel, ${profile} kernel profile${manyRows ? ', many-row (serial) shape' : ''}`, () => {
    useKernelProfile(profile);

    // Probabilities and gates: weights are the same float32 values on both sides, so the error is
    // float32 accumulation over C and G plus gelu_erf's < 4e-7, carried through the softmax: about
    // 1e-7 measured on SwiftShader. 1e-6 leaves room for other drivers' exp and is still far below
    // what a tanh GELU in the router (~1e-3 on these logits) or renormalised gates would give.
    const TOL = 1e-6;
    // Slots whose reference probability is within this of a neighbour's may legitimately swap.
    const MARGIN = 1e-4;

    const cases: [RouterTypes, Case][] = [
      ['f32', { rows: 3, width: 64, gating: 48, experts: 16, k: 2 }],
      ['bf16', { rows: 2, width: 97, gating: 33, experts: 7, k: 3 }],
      ['f16', { rows: 2, width: 130, gating: 65, experts: 128, k: 8 }],
      ['f32', { rows: 2, width: 5, gating: 3, experts: 1, k: 1 }],
      ['bf16', { rows: 1, width: 1024, gating: 256, experts: 32, k: 2 }], // MoLM's router
      ['f16', { rows: 1, width: 1024, gating: 256, experts: 16, k: 4 }],
      // Quantised (C and G multiples of 32; the reference runs on the dequantised weights).
      ['q8', { rows: 3, width: 64, gating: 32, experts: 16, k: 2 }],
      ['q4', { rows: 2, width: 96, gating: 64, experts: 7, k: 3 }],
      ['q8', { rows: 1, width: 1024, gating: 256, experts: 32, k: 2 }], // MoLM's router
      ['q4', { rows: 1, width: 1024, gating: 256, experts: 16, k: 4 }],
      // tiny-molm under q4: G = 16 is not a multiple of 32, so W3 falls back to f16.
      [
        { w0: 'q4', w3: 'f16' },
        { rows: 2, width: 32, gating: 16, experts: 4, k: 2 },
      ],
    ];
    for (const [type, c] of cases) {
      const types = typeof type === 'string' ? { w0: type, w3: type } : type;
      it(`matches the float64 reference: ${types.w0 === types.w3 ? types.w0 : `${types.w0}/${types.w3}`} weights, ${c.rows} rows, C=${c.width} G=${c.gating} E=${c.experts} k=${c.k}`, async () => {
        const ctx = await gpuContext();
        const rand = rng(c.width * 7919 + c.gating * 31 + c.experts + c.k);
        const x = randomF32(c.rows * c.width, rand, 2);
        // Scaled so the hidden pre-activations and the logits are O(1): routing is then decided by
        // real margins and the softmax is neither flat nor one-hot.
        const w0 = weightData(randomF32(c.gating * c.width, rand, 1.5 / Math.sqrt(c.width)), types.w0, [c.gating, c.width]);
        const b0 = randomF32(c.gating, rand, 0.5);
        const w3 = weightData(randomF32(c.experts * c.gating, rand, 4 / Math.sqrt(c.gating)), types.w3, [c.experts, c.gating]);
        const got = await runRouter(ctx, c, type, x, w0.data, b0, w3.data, manyRows);
        const ref = routerRef(Float64Array.from(x), c.rows, c.width, w0.rounded, b0, w3.rounded, c.gating, c.experts, c.k);

        expectClose(got.probs, ref.probs, TOL, 'probs');
        // Gates against the reference's sorted probabilities: continuous even where two slots swap.
        expectClose(got.gates, ref.gates, TOL, 'gates');
        let checked = 0;
        for (let r = 0; r < c.rows; r++) {
          const sorted = Array.from(ref.probs.subarray(r * c.experts, (r + 1) * c.experts)).sort((a, b) => b - a);
          for (let s = 0; s < c.k; s++) {
            const gapAbove = s === 0 ? Infinity : sorted[s - 1] - sorted[s];
            const gapBelow = s + 1 < c.experts ? sorted[s] - sorted[s + 1] : Infinity;
            if (gapAbove > MARGIN && gapBelow > MARGIN) {
              expect(got.ids[r * c.k + s], `row ${r} slot ${s}`).toBe(ref.ids[r * c.k + s]);
              checked++;
            }
            // A slot's gate is its expert's probability, bit for bit, whatever the margins.
            expect(got.gates[r * c.k + s]).toBe(got.probs[r * c.experts + got.ids[r * c.k + s]]);
          }
        }
        expect(checked, 'too few well-separated slots to check the ids').toBeGreaterThan((c.rows * c.k) / 2);
      });
    }

    it('picks a hand-built winner, keeps raw (unrenormalised) gates and breaks ties by lower index', async () => {
      const ctx = await gpuContext();
      // C=2, G=2, E=4, k=2. hidden = gelu_erf([x0, 0]) = [gelu_erf(1), 0]; logits = W3·hidden.
      const c: Case = { rows: 2, width: 2, gating: 2, experts: 4, k: 2 };
      const x = new Float32Array([1, 0, 1, 0]);
      const w0 = new Float32Array([1, 0, 0, 0]);
      const b0 = new Float32Array([0, 0]);
      const h = geluErf(1);
      // Row logits: [2h, -h, 5h, 0] → expert 2 first, expert 0 second.
      const w3a = new Float32Array([2, 0, -1, 0, 5, 0, 0, 0]);
      const got = await runRouter(ctx, c, 'f32', x, w0, b0, w3a, manyRows);
      const logits = [2 * h, -h, 5 * h, 0];
      const z = logits.reduce((s, l) => s + Math.exp(l - 5 * h), 0);
      const p = logits.map((l) => Math.exp(l - 5 * h) / z);
      expect(Array.from(got.ids)).toEqual([2, 0, 2, 0]);
      // Closed-form values, so the same 1e-6 as above (a few float32 ulps are all that separate them).
      expectClose(got.gates, [p[2], p[0], p[2], p[0]], 1e-6, 'gates');
      expect(got.gates[0] + got.gates[1]).toBeLessThan(0.99); // not renormalised over the k
      expectClose(got.probs, [...p, ...p], 1e-6, 'probs');

      // Experts 1 and 3 tie for the top: the lower index takes slot 0.
      const w3b = new Float32Array([0, 0, 3, 0, 1, 0, 3, 0]);
      const tie = await runRouter(ctx, c, 'f32', x, w0, b0, w3b, manyRows);
      expect(Array.from(tie.ids)).toEqual([1, 3, 1, 3]);
      expect(tie.gates[0]).toBe(tie.gates[1]);
    });

    it('rejects shapes it cannot run', async () => {
      const ctx = await gpuContext();
      const b = {} as Parameters<typeof routerTopK>[3];
      await expect(routerTopK(ctx, { width: 64, gating: 32, experts: 200, k: 2 }, 'f32', b)).rejects.toThrow(/experts 200/);
      await expect(routerTopK(ctx, { width: 64, gating: 32, experts: 8, k: 9 }, 'f32', b)).rejects.toThrow(/k 9/);
      await expect(routerTopK(ctx, { width: 64, gating: 32, experts: 4, k: 5 }, 'f32', b)).rejects.toThrow(/k 5/);
      await expect(routerTopK(ctx, { width: 4096, gating: 32, experts: 8, k: 2 }, 'f32', b)).rejects.toThrow(/width 4096/);
    });
  });

describe('lib/gelu.wgsl', () => {
  // A throwaway kernel applying both GELUs element-wise, built from the library's own source.
  async function applyGelus(ctx: GpuContext, xs: Float32Array): Promise<{ erf: Float32Array; tanh: Float32Array }> {
    const code = `${shaderSource('lib/gelu.wgsl')}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>; // [2, n]: gelu_erf, then gelu_tanh
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let n = arrayLength(&x);
  let i = gid.x + gid.y * 65535u * 64u;
  if (i < n) {
    y[i] = gelu_erf(x[i]);
    y[n + i] = gelu_tanh(x[i]);
  }
}`;
    const device = ctx.device;
    const module = device.createShaderModule({ code });
    const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const y = output(ctx, xs.length * 8);
    const bg = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: upload(ctx, xs) } },
        { binding: 1, resource: { buffer: y } },
      ],
    });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(Math.ceil(xs.length / 64));
    pass.end();
    submit(ctx, enc);
    const out = await readF32(ctx, y);
    return { erf: out.subarray(0, xs.length), tanh: out.subarray(xs.length) };
  }

  it('gelu_erf is within 1e-6 of the exact GELU on a dense grid, and both GELUs stay finite', async () => {
    const ctx = await gpuContext();
    // Step 2^-10 over [-12, 12] (24577 points), plus extremes that must not produce NaN.
    const grid = Array.from({ length: 24 * 1024 + 1 }, (_, i) => -12 + i / 1024);
    const extremes = [-1e30, -1e6, -100, -20, 20, 100, 1e6, 1e30];
    const xs = Float32Array.from([...grid, ...extremes]);
    const got = await applyGelus(ctx, xs);
    const n = grid.length;
    // The approximation's own error is < 2e-7; float32 rounding of the result (half an ulp of
    // values up to 12) adds up to 5e-7.
    expectClose(got.erf.subarray(0, n), grid.map(geluErf), 1e-6, 'gelu_erf');
    // gelu_tanh through the sigmoid identity: a few float32 ulps of the result.
    expectClose(got.tanh.subarray(0, n), grid.map(geluTanh), 2e-6, 'gelu_tanh');
    for (let i = n; i < xs.length; i++) {
      const x = xs[i];
      const want = Math.max(x, 0);
      expect(Math.abs(got.erf[i] - want), `gelu_erf(${x})`).toBeLessThanOrEqual(Math.abs(x) * 1e-7 + 1e-12);
      expect(Math.abs(got.tanh[i] - want), `gelu_tanh(${x})`).toBeLessThanOrEqual(Math.abs(x) * 1e-7 + 1e-12);
    }
  });
});
