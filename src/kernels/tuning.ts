import type { GpuContext } from '../gpu/context.ts';

// The numbers that fit the WGSL kernels to an adapter, one table per adapter profile
// (GpuContext.kernelProfile: 'cpu' for CPU emulations such as SwiftShader, 'gpu' otherwise). On a
// GPU, workgroups share loads and reduce in teams; on a CPU adapter every barrier and tree
// reduction costs more than the arithmetic it saves, so kernels there give each invocation a
// whole row, column or key walk. The GPU numbers are reasoned defaults (no GPU was lent while
// they were set); the CPU ones were measured on SwiftShader (docs/performance.md).

export type KernelProfile = 'gpu' | 'cpu';

export interface KernelTuning {
  /** linear: output rows per workgroup. */
  linearRowsPerWorkgroup: number;
  /** linear: invocations sharing one output row, for an input width. */
  linearLanes(inDim: number): number;
  /** LayerNorm: invocations per row. */
  layerNormWorkgroup: number;
  /** Grouped expert matmul (prefill): slots per tile, each weight read serving them all. */
  groupedTileSlots: number;
  /**
   * Prefill groups a router's slots by expert only when the chunk gives its experts at least this
   * many slots each on average; below it, the per-slot kernels (whose work follows the slots).
   */
  groupedMinSlotsPerExpert: number;
  /** Expert mat-vec (decode): output-column pairs × splits of `in` per workgroup. */
  expertMatvecTile(inDim: number, outDim: number, groupsPerRow: number): { COLS: number; SPLIT: number };
  /** Router: invocations per workgroup and per dot product, for E experts. */
  routerShape(experts: number): { WG: number; LANES: number };
  /** Router steps of many rows: one invocation per row, no barriers (shaders/router_topk_serial.wgsl). */
  routerSerialRows: boolean;
  /** Stick-breaking attention: one invocation per (row or segment, slot, head) walking its keys alone. */
  stickBreakingSerial: boolean;
  /** Workgroup size of the serial kernels. */
  serialWorkgroup: number;
}

/** The least power of two ≥ n (1 for n ≤ 1). */
export function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** Invocations per workgroup of the teamed kernels (router, expert mat-vec). */
const WG = 256;

export const KERNEL_TUNING: Record<KernelProfile, KernelTuning> = {
  gpu: {
    linearRowsPerWorkgroup: 8,
    // 32 consecutive words of a weight row per read for real widths; fewer lanes for narrow
    // inputs so that most are not idle.
    linearLanes(inDim) {
      let lanes = 4;
      while (lanes < 32 && lanes * 16 < inDim) lanes *= 2;
      return lanes;
    },
    layerNormWorkgroup: 64,
    // 16 amortises the weight traffic while 16 column pairs of accumulators stay in registers.
    groupedTileSlots: 16,
    // A GPU reads each expert's weights once per tile: grouping pays even for sparse tiles.
    groupedMinSlotsPerExpert: 0,
    // Decode is one token row: the column tile narrows (32 pairs, 128 contiguous bytes of a
    // 16-bit row per read, down to 8 pairs, one 32-byte sector) until the row gets at least 128
    // workgroups, since a memory-bound kernel needs many loads in flight.
    expertMatvecTile(inDim, outDim, groupsPerRow) {
      const pairs = Math.ceil(outDim / 2);
      let cols = 32;
      while (cols > 8 && Math.ceil(pairs / cols) * groupsPerRow < 128) cols /= 2;
      cols = Math.min(cols, pow2AtLeast(pairs));
      return { COLS: cols, SPLIT: Math.min(WG / cols, pow2AtLeast(inDim)) };
    },
    // Teams of 32 lanes share each dot product.
    routerShape: () => ({ WG, LANES: 32 }),
    routerSerialRows: false,
    stickBreakingSerial: false,
    serialWorkgroup: 16,
  },
  cpu: {
    // One invocation owns whole rows: 1024 → 50295 in bf16 took 3.9 s with 32 lanes per row,
    // 0.41 s with one.
    linearRowsPerWorkgroup: 256,
    linearLanes: () => 1,
    // One invocation normalises a row alone: its barriers then wait for nobody.
    layerNormWorkgroup: 1,
    // The MLP up-projection of 128 rows (1024 → 2048, E 32, k 2): 1.4 s with 8, 2.2 s with 16
    // (bf16; 2.0 and 2.3 s in q4); partial tiles waste more with 16.
    groupedTileSlots: 8,
    // Compute-bound: a tile's empty rows cost as much as full ones. MoLM-350M-4B's shape (2 layers,
    // q4, SwiftShader), 16-token prompt: the grouped q_proj took 5× the per-slot time per token
    // (1 or 2 slots per expert); grouped only from full tiles on average.
    groupedMinSlotsPerExpert: 8,
    // Each invocation sums its column pair over all of `in` (SPLIT 1): a 64 → 128 up-projection
    // over 128 rows took 1 s with SPLIT 32.
    expertMatvecTile: (_inDim, outDim) => ({ COLS: Math.min(64, pow2AtLeast(Math.ceil(outDim / 2))), SPLIT: 1 }),
    // One invocation per output, a workgroup just wide enough for the softmax (one expert each).
    routerShape: (experts) => ({ WG: Math.max(64, pow2AtLeast(experts)), LANES: 1 }),
    routerSerialRows: true,
    stickBreakingSerial: true,
    serialWorkgroup: 16,
  },
};

/** The tuning of the adapter a context runs on. */
export function tuningOf(gpu: GpuContext): KernelTuning {
  return KERNEL_TUNING[gpu.kernelProfile];
}
