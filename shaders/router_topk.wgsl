// The MoLM router of one token row: p = softmax(gelu_erf(x·W0ᵀ + b0)·W3ᵀ) over all E experts,
// then the top K by descending probability (ties → lower expert index). Gates are NOT
// renormalised: they are the softmax probabilities themselves (renormalising is a large bug).
// One workgroup per token row. The ids and gates stay on the GPU for the expert kernels; the
// full softmax is written too, for routing traces.
//
// Both matrix-vector products give each output to a team of LANES adjacent invocations that
// stride along the weight row together, so neighbouring invocations read neighbouring weights.
// Defines: C (width), G (gating size), E (experts), K (top-k), WG, LANES (WG / LANES teams).
#include "lib/router_bindings.wgsl"
#include "lib/gelu.wgsl"

const TEAMS: u32 = WG / LANES;

var<workgroup> xs: array<f32, C>;        // the input row, read G times
var<workgroup> hidden: array<f32, G>;    // gelu_erf(x·W0ᵀ + b0)
var<workgroup> partial: array<f32, WG>;  // per-invocation partial dot products of one pass
var<workgroup> logits: array<f32, E>;
var<workgroup> p: array<f32, E>;

// Sums the LANES partials of team t (called by one invocation per team, after a barrier).
fn team_total(t: u32) -> f32 {
  var s = 0.0;
  for (var j = 0u; j < LANES; j++) { s += partial[t * LANES + j]; }
  return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x;
  if (row >= step.n_tokens) { return; }
  let team = lid / LANES;
  let lane = lid % LANES;

  for (var c = lid; c < C; c += WG) { xs[c] = x[row * C + c]; }
  workgroupBarrier();

  // hidden = gelu_erf(x·W0ᵀ + b0), TEAMS outputs per pass.
  for (var g0 = 0u; g0 < G; g0 += TEAMS) {
    let g = g0 + team;
    var acc = 0.0;
    if (g < G) {
      for (var c = lane; c < C; c += LANES) { acc += w0_at(g * C + c) * xs[c]; }
    }
    partial[lid] = acc;
    workgroupBarrier();
    if (lid < TEAMS && g0 + lid < G) {
      hidden[g0 + lid] = gelu_erf(team_total(lid) + b0[g0 + lid]);
    }
    workgroupBarrier();
  }

  // logits = hidden·W3ᵀ
  for (var e0 = 0u; e0 < E; e0 += TEAMS) {
    let e = e0 + team;
    var acc = 0.0;
    if (e < E) {
      for (var g = lane; g < G; g += LANES) { acc += w3_at(e * G + g) * hidden[g]; }
    }
    partial[lid] = acc;
    workgroupBarrier();
    if (lid < TEAMS && e0 + lid < E) {
      logits[e0 + lid] = team_total(lid);
    }
    workgroupBarrier();
  }

  // Softmax, one expert per invocation (E ≤ WG). E is small, so every invocation computes the
  // max and the normaliser itself, in the same order: all agree on them bit for bit, without
  // another reduction.
  if (lid < E) {
    var m = logits[0];
    for (var e = 1u; e < E; e++) { m = max(m, logits[e]); }
    var s = 0.0;
    for (var e = 0u; e < E; e++) { s += exp(logits[e] - m); }
    let pe = exp(logits[lid] - m) / s;
    p[lid] = pe;
    probs[row * E + lid] = pe;
  }
  workgroupBarrier();

  // Top-K by rank: an expert's slot is the number of experts ahead of it. Ranking compares the
  // logits, not the rounded probabilities, so two experts whose float32 probabilities round to
  // the same value still keep the order of their logits; equal logits go to the lower index.
  // The ranks are a permutation of 0..E-1, so each slot < K is written exactly once.
  if (lid < E) {
    let l = logits[lid];
    var rank = 0u;
    for (var e = 0u; e < E; e++) {
      let o = logits[e];
      rank += u32(o > l || (o == l && e < lid));
    }
    if (rank < K) {
      ids[row * K + rank] = lid;
      gates[row * K + rank] = p[lid];
    }
  }
}
