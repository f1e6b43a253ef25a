import type { TensorInfo, TensorSource } from '../checkpoint/types.ts';
import type { ModelConfig } from '../config.ts';
import { decodeTensor } from '../quant/decode.ts';
import type { WeightSink } from '../shards/load-model.ts';
import { DTYPE_OF_STORAGE, type StorageType, expertBytesOf, isQuantType, storageBytes, storageOfDtype, valueBytes } from '../storage-types.ts';
import { layerTensorNames } from '../tensor-names.ts';
import { toStorage, type WeightPlan } from '../weight-plan.ts';
import { type LoadedPack, type PackBase, type PackRange, checkPackAgainstBase, mergedRawConfig, packRanges } from './pack-shapes.ts';

// A base model with packs merged in is an ordinary, larger model: every engine, the expert
// budget and the routing trace see E + A experts and G + U router units. The base's tensors keep
// their bytes; only the ones a pack extends change:
//   stacked experts  the base's bytes, then each pack's experts in the base's storage type;
//   router w_gate.0  the base's rows, then each pack's added units (zeros where a pack has none);
//   router w_gate.3  the base's rows with zeros over the added units (so the old experts' logits
//                    are the base's), then each pack's rows over the base's units and its own.
// Routers are rebuilt in f32 (or the base's own float type): re-quantising a base q8 / q4 router
// would move its values. With no pack nothing here runs and the model is the base, bit for bit.

type Role = 'experts' | 'gate0' | 'gate0Bias' | 'gate3';

interface Extended {
  role: Role;
  moe: 'att' | 'mlp';
}

export class PackMerge {
  readonly config: ModelConfig;
  readonly rawConfig: Record<string, unknown>;
  readonly ranges: PackRange[];
  private readonly extended = new Map<string, Extended>();

  constructor(
    readonly base: ModelConfig,
    baseRaw: Record<string, unknown>,
    readonly packs: readonly LoadedPack[],
  ) {
    const merged = mergedRawConfig(
      baseRaw,
      base,
      packs.map((p) => p.info),
    );
    this.config = merged.config;
    this.rawConfig = merged.raw;
    this.ranges = packRanges(base, packs);
    const anyUnits = packs.some((p) => p.info.adds.routerUnits > 0);
    for (let l = 0; l < base.nLayer; l++) {
      const n = layerTensorNames(l);
      for (const [moe, added, names] of [
        ['att', packs.some((p) => p.info.adds.attExperts > 0), [n.attGate0Weight, n.attGate0Bias, n.attGate3Weight, n.queryExperts, n.outputExperts]],
        ['mlp', packs.some((p) => p.info.adds.mlpExperts > 0), [n.mlpGate0Weight, n.mlpGate0Bias, n.mlpGate3Weight, n.upExperts, n.downExperts]],
      ] as const) {
        const [g0, g0b, g3, up, down] = names;
        if (anyUnits) this.extended.set(g0, { role: 'gate0', moe }).set(g0b, { role: 'gate0Bias', moe });
        if (anyUnits || added) this.extended.set(g3, { role: 'gate3', moe });
        if (added) this.extended.set(up, { role: 'experts', moe }).set(down, { role: 'experts', moe });
      }
    }
  }

  /** Whether the merged tensor differs from the base's. */
  extends(name: string): boolean {
    return this.extended.has(name);
  }

  /** The merged tensor's shape, from the base's. */
  shape(name: string, baseShape: readonly number[]): number[] {
    const x = this.extended.get(name);
    if (!x) return [...baseShape];
    const c = this.config;
    const E = x.moe === 'att' ? c.nAttExperts : c.nMlpExperts;
    switch (x.role) {
      case 'experts':
        return [E, baseShape[1], baseShape[2]];
      case 'gate0':
        return [c.gatingSize, baseShape[1]];
      case 'gate0Bias':
        return [c.gatingSize];
      case 'gate3':
        return [E, c.gatingSize];
    }
  }

  /** The merged tensor's storage: experts keep the base's; routers become f32 unless the base's is a float type. */
  storage(name: string, baseStorage: StorageType): StorageType {
    const x = this.extended.get(name);
    if (!x || x.role === 'experts') return baseStorage;
    return isQuantType(baseStorage) ? 'f32' : baseStorage;
  }

  /** Each pack's experts of a stacked tensor, converted to `storage`, back to back. */
  expertTail(name: string, storage: StorageType): Uint8Array {
    const parts: Uint8Array[] = [];
    for (const p of this.packs) {
      const t = p.tensors.get(name);
      if (t) parts.push(toStorage(t.bytes, t.info, storage));
    }
    return concat(parts);
  }

  /**
   * The merged tensor's bytes in `storage`, from the base tensor's bytes. Stacked experts need
   * the base's storage type (their bytes are kept); routers may come in any.
   */
  assemble(name: string, baseBytes: Uint8Array, baseInfo: Pick<TensorInfo, 'dtype' | 'shape'>, storage: StorageType): Uint8Array {
    const x = this.extended.get(name);
    if (!x) return baseBytes;
    if (x.role === 'experts') return concat([baseBytes.subarray(0, valueBytes(baseInfo.shape, storage)), this.expertTail(name, storage)]);
    const shape = this.shape(name, baseInfo.shape);
    const f = this.assembleRouter(name, x, decodeTensor(baseBytes, baseInfo), baseInfo.shape);
    return toStorage(new Uint8Array(f.buffer), { name, dtype: 'F32', shape, byteLength: f.byteLength }, storage);
  }

  private assembleRouter(name: string, x: Extended, base: Float32Array, baseShape: readonly number[]): Float32Array {
    const c = this.config;
    const G = this.base.gatingSize;
    const G2 = c.gatingSize;
    const values = (p: LoadedPack) => {
      const t = p.tensors.get(name);
      return t ? decodeTensor(t.bytes, t.info) : null;
    };
    if (x.role === 'gate0' || x.role === 'gate0Bias') {
      const width = x.role === 'gate0' ? baseShape[1] : 1;
      const out = new Float32Array(G2 * width);
      out.set(base);
      let row = G;
      for (const p of this.packs) {
        const U = p.info.adds.routerUnits;
        const v = values(p);
        if (v) out.set(v, row * width);
        row += U;
      }
      return out;
    }
    // gate3: [E', G'].
    const E = x.moe === 'att' ? this.base.nAttExperts : this.base.nMlpExperts;
    const E2 = x.moe === 'att' ? c.nAttExperts : c.nMlpExperts;
    const out = new Float32Array(E2 * G2);
    for (let e = 0; e < E; e++) out.set(base.subarray(e * G, (e + 1) * G), e * G2);
    let row = E;
    let unit = G;
    for (const p of this.packs) {
      const A = x.moe === 'att' ? p.info.adds.attExperts : p.info.adds.mlpExperts;
      const U = p.info.adds.routerUnits;
      const v = values(p);
      if (v) {
        for (let a = 0; a < A; a++) {
          const src = a * (G + U);
          out.set(v.subarray(src, src + G), (row + a) * G2);
          out.set(v.subarray(src + G, src + G + U), (row + a) * G2 + unit);
        }
      }
      row += A;
      unit += U;
    }
    return out;
  }

  /** The base's plan with the merged tensors' shapes, storage and sizes. */
  plan(base: WeightPlan): WeightPlan {
    const entries = base.entries.map((e) => {
      if (!this.extends(e.name)) return e;
      const shape = this.shape(e.name, e.shape);
      const storage = this.storage(e.name, e.storage);
      const bytes = storageBytes(shape, storage);
      if (storage === e.storage && expertBytesOf(shape, storage) !== undefined && expertBytesOf(shape, storage)! * shape[0] !== bytes) {
        throw new Error(`${e.name}: a ${storage} [${shape}] tensor is not its experts back to back`);
      }
      return { name: e.name, shape, storage, bytes };
    });
    return {
      matrixType: base.matrixType,
      entries,
      maxTensorBytes: Math.max(...entries.map((e) => e.bytes)),
      totalBytes: entries.reduce((a, e) => a + e.bytes, 0),
    };
  }

  /**
   * A sink for the base's stored pieces that fills a backend sink planned with `plan(basePlan)`:
   * expert pieces pass through (the base's experts come first), router pieces are gathered and
   * rebuilt once complete, and the packs' experts are written at the end.
   */
  sink(target: WeightSink, basePlan: WeightPlan): WeightSink {
    const baseEntries = new Map(basePlan.entries.map((e) => [e.name, e]));
    const routers = new Map<string, Uint8Array>();
    return {
      writePiece: (name, offset, bytes) => {
        const x = this.extended.get(name);
        if (!x || x.role === 'experts') return target.writePiece(name, offset, bytes);
        const e = baseEntries.get(name)!;
        let buf = routers.get(name);
        if (!buf) routers.set(name, (buf = new Uint8Array(e.bytes)));
        buf.set(bytes, offset);
      },
      flush: target.flush && (() => target.flush!()),
      finishWrites: () => {
        for (const [name, x] of this.extended) {
          const e = baseEntries.get(name)!;
          const storage = this.storage(name, e.storage);
          if (x.role === 'experts') {
            target.writePiece(name, e.bytes, this.expertTail(name, storage));
          } else {
            const bytes = routers.get(name) ?? new Uint8Array(e.bytes);
            const info = { dtype: DTYPE_OF_STORAGE[e.storage], shape: e.shape };
            target.writePiece(name, 0, pad4(this.assemble(name, bytes.subarray(0, valueBytes(e.shape, e.storage)), info, storage)));
          }
        }
        routers.clear();
        target.finishWrites();
      },
    };
  }

  /** The base's tensors with the packs merged in (for folders and `molm merge`). */
  source(base: TensorSource): TensorSource {
    const tensors = new Map<string, TensorInfo>();
    for (const [name, info] of base.tensors) {
      if (!this.extends(name)) {
        tensors.set(name, info);
        continue;
      }
      const stored = storageOfDtype(info.dtype);
      if (!stored) throw new Error(`${name}: ${info.dtype} cannot be merged`);
      const storage = this.storage(name, stored);
      const shape = this.shape(name, info.shape);
      tensors.set(name, { name, dtype: DTYPE_OF_STORAGE[storage], shape, byteLength: valueBytes(shape, storage) });
    }
    return {
      tensors,
      read: async (name) => {
        const bytes = await base.read(name);
        if (!this.extends(name)) return bytes;
        const info = base.tensors.get(name)!;
        return this.assemble(name, bytes, info, storageOfDtype(tensors.get(name)!.dtype)!);
      },
      close: () => base.close(),
    };
  }
}

/**
 * Checks that every pack extends this base (its weights hash, its shapes) and merges them: the
 * one way a base and packs meet, on every load path and before a live engine's swap.
 */
export function mergePacks(base: PackBase, packs: readonly LoadedPack[]): PackMerge {
  for (const p of packs) checkPackAgainstBase(p, base);
  return new PackMerge(base.config, base.rawConfig, packs);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

function pad4(bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength % 4 === 0) return bytes;
  const out = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  out.set(bytes);
  return out;
}
