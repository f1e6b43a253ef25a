import type { ModelConfig } from '../config.ts';
import { createReadback, createStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/context.ts';
import { mapRead, submit } from '../gpu/queue.ts';
import type { Activations } from './activations.ts';
import { type RoutingRecord, emptyRoutingRecord } from '../token-model.ts';

/** The four per-layer router outputs a trace keeps, in the trace buffer's order. */
const KINDS = ['attIds', 'attGates', 'mlpIds', 'mlpGates'] as const;

/**
 * Records router choices by context position while switched on. Each step's router outputs
 * sit in per-layer activation buffers ([rows, k]); the recorder appends copies of them to the
 * step's command encoder, into one buffer laid out [layer][kind][position][k] so a step of any
 * number of rows is 4 × layers copies. Nothing is allocated, copied or read while it is off,
 * and reading is one map of the positions asked for.
 */
export class RoutingRecorder {
  private buffer: GPUBuffer | null = null;
  private staging: GPUBuffer | null = null;
  on = false;

  constructor(
    private readonly ctx: GpuContext,
    private readonly c: ModelConfig,
    private readonly maxContext: number,
  ) {}

  private get device(): GPUDevice {
    return this.ctx.device;
  }

  private width(kind: (typeof KINDS)[number]): number {
    return kind.startsWith('att') ? this.c.kAtt : this.c.kMlp;
  }

  /** Byte offset of (layer, kind, position) in the trace buffer. */
  private offset(layer: number, kind: number, position: number): number {
    let off = layer * this.maxContext * 2 * (this.c.kAtt + this.c.kMlp);
    for (let i = 0; i < kind; i++) off += this.maxContext * this.width(KINDS[i]);
    return (off + position * this.width(KINDS[kind])) * 4;
  }

  private get bytes(): number {
    return this.c.nLayer * this.maxContext * 2 * (this.c.kAtt + this.c.kMlp) * 4;
  }

  /** Appends the copies of a step's routing (rows at `position`…) when recording. */
  record(enc: GPUCommandEncoder, acts: Activations, position: number, rows: number): void {
    if (!this.on) return;
    this.buffer ??= createStorage(this.device, this.bytes, 'routingTrace');
    for (let l = 0; l < this.c.nLayer; l++) {
      KINDS.forEach((kind, k) => {
        const bytes = rows * this.width(kind) * 4;
        enc.copyBufferToBuffer(acts[kind][l], 0, this.buffer!, this.offset(l, k, position), bytes);
      });
    }
  }

  /** The routing of positions [start, end), as recorded (positions never recorded read as zeros). */
  async read(start: number, end: number): Promise<RoutingRecord> {
    const T = Math.max(0, end - start);
    const L = this.c.nLayer;
    const record = emptyRoutingRecord(this.c, T);
    if (T === 0 || !this.buffer) return record;
    this.staging ??= createReadback(this.device, this.bytes, 'routingTraceReadback');
    // Gather [layer][kind][start..end) into the staging buffer, then transpose to [token][layer].
    const enc = this.device.createCommandEncoder();
    const spans: { layer: number; kind: number; at: number }[] = [];
    let at = 0;
    for (let l = 0; l < L; l++) {
      KINDS.forEach((kind, k) => {
        const bytes = T * this.width(kind) * 4;
        enc.copyBufferToBuffer(this.buffer!, this.offset(l, k, start), this.staging!, at, bytes);
        spans.push({ layer: l, kind: k, at });
        at += bytes;
      });
    }
    submit(this.ctx, enc);
    const data = await mapRead(this.ctx, this.staging, at);
    const targets = [record.attExperts, record.attGates, record.mlpExperts, record.mlpGates];
    for (const { layer, kind, at: byteAt } of spans) {
      const k = this.width(KINDS[kind]);
      const target = targets[kind];
      const src = kind % 2 === 0 ? new Uint32Array(data, byteAt, T * k) : new Float32Array(data, byteAt, T * k);
      for (let t = 0; t < T; t++) for (let j = 0; j < k; j++) target[(t * L + layer) * k + j] = src[t * k + j];
    }
    return record;
  }

  destroy(): void {
    this.buffer?.destroy();
    this.staging?.destroy();
  }
}
