import { BufferUsage, createUniform } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/context.ts';
import { bindGroup, type Binding, type Dispatch } from './dispatch.ts';
import type { SamplingOptions } from '../token-model.ts';

/**
 * The sampler's state on the GPU: its uniform (struct SamplerParams in shaders/sample.wgsl:
 * {temperature: f32, top_k: u32, top_p: f32, seed: u32, repetition_penalty: f32}) and the
 * `seen` bitmask of the tokens in the context. Both are written when a generation starts, not
 * per token: the position that varies the draw comes from the step uniform, and the sampler
 * itself marks each token it chooses as seen.
 */
export class SamplerParams {
  readonly buffer: GPUBuffer;
  /** u32 [ceil(vocab / 32)]: bit i set when token i is in the context. */
  readonly seen: GPUBuffer;
  private readonly data = new ArrayBuffer(32);
  private readonly f32 = new Float32Array(this.data);
  private readonly u32 = new Uint32Array(this.data);
  private readonly seenBits: Uint32Array<ArrayBuffer>;

  constructor(
    private readonly device: GPUDevice,
    readonly vocab: number,
  ) {
    this.buffer = createUniform(device, 32, 'sampler params');
    this.seenBits = new Uint32Array(Math.ceil(vocab / 32));
    this.seen = device.createBuffer({
      label: 'sampler seen tokens',
      size: Math.max(4, this.seenBits.byteLength),
      usage: BufferUsage.STORAGE | BufferUsage.COPY_DST,
    });
  }

  write(o: SamplingOptions): void {
    const penalty = o.repetitionPenalty ?? 1;
    if (![o.temperature, o.topP].every(Number.isFinite) || !Number.isInteger(o.topK) || o.topK < 0 || !Number.isInteger(o.seed)) {
      throw new Error(`sampler: temperature and topP must be finite numbers, topK a non-negative integer and seed an integer (got ${JSON.stringify(o)})`);
    }
    if (!(penalty > 0) || !Number.isFinite(penalty)) throw new Error(`sampler: repetitionPenalty must be a positive number, got ${penalty}`);
    this.f32[0] = o.temperature;
    this.u32[1] = Math.min(o.topK, 0xffffffff);
    this.f32[2] = o.topP;
    this.u32[3] = o.seed >>> 0;
    this.f32[4] = penalty;
    this.device.queue.writeBuffer(this.buffer, 0, this.data);
  }

  /** Marks exactly `ids` as the tokens in the context (the prompt, when a generation starts). */
  writeSeen(ids: readonly number[]): void {
    this.seenBits.fill(0);
    for (const id of ids) this.seenBits[id >>> 5] |= 1 << (id & 31);
    this.device.queue.writeBuffer(this.seen, 0, this.seenBits);
  }

  destroy(): void {
    this.buffer.destroy();
    this.seen.destroy();
  }
}

export interface SamplerBuffers {
  step: Binding; // Step uniform: the draw uses position pos + n_tokens
  logits: Binding; // [V] f32: the logits row to sample from (bind row 0 of the step's logits)
  params: Binding; // SamplerParams uniform
  out: Binding; // u32 [≥ 1] out: the chosen id at index 0 (the next decode step's embedding input)
  seen: Binding; // u32 [ceil(V / 32)] in/out: tokens in the context (SamplerParams.seen)
}

/** Samples one token id from a row of logits on the GPU (shaders/sample.wgsl): one workgroup. */
export async function sampler(gpu: GpuContext, shape: { vocab: number }, b: SamplerBuffers, label = 'sample'): Promise<Dispatch> {
  if (!Number.isInteger(shape.vocab) || shape.vocab < 1) throw new Error(`sampler: vocab ${shape.vocab} must be a positive integer`);
  const pipeline = await gpu.pipelines.get('sample.wgsl', { defines: { V: shape.vocab, WG: 256 } });
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, { 0: b.step, 1: b.logits, 2: b.params, 3: b.out, 4: b.seen }, label),
    // A single workgroup whatever the step's row count: only one token is sampled per step.
    grid: () => [1, 1, 1],
  };
}
