// The CPU-adapter shape of router_topk.wgsl for steps of many token rows (prefill): one
// invocation routes one row by itself, with the same arithmetic in the same order: the hidden
// units gelu_erf(x·W0ᵀ + b0) one at a time, each folded into the E logits at once (so no [G]
// array is kept), then the softmax and the top K by rank (ties → lower expert index; gates are
// the probabilities, not renormalised). No workgroup memory and no barrier: the workgroup kernel
// pays a switch between all its invocations at each of its barriers on a CPU implementation
// (SwiftShader), which made the routers the largest part of a prefill there (docs/performance.md).
// Defines: C (width), G (gating size), E (experts), K (top-k), WG.
#include "lib/router_bindings.wgsl"
#include "lib/gelu.wgsl"

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let row = gid.x;
  if (row >= step.n_tokens) { return; }
  let xb = row * C;

  var logits = array<f32, E>();
  for (var g = 0u; g < G; g++) {
    var acc = 0.0;
    for (var c = 0u; c < C; c++) { acc += w0_at(g * C + c) * x[xb + c]; }
    let hidden = gelu_erf(acc + b0[g]);
    for (var e = 0u; e < E; e++) { logits[e] += w3_at(e * G + g) * hidden; }
  }

  var m = logits[0];
  for (var e = 1u; e < E; e++) { m = max(m, logits[e]); }
  var s = 0.0;
  for (var e = 0u; e < E; e++) { s += exp(logits[e] - m); }
  for (var e = 0u; e < E; e++) {
    let pe = exp(logits[e] - m) / s;
    probs[row * E + e] = pe;
    // Rank by logit, as the workgroup kernel does: the number of experts ahead of e.
    let l = logits[e];
    var rank = 0u;
    for (var j = 0u; j < E; j++) {
      let o = logits[j];
      rank += u32(o > l || (o == l && j < e));
    }
    if (rank < K) {
      ids[row * K + rank] = e;
      gates[row * K + rank] = pe;
    }
  }
}
