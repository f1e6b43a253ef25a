import type { ModelConfig } from '../config.ts';
import { UsageError } from '../errors.ts';
import { createReadback, createStorage } from '../gpu/buffers.ts';
import { encodeDispatches, type Dispatch } from '../kernels/dispatch.ts';
import type { Activations } from '../model/activations.ts';
import { layerTensorNames } from '../model/tensor-names.ts';
import type { ExpertSlots, GpuWeights, WeightPlan } from '../model/weights.ts';
import { ExpertResidency, type EvictionPolicy } from './residency.ts';

const MAP_READ = 0x01;

/** Experts on the GPU under a memory budget. */
export interface ExpertBudget {
  /** Bytes of expert weights the GPU may hold, or a share of them: '25%'. */
  bytes: number | string;
  /** Which resident expert makes room for a missing one (default 'lfu', measured: docs/experts.md). */
  policy?: EvictionPolicy;
}

/** Slots per layer for each kind of expert under a budget; null when every expert fits. */
export interface SlotCounts {
  att: number;
  mlp: number;
  /** Bytes of all experts, and of the slots. */
  expertBytes: number;
  slotBytes: number;
}

const EXPERT_TENSORS = {
  att: (l: number) => [layerTensorNames(l).queryExperts, layerTensorNames(l).outputExperts],
  mlp: (l: number) => [layerTensorNames(l).upExperts, layerTensorNames(l).downExperts],
} as const;

/**
 * How many experts of each kind every layer keeps on the GPU within `budget` bytes of expert
 * weights: the same share of each kind, never fewer than the router's k (a token needs its k
 * experts at once). Null when the budget holds them all.
 */
export function slotCounts(c: ModelConfig, plan: WeightPlan, budget: number | string): SlotCounts | null {
  const bytesOf = (name: string) => plan.entries.find((e) => e.name === name)!.bytes;
  let att = 0;
  let mlp = 0;
  for (let l = 0; l < c.nLayer; l++) {
    att += EXPERT_TENSORS.att(l).reduce((a, n) => a + bytesOf(n), 0);
    mlp += EXPERT_TENSORS.mlp(l).reduce((a, n) => a + bytesOf(n), 0);
  }
  const expertBytes = att + mlp;
  let bytes: number;
  if (typeof budget === 'string' && /^\d+(\.\d+)?%$/.test(budget.trim())) bytes = (parseFloat(budget) / 100) * expertBytes;
  else bytes = Number(budget);
  if (!Number.isFinite(bytes) || bytes <= 0) throw new UsageError(`The GPU memory budget must be a number of bytes or a share like '25%', got ${String(budget)}.`);
  if (bytes >= expertBytes) return null;
  const perAtt = att / c.nAttExperts;
  const perMlp = mlp / c.nMlpExperts;
  const minimum = c.kAtt * perAtt + c.kMlp * perMlp;
  if (bytes < minimum) {
    throw new UsageError(
      `A GPU memory budget of ${bytes.toFixed(0)} bytes cannot hold the ${c.kAtt} attention and ${c.kMlp} MLP experts a token needs in every layer (${minimum.toFixed(0)} bytes of the ${expertBytes} of expert weights). Raise the budget.`,
    );
  }
  const share = bytes / expertBytes;
  let sAtt = Math.max(c.kAtt, Math.floor(share * c.nAttExperts));
  let sMlp = Math.max(c.kMlp, Math.floor(share * c.nMlpExperts));
  // Flooring to k can overshoot the budget; take slots back from the larger kind until it fits.
  while (sAtt * perAtt + sMlp * perMlp > bytes) {
    if (sMlp > c.kMlp && (sMlp * perMlp >= sAtt * perAtt || sAtt === c.kAtt)) sMlp--;
    else sAtt--;
  }
  return { att: sAtt, mlp: sMlp, expertBytes, slotBytes: sAtt * perAtt + sMlp * perMlp };
}

/** The slotted tensors of a model with these slot counts (GpuWeights' ExpertSlots). */
export function expertSlots(c: ModelConfig, slots: SlotCounts): ExpertSlots {
  const m = new Map<string, number>();
  for (let l = 0; l < c.nLayer; l++) {
    for (const n of EXPERT_TENSORS.att(l)) m.set(n, slots.att);
    for (const n of EXPERT_TENSORS.mlp(l)) m.set(n, slots.mlp);
  }
  return m;
}

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
    private readonly device: GPUDevice,
    private readonly c: ModelConfig,
    private readonly weights: GpuWeights,
    private readonly acts: Activations,
    readonly slots: SlotCounts,
    policy: EvictionPolicy = 'lfu',
  ) {
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
        this.device.queue.submit([enc.finish()]);
        return;
      }
      const { kind, layer } = seg.after;
      const k = kind === 'att' ? this.c.kAtt : this.c.kMlp;
      enc.copyBufferToBuffer((kind === 'att' ? this.acts.attIds : this.acts.mlpIds)[layer], 0, this.readback, 0, k * 4);
      this.device.queue.submit([enc.finish()]);
      await this.readback.mapAsync(MAP_READ, 0, k * 4);
      const picks = this.picks.subarray(0, k);
      picks.set(new Uint32Array(this.readback.getMappedRange(0, k * 4)));
      this.readback.unmap();
      const residency = (kind === 'att' ? this.att : this.mlp)[layer];
      for (const { expert, slot } of residency.admit(picks)) {
        for (const name of EXPERT_TENSORS[kind](layer)) this.loadedBytes += this.weights.loadExpert(this.device, name, expert, slot);
      }
      const slotIds = this.slotIds.subarray(0, k);
      picks.forEach((e, i) => (slotIds[i] = residency.slotOf(e)));
      this.device.queue.writeBuffer((kind === 'att' ? this.attSlotIds : this.mlpSlotIds)[layer], 0, slotIds);
    }
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
