import type { ModelConfig } from '../config.ts';
import type { TokenModel } from '../token-model.ts';
import { ModelFormatError, UsageError } from '../errors.ts';

/** How much a corpus used each expert: per layer, per kind, how often chosen and the gate mass. */
export interface ExpertUsage {
  format: 'molm-expert-usage';
  version: 1;
  /** Tokens the routers saw. */
  tokens: number;
  /** Tokens per window (each window from an empty context). */
  window: number;
  nAttExperts: number;
  nMlpExperts: number;
  kAtt: number;
  kMlp: number;
  layers: { attention: KindUsage; mlp: KindUsage }[];
}

export interface KindUsage {
  /** Per expert: tokens whose router chose it. */
  count: number[];
  /** Per expert: the sum of its gates over those tokens. */
  mass: number[];
}

/** What profiling needs of a model: a context to fill and the routing trace. */
export type RoutedModel = Pick<TokenModel, 'config' | 'maxContext' | 'reset' | 'prefillLogits' | 'prefill' | 'traceRouting' | 'readRouting'>;

/**
 * Runs `ids` through the model in windows of `window` tokens with the routing trace on, and
 * counts, per layer, how often each expert was chosen and its total gate mass. Only the body of
 * the model runs where it can (no logits).
 */
export async function profileExperts(
  model: RoutedModel,
  ids: readonly number[],
  o: { window: number; onWindow?: (done: number, total: number) => void },
): Promise<ExpertUsage> {
  if (!model.traceRouting || !model.readRouting) throw new UsageError('This model cannot trace its routing.');
  if (ids.length === 0) throw new UsageError('The text has no tokens.');
  if (!Number.isInteger(o.window) || o.window < 1 || o.window > model.maxContext) {
    throw new UsageError(`--window must be between 1 and the context (${model.maxContext}), got ${o.window}.`);
  }
  const c = model.config;
  const usage = emptyUsage(c, o.window);
  const kinds = [
    { k: c.kAtt, of: (l: number) => usage.layers[l].attention, ids: 'attExperts', gates: 'attGates' },
    { k: c.kMlp, of: (l: number) => usage.layers[l].mlp, ids: 'mlpExperts', gates: 'mlpGates' },
  ] as const;
  model.traceRouting(true);
  try {
    for (let start = 0; start < ids.length; start += o.window) {
      const chunk = ids.slice(start, start + o.window);
      model.reset();
      if (model.prefill) await model.prefill(chunk);
      else await model.prefillLogits(chunk);
      const r = await model.readRouting(0, chunk.length);
      for (const kind of kinds) {
        const experts = r[kind.ids];
        const gates = r[kind.gates];
        for (let t = 0; t < r.tokens; t++) {
          for (let l = 0; l < c.nLayer; l++) {
            const u = kind.of(l);
            for (let j = 0; j < kind.k; j++) {
              const i = (t * c.nLayer + l) * kind.k + j;
              u.count[experts[i]]++;
              u.mass[experts[i]] += gates[i];
            }
          }
        }
      }
      usage.tokens += r.tokens;
      o.onWindow?.(Math.min(start + o.window, ids.length), ids.length);
    }
  } finally {
    model.traceRouting(false);
    model.reset();
  }
  return usage;
}

function emptyUsage(c: ModelConfig, window: number): ExpertUsage {
  const kind = (n: number): KindUsage => ({ count: new Array(n).fill(0), mass: new Array(n).fill(0) });
  return {
    format: 'molm-expert-usage',
    version: 1,
    tokens: 0,
    window,
    nAttExperts: c.nAttExperts,
    nMlpExperts: c.nMlpExperts,
    kAtt: c.kAtt,
    kMlp: c.kMlp,
    layers: Array.from({ length: c.nLayer }, () => ({ attention: kind(c.nAttExperts), mlp: kind(c.nMlpExperts) })),
  };
}

/** A usage.json read back, checked against the model it is applied to. */
export function parseExpertUsage(json: unknown, c: ModelConfig, source = 'usage.json'): ExpertUsage {
  const u = json as ExpertUsage;
  const bad = (what: string) => new ModelFormatError(`${source}: ${what}. Write it with \`molm profile\` on this model.`);
  if (u?.format !== 'molm-expert-usage' || u.version !== 1) throw bad('not a molm-expert-usage file (version 1)');
  if (u.nAttExperts !== c.nAttExperts || u.nMlpExperts !== c.nMlpExperts || !Array.isArray(u.layers) || u.layers.length !== c.nLayer) {
    throw bad(
      `made for ${u.layers?.length} layers × ${u.nAttExperts} + ${u.nMlpExperts} experts, the model has ${c.nLayer} × ${c.nAttExperts} + ${c.nMlpExperts}`,
    );
  }
  for (const [l, layer] of u.layers.entries()) {
    for (const [kind, n] of [
      ['attention', c.nAttExperts],
      ['mlp', c.nMlpExperts],
    ] as const) {
      const k = layer[kind];
      if (!k || k.count?.length !== n || k.mass?.length !== n || ![...k.count, ...k.mass].every((v) => Number.isFinite(v) && v >= 0)) {
        throw bad(`layer ${l} ${kind}: count and mass must be ${n} non-negative numbers each`);
      }
    }
  }
  return u;
}
