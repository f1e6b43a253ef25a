import type { ModelConfig } from '../config.ts';
import { createReadback, createStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/context.ts';
import { submit, withMappedRange } from '../gpu/queue.ts';
import { encodeDispatches, type Dispatch } from '../kernels/dispatch.ts';
import type { Activations } from '../model/activations.ts';
import type { GpuWeights } from '../model/weights.ts';
import { ExpertResidency, type EvictionPolicy } from '../experts/residency.ts';
import { EXPERT_TENSORS, type SlotCounts } from '../experts/slots.ts';

export { expertSlots, slotCounts, type ExpertBudget, type SlotCounts } from '../experts/slots.ts';

export interface ExpertCacheStats {
  hits: number;
  misses: number;
  hitRate: number;
  /** Bytes copied into expert slots so far. */
  loadedBytes: number;
}

/**
 * Runs single-token steps with the experts under a budget. A step's planned dispatches are cut
 * after each router: the router's k picks are read back, the residency makes them resident
 * (copying missing experts from host memory into slots), the slot of each pick is written to
 * the slot-id buffer the expert kernels index with, and the step goes on. Everything outside
 * the expert kernels is the same plan as without a budget.
 */
export class ExpertStreamer {
  readonly att: ExpertResidency[];
  readonly mlp: ExpertResidency[];
  /** Per layer, u32 [k]: the slot of each pick, what the expert kernels read instead of expert ids. */
  readonly attSlotIds: GPUBuffer[];
  readonly mlpSlotIds: GPUBuffer[];
  private readonly readback: GPUBuffer;
  private readonly segments = new WeakMap<Dispatch[], { dispatches: Dispatch[]; after: { kind: 'att' | 'mlp'; layer: number } | null }[]>();
  private loadedBytes = 0;
  /** Host copies of one router's picks and their slots, reused every step. */
  private readonly picks: Uint32Array<ArrayBuffer>;
  private readonly slotIds: Uint32Array<ArrayBuffer>;

  constructor(
    private readonly ctx: GpuContext,
    private readonly c: ModelConfig,
    private readonly weights: GpuWeights,
    private readonly acts: Activations,
    readonly slots: SlotCounts,
    policy: EvictionPolicy = 'lfu',
  ) {
    const device = ctx.device;
    this.att = Array.from({ length: c.nLayer }, () => new ExpertResidency(c.nAttExperts, slots.att, policy));
    this.mlp = Array.from({ length: c.nLayer }, () => new ExpertResidency(c.nMlpExperts, slots.mlp, policy));
    this.attSlotIds = Array.from({ length: c.nLayer }, (_, l) => createStorage(device, c.kAtt * 4, `attSlotIds.${l}`));
    this.mlpSlotIds = Array.from({ length: c.nLayer }, (_, l) => createStorage(device, c.kMlp * 4, `mlpSlotIds.${l}`));
    this.readback = createReadback(device, Math.max(c.kAtt, c.kMlp) * 4, 'routerIdsReadback');
    this.picks = new Uint32Array(Math.max(c.kAtt, c.kMlp));
    this.slotIds = new Uint32Array(Math.max(c.kAtt, c.kMlp));
  }

  /** The plan cut after each router dispatch (labels router.att.L / router.mlp.L). */
  private cut(plan: Dispatch[]) {
    let segs = this.segments.get(plan);
    if (segs) return segs;
    segs = [];
    let current: Dispatch[] = [];
    for (const d of plan) {
      current.push(d);
      const m = /^router\.(att|mlp)\.(\d+)$/.exec(d.label);
      if (m) {
        segs.push({ dispatches: current, after: { kind: m[1] as 'att' | 'mlp', layer: Number(m[2]) } });
        current = [];
      }
    }
    segs.push({ dispatches: current, after: null });
    this.segments.set(plan, segs);
    return segs;
  }

  /** Runs one single-row step (the Step uniform already written); `finish` adds the step's copies. */
  async run(plan: Dispatch[], finish: (enc: GPUCommandEncoder) => void): Promise<void> {
    for (const seg of this.cut(plan)) {
      const enc = this.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      encodeDispatches(pass, seg.dispatches, 1);
      pass.end();
      if (!seg.after) {
        finish(enc);
        submit(this.ctx, enc);
        return;
      }
      const { kind, layer } = seg.after;
      const k = kind === 'att' ? this.c.kAtt : this.c.kMlp;
      enc.copyBufferToBuffer((kind === 'att' ? this.acts.attIds : this.acts.mlpIds)[layer], 0, this.readback, 0, k * 4);
      submit(this.ctx, enc);
      const picks = this.picks.subarray(0, k);
      await withMappedRange(this.ctx, this.readback, k * 4, (range) => picks.set(new Uint32Array(range)));
      const residency = (kind === 'att' ? this.att : this.mlp)[layer];
      for (const { expert, slot } of residency.admit(picks)) {
        for (const name of EXPERT_TENSORS[kind](layer)) this.loadedBytes += this.weights.loadExpert(this.device, name, expert, slot);
      }
      const slotIds = this.slotIds.subarray(0, k);
      picks.forEach((e, i) => {
        slotIds[i] = residency.slotOf(e);
      });
      this.device.queue.writeBuffer((kind === 'att' ? this.attSlotIds : this.mlpSlotIds)[layer], 0, slotIds);
    }
  }

  private get device(): GPUDevice {
    return this.ctx.device;
  }

  get stats(): ExpertCacheStats {
    const all = [...this.att, ...this.mlp];
    const hits = all.reduce((a, r) => a + r.hits, 0);
    const misses = all.reduce((a, r) => a + r.misses, 0);
    return { hits, misses, hitRate: hits + misses === 0 ? 1 : hits / (hits + misses), loadedBytes: this.loadedBytes };
  }

  destroy(): void {
    for (const b of [...this.attSlotIds, ...this.mlpSlotIds, this.readback]) b.destroy();
  }
}
