// Token selection, defined here once; the GPU sampler kernel implements this same definition.
//
// sample(logits, {temperature, topK, topP}, u), after applyRepetitionPenalty when one is used:
//   0. Repetition penalty r (CTRL, Keskar et al. 2019, as in Hugging Face transformers): the logit
//      l of every token already in the context becomes l / r when l > 0, l · r otherwise.
//   1. temperature ≤ 0: argmax (lowest index among equal maxima). Nothing else applies.
//   2. p_i = softmax(logits / temperature), in float64 with the maximum logit subtracted.
//   3. Top-k: τ_k = the topK-th largest p (duplicates counted); keep every token with p_i ≥ τ_k,
//      so tokens tied at the threshold are all kept. topK = 0 or ≥ vocab keeps all (τ_k = 0).
//   4. Top-p (only when topP < 1): order the kept tokens by descending p (ties by lower index),
//      find the shortest prefix whose cumulative mass ≥ topP · (mass of the kept set), and let
//      τ_p be the p of that prefix's last token; keep the tokens with p_i ≥ τ_p (ties again all
//      kept). topP ≤ 0 keeps the most likely token and its ties.
//   5. Draw: target = u · Σ_kept p_i; walk the kept tokens in INCREASING TOKEN INDEX order adding
//      p_i to a running sum; the result is the first index where the running sum > target
//      (or the last kept index with p > 0, should rounding leave the sum ≤ target everywhere).
//      A token whose p underflowed to 0 can therefore never be drawn.
//
// Walking in index order (rather than probability order) is what lets the GPU do step 5 as a
// plain prefix sum over the vocabulary, with no sort. Steps 3 and 4 need only the thresholds τ,
// which the GPU finds by bisection on the value of p instead of sorting, in float32: its kept
// set may therefore differ from this one only when two probabilities lie within float32
// rounding of each other (or of a threshold), and its draw only when target falls within
// rounding of a boundary between two tokens.
//
// u comes from uniformFromSeed(seed, step): a counter-based hash, so the draw at any step is
// reproducible without carrying generator state, on the CPU and on the GPU alike.

export interface SamplerOptions {
  /** ≤ 0 selects argmax. */
  temperature: number;
  /** Keep the topK most likely tokens (plus ties); 0 = off. */
  topK: number;
  /** Keep the smallest most-likely set holding this share of the mass (plus ties); 1 = off. */
  topP: number;
}

/** The logits with the repetition penalty applied to the tokens in `context` (step 0 above). */
export function applyRepetitionPenalty(logits: ArrayLike<number>, context: Iterable<number>, penalty: number): Float64Array {
  const out = Float64Array.from(logits as ArrayLike<number>);
  if (penalty === 1) return out;
  for (const id of new Set(context)) {
    const l = out[id];
    out[id] = l > 0 ? l / penalty : l * penalty;
  }
  return out;
}

/** Index of the largest value; the lowest index among equals. */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/**
 * PCG-RXS-M-XS 32-bit hash (the "pcg_hash" of Jarzynski & Olano, JCGT 2020), u32 → u32.
 * Math.imul and >>> 0 give exactly the wrapping u32 arithmetic WGSL has.
 */
export function pcgHash(x: number): number {
  const state = (Math.imul(x >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/**
 * The uniform number used for the draw at `step` (the CLI and engine use the position of the
 * token being generated). The top 24 bits of the hash over 2^24: exactly representable in
 * float32, in [0, 1).
 */
export function uniformFromSeed(seed: number, step: number): number {
  const h = pcgHash((pcgHash(seed >>> 0) + step) >>> 0);
  return (h >>> 8) / 16777216;
}

/** Draws one token from logits by the definition at the top of this file; u ∈ [0, 1). */
export function sample(logits: ArrayLike<number>, opts: SamplerOptions, u: number): number {
  const { temperature, topK, topP } = opts;
  if (!(temperature > 0)) return argmax(logits);
  const V = logits.length;
  const p = softmaxWithTemperature(logits, temperature);

  let tau = 0;
  if (topK > 0 && topK < V) {
    const ascending = Float64Array.from(p).sort();
    tau = ascending[V - topK];
  }

  if (topP < 1) {
    const kept: number[] = [];
    let keptMass = 0;
    for (let i = 0; i < V; i++) {
      if (p[i] >= tau) {
        kept.push(i);
        keptMass += p[i];
      }
    }
    kept.sort((a, b) => p[b] - p[a] || a - b);
    const need = topP * keptMass;
    let cumulative = 0;
    let tauP = p[kept[kept.length - 1]]; // rounding may keep the sum just short of `need`: keep all
    for (const i of kept) {
      cumulative += p[i];
      if (cumulative >= need) {
        tauP = p[i];
        break;
      }
    }
    tau = Math.max(tau, tauP);
  }

  let total = 0;
  for (let i = 0; i < V; i++) if (p[i] >= tau) total += p[i];
  const target = u * total;
  let running = 0;
  let lastKept = -1;
  for (let i = 0; i < V; i++) {
    if (p[i] < tau) continue;
    running += p[i];
    if (p[i] > 0) lastKept = i;
    if (running > target) return i;
  }
  return lastKept;
}

function softmaxWithTemperature(logits: ArrayLike<number>, temperature: number): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    p[i] = Math.exp((logits[i] - max) / temperature);
    sum += p[i];
  }
  for (let i = 0; i < p.length; i++) p[i] /= sum;
  return p;
}
