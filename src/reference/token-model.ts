import { ContextLengthError, UsageError } from '../errors.ts';
import { type TokenModel, emptyRoutingRecord } from '../token-model.ts';
import type { ReferenceModel } from './model.ts';
import { applyRepetitionPenalty, sample, uniformFromSeed } from './sampler.ts';

/** The CPU reference as a TokenModel (it recomputes the whole context on truncate). */
export function referenceTokenModel(ref: ReferenceModel, maxContext: number): TokenModel {
  const V = ref.config.vocabSize;
  let ids: number[] = [];
  const c = ref.config;
  // Per context position, per layer: the routing the reference computed while tracing.
  let tracing = false;
  const trace: { att: number[]; attG: number[]; mlp: number[]; mlpG: number[] }[][] = [];
  const run = (f: () => Float64Array): Float64Array => {
    const start = ref.length;
    const out = f();
    if (tracing && ref.lastRouting) {
      for (let t = 0; t < ref.length - start; t++) {
        trace[start + t] = ref.lastRouting.map(({ attention: a, mlp: m }) => ({
          att: Array.from(a.ids.subarray(t * c.kAtt, (t + 1) * c.kAtt)),
          attG: Array.from(a.gates.subarray(t * c.kAtt, (t + 1) * c.kAtt)),
          mlp: Array.from(m.ids.subarray(t * c.kMlp, (t + 1) * c.kMlp)),
          mlpG: Array.from(m.gates.subarray(t * c.kMlp, (t + 1) * c.kMlp)),
        }));
      }
    }
    return out;
  };
  const room = (n: number) => {
    if (ids.length + n > maxContext) {
      throw new ContextLengthError(`${ids.length + n} tokens do not fit the context of ${maxContext} tokens.`);
    }
  };
  return {
    config: ref.config,
    maxContext,
    get contextIds() {
      return ids;
    },
    truncate(length) {
      const keep = ids.slice(0, Math.max(0, length));
      ref.reset();
      ids = [];
      if (keep.length) {
        ref.prefill(keep); // recomputes keys and values only: the recorded routing stays
        ids = keep;
      }
    },
    reset() {
      ref.reset();
      ids = [];
    },
    async prefillLogits(prompt) {
      room(prompt.length);
      const out = Float32Array.from(run(() => ref.prefill([...prompt])));
      ids.push(...prompt);
      return out;
    },
    async prefill(prompt) {
      room(prompt.length);
      run(() => ref.prefill([...prompt]));
      ids.push(...prompt);
    },
    async *generate(prompt, n, s) {
      if (prompt.length === 0) throw new UsageError('The prompt is empty: give at least one token.');
      room(prompt.length + Math.max(0, n - 1));
      if (n <= 0) return;
      const penalty = s.repetitionPenalty ?? 1;
      let logits = run(() => ref.prefill([...prompt]));
      ids.push(...prompt);
      for (let i = 0; i < n; i++) {
        const last = applyRepetitionPenalty(logits.subarray(logits.length - V), ids, penalty);
        const id = sample(last, s, uniformFromSeed(s.seed, ref.length));
        if (i + 1 < n) {
          logits = run(() => ref.decode(id));
          ids.push(id);
        }
        yield id;
      }
    },
    traceRouting(on) {
      tracing = on;
    },
    async readRouting(start, end) {
      const from = Math.max(0, start);
      const T = Math.max(0, Math.min(end, ids.length) - from);
      const L = c.nLayer;
      const r = emptyRoutingRecord(c, T);
      for (let t = 0; t < T; t++) {
        trace[from + t]?.forEach((layer, l) => {
          r.attExperts.set(layer.att, (t * L + l) * c.kAtt);
          r.attGates.set(layer.attG, (t * L + l) * c.kAtt);
          r.mlpExperts.set(layer.mlp, (t * L + l) * c.kMlp);
          r.mlpGates.set(layer.mlpG, (t * L + l) * c.kMlp);
        });
      }
      return r;
    },
    destroy() {},
  };
}
