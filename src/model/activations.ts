import type { ModelConfig } from '../config.ts';
import { createReadback, createStorage } from '../gpu/buffers.ts';

/**
 * Every intermediate tensor of a step of up to `maxRows` token rows, allocated once at load
 * time. Decode uses the same buffers with one row. Router outputs are kept per layer so that a
 * routing trace can be read after a step without re-running it.
 */
export class Activations {
  readonly ids: GPUBuffer; // u32 [maxRows]: prompt ids of a prefill chunk
  readonly nextId: GPUBuffer; // u32 [1]: the sampled id, written by the sampler, read by decode's embedding
  readonly h: GPUBuffer; // [maxRows, C] residual stream
  readonly x: GPUBuffer; // [maxRows, C] LayerNorm output
  readonly k: GPUBuffer | null; // [maxRows, A] projected keys (k/v models only)
  readonly v: GPUBuffer | null; // [maxRows, A]
  readonly q: GPUBuffer; // [maxRows, kAtt, A]
  readonly attnOut: GPUBuffer; // [maxRows, kAtt, A]
  readonly up: GPUBuffer; // [maxRows, kMlp, F] gelu(x @ W1[e])
  /** Grouped prefill (src/kernels/expert-grouped.ts): a router's slots sorted by expert, reused by every router. */
  readonly expertGroups: GPUBuffer | null;
  /** Grouped prefill: gate-weighted slot outputs of a combine, [maxRows, max(kAtt, kMlp), C], before their sum. */
  readonly slotOut: GPUBuffer | null;
  readonly attIds: GPUBuffer[]; // per layer u32 [maxRows, kAtt]
  readonly attGates: GPUBuffer[]; // per layer f32 [maxRows, kAtt]
  readonly attProbs: GPUBuffer[]; // per layer f32 [maxRows, E_att]
  readonly mlpIds: GPUBuffer[];
  readonly mlpGates: GPUBuffer[];
  readonly mlpProbs: GPUBuffer[];
  readonly lastLogits: GPUBuffer; // [V] logits of the last row
  readonly idReadback: GPUBuffer[]; // two staging slots, so one can map while the next step runs
  readonly lastLogitsReadback: GPUBuffer;
  private allLogitsBuffer: GPUBuffer | null = null;
  private allLogitsStaging: GPUBuffer | null = null;
  private readonly buffers: GPUBuffer[] = [];

  constructor(
    private readonly device: GPUDevice,
    private readonly c: ModelConfig,
    readonly maxRows: number,
    kvProjections: boolean,
    /** Bytes of the expert groups of a grouped prefill; 0 when prefill is not grouped. */
    expertGroupsBytes = 0,
  ) {
    const f = (n: number, label: string) => this.track(createStorage(device, n * 4, label));
    const perLayer = (n: number, label: string) => Array.from({ length: c.nLayer }, (_, l) => f(n, `${label}.${l}`));
    const R = maxRows;
    this.ids = f(R, 'ids');
    this.nextId = f(1, 'nextId');
    this.h = f(R * c.nEmbd, 'h');
    this.x = f(R * c.nEmbd, 'x');
    this.k = kvProjections ? f(R * c.attHidden, 'k') : null;
    this.v = kvProjections ? f(R * c.attHidden, 'v') : null;
    this.q = f(R * c.kAtt * c.attHidden, 'q');
    this.attnOut = f(R * c.kAtt * c.attHidden, 'attnOut');
    this.up = f(R * c.kMlp * c.ffdHidden, 'up');
    this.expertGroups = expertGroupsBytes > 0 ? f(expertGroupsBytes / 4, 'expertGroups') : null;
    this.slotOut = expertGroupsBytes > 0 ? f(R * Math.max(c.kAtt, c.kMlp) * c.nEmbd, 'slotOut') : null;
    this.attIds = perLayer(R * c.kAtt, 'attIds');
    this.attGates = perLayer(R * c.kAtt, 'attGates');
    this.attProbs = perLayer(R * c.nAttExperts, 'attProbs');
    this.mlpIds = perLayer(R * c.kMlp, 'mlpIds');
    this.mlpGates = perLayer(R * c.kMlp, 'mlpGates');
    this.mlpProbs = perLayer(R * c.nMlpExperts, 'mlpProbs');
    this.lastLogits = f(c.vocabSize, 'lastLogits');
    this.idReadback = [0, 1].map((i) => this.track(createReadback(device, 4, `idReadback.${i}`)));
    this.lastLogitsReadback = this.track(createReadback(device, c.vocabSize * 4, 'lastLogitsReadback'));
  }

  /** Logits of every row of a chunk, [maxRows, V]: only the `logits` command needs them. */
  get allLogits(): GPUBuffer {
    this.allLogitsBuffer ??= this.track(createStorage(this.device, this.maxRows * this.c.vocabSize * 4, 'allLogits'));
    return this.allLogitsBuffer;
  }

  get allLogitsReadback(): GPUBuffer {
    this.allLogitsStaging ??= this.track(createReadback(this.device, this.maxRows * this.c.vocabSize * 4, 'allLogitsReadback'));
    return this.allLogitsStaging;
  }

  get bytes(): number {
    return this.buffers.reduce((a, b) => a + b.size, 0);
  }

  private track(b: GPUBuffer): GPUBuffer {
    this.buffers.push(b);
    return b;
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
  }
}
