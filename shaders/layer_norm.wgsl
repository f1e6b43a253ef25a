// LayerNorm over rows of width C: y = (x - mean) / sqrt(var + EPS) * weight + bias, biased
// variance, computed in two passes over the row so large means do not cancel the variance.
// One workgroup per token row. Defines: C, WG, EPS.
#include "lib/step.wgsl"
#include "lib/reduce.wgsl"

@group(0) @binding(1) var<storage, read> x: array<f32>;        // [n_tokens, C]
@group(0) @binding(2) var<storage, read> weight: array<f32>;   // [C]
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [C]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // [n_tokens, C]

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x;
  if (row >= step.n_tokens) { return; }
  let base = row * C;
  var s = 0.0;
  for (var i = lid; i < C; i += WG) { s += x[base + i]; }
  let mean = workgroup_sum(s, lid) / f32(C);
  var q = 0.0;
  for (var i = lid; i < C; i += WG) {
    let d = x[base + i] - mean;
    q += d * d;
  }
  let inv = inverseSqrt(workgroup_sum(q, lid) / f32(C) + EPS);
  for (var i = lid; i < C; i += WG) {
    y[base + i] = (x[base + i] - mean) * inv * weight[i] + bias[i];
  }
}
