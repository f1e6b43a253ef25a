import type { TensorInfo } from '../checkpoint/types.ts';
import { type ModelConfig, parseConfig } from '../config.ts';
import { ModelFormatError } from '../errors.ts';
import { LIMITS } from '../limits.ts';
import { layerTensorNames } from '../tensor-names.ts';
import type { PackAdds, PackInfo } from './pack-manifest.ts';

// What a pack must hold for a given base, and the config of the base with packs merged in.
// A pack's tensors carry the names of the base tensors they extend:
//   router w_gate.0 weight [U, C] and bias [U]  the router's added hidden units
//   router w_gate.3 weight [A, G + U]           the new experts' logits, over old and new units
//   experts [A, in, out]                         appended to the base's stacked experts
// A pack that adds no expert to an attention (or MLP) MoE has none of its tensors; its added
// router units are zeros there.

/** A pack whose tensors are in memory (a pack is small next to its base: LIMITS.packBytes). */
export interface LoadedPack {
  info: PackInfo;
  /** Where it came from, for messages (a URL or a folder). */
  location: string;
  tensors: ReadonlyMap<string, { info: TensorInfo; bytes: Uint8Array }>;
}

/** What a pack is checked against: the base's config and weights hash. */
export interface PackBase {
  config: ModelConfig;
  /** config.json as written (merged configs start from it). */
  rawConfig: Record<string, unknown>;
  /** Undefined for a model converted before packs existed (it cannot take packs until converted again). */
  weightsSha256: string | undefined;
  location: string;
}

/** What the model loaders take to merge packs. */
export interface PackLoadOptions {
  /** Expert packs merged into the model (loadPack, openPackFolder). */
  packs?: readonly LoadedPack[];
  /** Told the base's config and weights hash once its manifest is read. */
  onBase?: (base: PackBase) => void;
}

/** Where a pack's experts sit in the merged model, per layer. */
export interface PackRange {
  name: string;
  domain: string;
  location: string;
  /** Attention experts [from, to) of every layer. */
  att: [number, number];
  /** MLP experts [from, to) of every layer. */
  mlp: [number, number];
}

/** Every tensor a pack with these additions holds for this base, with its shape. */
export function expectedPackShapes(c: ModelConfig, adds: PackAdds): Map<string, number[]> {
  const { attExperts: A, mlpExperts: M, routerUnits: U } = adds;
  const C = c.nEmbd;
  const G = c.gatingSize;
  const shapes = new Map<string, number[]>();
  for (let l = 0; l < c.nLayer; l++) {
    const n = layerTensorNames(l);
    if (A > 0) {
      if (U > 0) shapes.set(n.attGate0Weight, [U, C]).set(n.attGate0Bias, [U]);
      shapes.set(n.attGate3Weight, [A, G + U]);
      shapes.set(n.queryExperts, [A, C, c.attHidden]).set(n.outputExperts, [A, c.attHidden, C]);
    }
    if (M > 0) {
      if (U > 0) shapes.set(n.mlpGate0Weight, [U, C]).set(n.mlpGate0Bias, [U]);
      shapes.set(n.mlpGate3Weight, [M, G + U]);
      shapes.set(n.upExperts, [M, C, c.ffdHidden]).set(n.downExperts, [M, c.ffdHidden, C]);
    }
  }
  return shapes;
}

const shapeText = (s: readonly number[]) => `[${s.join(', ')}]`;

/**
 * Checks that a pack extends this base: the weights hash it names, and exactly the tensors and
 * shapes its additions imply for the base's config.
 */
export function checkPackAgainstBase(pack: LoadedPack, base: PackBase): void {
  const where = pack.location;
  if (base.weightsSha256 === undefined) {
    throw new ModelFormatError(
      `${base.location} does not record its weights hash, so the pack ${pack.info.name} cannot be checked against it; convert the base again with this molm-web (\`molm convert\`).`,
    );
  }
  if (pack.info.base.weightsSha256 !== base.weightsSha256) {
    throw new ModelFormatError(
      `${where}: the pack ${pack.info.name} extends ${pack.info.base.name || 'another model'} (weights ${pack.info.base.weightsSha256.slice(0, 12)}…), ` +
        `but ${base.location} holds other weights (${base.weightsSha256.slice(0, 12)}…). Use the pack with the model it was trained on (the same conversion: q8 and q4 copies are different bases).`,
    );
  }
  const want = expectedPackShapes(base.config, pack.info.adds);
  for (const [name, shape] of want) {
    const got = pack.tensors.get(name)?.info.shape;
    if (!got)
      throw new ModelFormatError(`${where}: the pack lacks "${name}" ${shapeText(shape)}, which its "adds" imply for this base; convert the pack again.`);
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(
        `${where}: "${name}" is ${shapeText(got)}, but this base and the pack's "adds" imply ${shapeText(shape)}; the pack does not fit this base.`,
      );
    }
  }
  for (const name of pack.tensors.keys()) {
    if (!want.has(name)) throw new ModelFormatError(`${where}: the pack holds "${name}", which its "adds" do not imply for this base; convert the pack again.`);
  }
}

/**
 * The base's config.json with the packs' experts and router units added; the sum is checked
 * against the bounds every config is held to (CONFIG_BOUNDS, MAX_PARAMETERS).
 */
export function mergedRawConfig(
  baseRaw: Record<string, unknown>,
  base: ModelConfig,
  packs: readonly PackInfo[],
): { raw: Record<string, unknown>; config: ModelConfig } {
  if (packs.length > LIMITS.packsPerModel) {
    throw new ModelFormatError(`${packs.length} packs were given; a model takes at most ${LIMITS.packsPerModel}.`);
  }
  const names = new Set<string>();
  for (const p of packs) {
    if (names.has(p.name)) throw new ModelFormatError(`The pack ${p.name} is given twice; give each pack once.`);
    names.add(p.name);
  }
  const sum = (key: keyof PackAdds) => packs.reduce((a, p) => a + p.adds[key], 0);
  const raw = {
    ...baseRaw,
    n_att_experts: base.nAttExperts + sum('attExperts'),
    n_mlp_experts: base.nMlpExperts + sum('mlpExperts'),
    gating_size: base.gatingSize + sum('routerUnits'),
  };
  try {
    return { raw, config: parseConfig(raw) };
  } catch (e) {
    throw new ModelFormatError(`The packs (${packs.map((p) => p.name).join(', ')}) together make a model molm-web does not accept: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** Where each pack's experts land: after the base's, in pack order. */
export function packRanges(base: ModelConfig, packs: readonly LoadedPack[]): PackRange[] {
  let att = base.nAttExperts;
  let mlp = base.nMlpExperts;
  return packs.map((p) => {
    const r: PackRange = {
      name: p.info.name,
      domain: p.info.domain,
      location: p.location,
      att: [att, att + p.info.adds.attExperts],
      mlp: [mlp, mlp + p.info.adds.mlpExperts],
    };
    att += p.info.adds.attExperts;
    mlp += p.info.adds.mlpExperts;
    return r;
  });
}
