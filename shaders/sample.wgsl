// Chooses the next token from one row of logits, on the GPU, so that a decode step reads back a
// single u32 and the next step's embedding can take the id straight from `out`. It implements
// the definition in src/reference/sampler.ts. One workgroup of WG invocations covers the whole
// vocabulary (V = 50295 in MoLM).
//
// Repetition penalty first (src/reference/sampler.ts): a token already in the context (its bit
// set in `seen`) has its logit divided by the penalty when positive, multiplied when not.
// temperature ≤ 0: argmax of the penalised logits, lowest index on ties; nothing else applies.
// Otherwise, with w_i = exp((l_i − max l) / T) (the softmax numerators; 0 where float32 underflows):
//   top-k: keep the tokens whose logit is ≥ the k-th largest logit   (top_k = 0 or ≥ V: all)
//   top-p: of those, keep the tokens whose logit is ≥ τ_p, τ_p the largest value for which the
//          kept mass Σ w (logit ≥ τ_p) is still ≥ top_p · Σ w (top-k set)
//          (top_p ≥ 1: all; top_p ≤ 0: the most likely token)
//   draw:  u = uniformFromSeed(seed, pos + n_tokens), the position the new token will take;
//          goal = u · Σ w (kept); the chosen token is the first kept token, in increasing index
//          order, whose running Σ w exceeds goal.
// Both thresholds are found by bisection over the logits' float32 bit patterns (mapped to u32
// keys in the same order), so each is exact, in at most 32 count (top-k) or mass (top-p)
// workgroup reductions. Ordering by logit is ordering by probability, without the ties that
// rounding w to float32 would add.
// Ties: tokens with equal logits are kept or dropped together, so the kept set can hold more
// than top_k tokens when the k-th logit is shared (as in the reference); among kept tokens the
// draw goes by index order. The GPU can differ from the float64 reference only where goal falls
// within float32 rounding of a boundary between two tokens, or a top-p mass within rounding of
// its threshold.
// Defines: V (vocabulary), WG (a power of two).
#include "lib/step.wgsl"

struct SamplerParams {
  temperature: f32,
  top_k: u32,
  top_p: f32,
  seed: u32,
  repetition_penalty: f32,
}

@group(0) @binding(1) var<storage, read> logits: array<f32>;   // [V] (row 0 of the step's logits)
@group(0) @binding(2) var<uniform> params: SamplerParams;
@group(0) @binding(3) var<storage, read_write> out: array<u32>; // [1]: the chosen token id
// [ceil(V / 32)] bit i: token i is in the context. The prompt's bits are written when a
// generation starts; the sampler adds each token it chooses, so no id ever goes to the CPU.
@group(0) @binding(4) var<storage, read_write> seen: array<u32>;

const CHUNK: u32 = (V + WG - 1u) / WG; // contiguous tokens per invocation in the draw

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;
var<workgroup> chosen: u32;
var<workgroup> top_logit: f32;

// The PCG hash of the reference sampler (src/reference/sampler.ts), in wrapping u32 arithmetic.
fn pcg_hash(x: u32) -> u32 {
  let state = x * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// uniformFromSeed(seed, n): 24 random bits in [0, 1), exact in float32.
fn uniform_from_seed(seed: u32, n: u32) -> f32 {
  return f32(pcg_hash(pcg_hash(seed) + n) >> 8u) / 16777216.0;
}

// The logit the sampler works with: penalised when the token is in the context.
fn logit(i: u32) -> f32 {
  let l = logits[i];
  let p = params.repetition_penalty;
  if (p == 1.0 || (seen[i >> 5u] & (1u << (i & 31u))) == 0u) { return l; }
  return select(l * p, l / p, l > 0.0);
}

// An order-preserving u32 image of a float32: a < b ⇔ key(a) < key(b) for non-NaN values.
// −0 is folded into +0 so that equal logits get equal keys.
fn key(l: f32) -> u32 {
  let b = select(bitcast<u32>(l), 0u, l == 0.0);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Workgroup reductions. Each returns the same value to every invocation and is marked uniform
// (workgroupUniformLoad), so bisection loops may branch on it around barriers. The barrier
// after the load keeps the next reduction's writes away from invocations still loading.
fn sum_u32(v: u32, lid: u32) -> u32 {
  red_u[lid] = v;
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    workgroupBarrier();
    if (lid < s) { red_u[lid] += red_u[lid + s]; }
  }
  let total = workgroupUniformLoad(&red_u[0]);
  workgroupBarrier();
  return total;
}

fn sum_f32(v: f32, lid: u32) -> f32 {
  red_f[lid] = v;
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    workgroupBarrier();
    if (lid < s) { red_f[lid] += red_f[lid + s]; }
  }
  let total = workgroupUniformLoad(&red_f[0]);
  workgroupBarrier();
  return total;
}

// Largest logit and its lowest index: (value, index) pairs, a pair winning over another with a
// strictly larger value or an equal value at a lower index. Index V marks "no token yet" (WGSL
// has no −inf constant). With NaN logits the result is some token, not a defined one.
fn beats(l: f32, i: u32, best: f32, at: u32) -> bool {
  return i < V && (at >= V || l > best || (l == best && i < at));
}

fn argmax(lid: u32) -> u32 {
  var best = 0.0;
  var at = V;
  for (var i = lid; i < V; i += WG) {
    let l = logit(i);
    if (beats(l, i, best, at)) { best = l; at = i; }
  }
  red_f[lid] = best;
  red_u[lid] = at;
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    workgroupBarrier();
    if (lid < s && beats(red_f[lid + s], red_u[lid + s], red_f[lid], red_u[lid])) {
      red_f[lid] = red_f[lid + s];
      red_u[lid] = red_u[lid + s];
    }
  }
  let winner = workgroupUniformLoad(&red_u[0]);
  workgroupBarrier();
  return select(winner, 0u, winner >= V);
}

// exp((l − m) / T), or exactly 0 where that underflows float32 (below e^-87): such a token can
// never be drawn, as in the reference. Clamping the exponent first keeps infinities (which WGSL
// leaves indeterminate) away from exp.
fn weight(l: f32, m: f32, t: f32) -> f32 {
  let a = (l - m) / t;
  return select(exp(max(a, -87.0)), 0.0, a < -87.0);
}

fn count_at_least(tau: u32, lid: u32) -> u32 {
  var n = 0u;
  for (var i = lid; i < V; i += WG) { n += u32(key(logit(i)) >= tau); }
  return sum_u32(n, lid);
}

fn mass_at_least(tau: u32, m: f32, t: f32, lid: u32) -> f32 {
  var s = 0.0;
  for (var i = lid; i < V; i += WG) {
    let l = logit(i);
    if (key(l) >= tau) { s += weight(l, m, t); }
  }
  return sum_f32(s, lid);
}

// Upper midpoint of [lo, hi], hi > lo, without overflowing u32.
fn upper_mid(lo: u32, hi: u32) -> u32 {
  let d = hi - lo;
  return lo + (d >> 1u) + (d & 1u);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  let top = argmax(lid);
  if (!(params.temperature > 0.0)) {
    if (lid == 0u) {
      out[0] = top;
      seen[top >> 5u] |= 1u << (top & 31u);
    }
    return;
  }
  // Through workgroup memory: a read of `seen` (read_write storage) is not uniform for WGSL,
  // and the bisection loops below must branch on values derived from m uniformly.
  if (lid == 0u) { top_logit = logit(top); }
  let m = workgroupUniformLoad(&top_logit);
  let t = params.temperature;
  let key_max = key(m);

  // τ_k: the largest key with at least top_k tokens at or above it, i.e. the k-th largest key.
  var tau = 0u;
  if (params.top_k > 0u && params.top_k < V) {
    var hi = key_max;
    loop {
      if (tau >= hi) { break; }
      let mid = upper_mid(tau, hi);
      if (count_at_least(mid, lid) >= params.top_k) { tau = mid; } else { hi = mid - 1u; }
    }
  }

  // τ_p ≥ τ_k: the largest key whose kept mass still reaches top_p of the top-k mass.
  if (params.top_p < 1.0) {
    let need = params.top_p * mass_at_least(tau, m, t, lid);
    var hi = key_max;
    loop {
      if (tau >= hi) { break; }
      let mid = upper_mid(tau, hi);
      if (mass_at_least(mid, m, t, lid) >= need) { tau = mid; } else { hi = mid - 1u; }
    }
  }

  // The draw. Invocation j owns tokens [j·CHUNK, (j+1)·CHUNK). Every invocation forms the
  // prefix sums of the chunk masses in the same order, so the intervals [P_j, P_j+1) tile
  // [0, total) exactly and exactly one invocation owns the goal; it then walks its chunk.
  let begin = min(lid * CHUNK, V);
  let end = min(begin + CHUNK, V);
  var own = 0.0;
  for (var i = begin; i < end; i++) {
    let l = logit(i);
    if (key(l) >= tau) { own += weight(l, m, t); }
  }
  red_f[lid] = own;
  if (lid == 0u) { chosen = top; } // kept when no invocation owns the goal (a zero or NaN total)
  workgroupBarrier();
  var before = 0.0;
  var total = 0.0;
  for (var j = 0u; j < WG; j++) {
    if (j == lid) { before = total; }
    total += red_f[j];
  }
  let after = before + own; // = P_(lid+1) (or total, for the last invocation), bit for bit
  let goal = uniform_from_seed(params.seed, step.pos + step.n_tokens) * total;
  if (before <= goal && goal < after) {
    var run = before;
    var last = V;
    for (var i = begin; i < end; i++) {
      let l = logit(i);
      if (key(l) >= tau) {
        let w = weight(l, m, t);
        run += w;
        if (w > 0.0) { last = i; }
        if (run > goal) { break; }
      }
    }
    // Rounding can leave the walk just short of goal: the chunk's last kept token with w > 0
    // is then the one (the owner's chunk has one: its mass is > 0).
    if (last < V) { chosen = last; }
  }
  workgroupBarrier();
  if (lid == 0u) {
    out[0] = chosen;
    seen[chosen >> 5u] |= 1u << (chosen & 31u);
  }
}
