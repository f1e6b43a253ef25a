// The end of a grouped prefill combine (expert_matmul.wgsl with GATED): each token row adds its
// K gate-weighted slot outputs to the residual stream, h[r, :] += Σ_k y[r, k, :], slots summed
// first and in order, as the decode combine (expert_matvec.wgsl) does. One invocation per
// element of h; the grouped matmul could not add into h itself without float atomics.
// Grid: x (folded into y beyond 65535) over blocks of WG elements of the n_tokens × OUT outputs.
// Defines: OUT, K, WG.
#include "lib/step.wgsl"

@group(0) @binding(1) var<storage, read> y: array<f32>;        // [n_tokens, K, OUT]
@group(0) @binding(2) var<storage, read_write> h: array<f32>;  // [n_tokens, OUT]

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
  @builtin(local_invocation_index) l: u32,
) {
  let i = (wid.y * groups.x + wid.x) * WG + l;
  if (i >= step.n_tokens * OUT) { return; }
  let r = i / OUT;
  let c = i - r * OUT;
  var acc = 0.0;
  for (var k = 0u; k < K; k++) {
    acc += y[(r * K + k) * OUT + c];
  }
  h[i] += acc;
}
