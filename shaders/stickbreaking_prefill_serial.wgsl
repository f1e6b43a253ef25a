// The CPU-adapter shape of stickbreaking_prefill.wgsl: one invocation per (row, slot, head) of
// the chunk walks its own keys, from the row's position back to key 0, by itself: the logit (a
// dot product over the head's D dims), log sigmoid and -softplus (lib/softplus.wgsl), the weight
// exp(log sigmoid + carry), carry += -softplus, and the weighted value row into its own D
// outputs, as stickbreaking_decode_serial.wgsl does for one segment. Keys after the row never
// enter the walk, which is the causal mask. No workgroup memory and no barrier: on a CPU
// implementation (SwiftShader) each barrier switches between every invocation of the workgroup,
// which made the tiled kernel the largest part of a prefill there (docs/performance.md).
// Defines: NSLOT, H, D, WG, SCALE = 1 / sqrt(D) (f32).
#include "lib/step.wgsl"
#include "lib/stickbreaking_walk.wgsl"

@group(0) @binding(1) var<storage, read> q: array<f32>;         // [n_tokens, NSLOT, H * D]
@group(0) @binding(2) var<storage, read> keys: array<f32>;      // [max_context, H * D]
@group(0) @binding(3) var<storage, read> values: array<f32>;    // [max_context, H * D] (may be keys' buffer)
@group(0) @binding(4) var<storage, read_write> o: array<f32>;   // [n_tokens, NSLOT, H * D]

const W: u32 = H * D;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.x; // (row * NSLOT + slot) * H + h
  if (idx >= step.n_tokens * NSLOT * H) { return; }
  let h = idx % H;
  let rs = idx / H; // row * NSLOT + slot
  let row = rs / NSLOT;

  let qb = rs * W + h * D;
  var acc = array<f32, D>();
  var carry = 0.0;
  for (var j = step.pos + row + 1u; j > 0u; j--) {
    sb_walk_key(qb, (j - 1u) * W + h * D, &carry, &acc);
  }
  for (var i = 0u; i < D; i++) { o[qb + i] = acc[i]; }
}
