// The CPU-adapter shape of stickbreaking_decode.wgsl: the same split of the context into P
// segments and the same output (partials for stickbreaking_merge.wgsl), but one invocation per
// (segment, slot, head) walks its segment's keys newest -> oldest by itself: the logit (a dot
// product over the head's D dims), then log sigmoid and -softplus (lib/softplus.wgsl), the
// weight exp(log sigmoid + carry), carry += -softplus, and the weighted value row into its own
// D outputs. No workgroup memory and no barrier: on a CPU implementation (SwiftShader) a
// barrier costs a switch between every invocation of the workgroup, which is what made the
// workgroup-parallel kernel the slowest of a decode step there (docs/performance.md).
// Defines: NSLOT, H, D, P, WG, SCALE = 1 / sqrt(D) (f32).
#include "lib/step.wgsl"
#include "lib/stickbreaking_walk.wgsl"

@group(0) @binding(1) var<storage, read> q: array<f32>;               // [1, NSLOT, H * D]
@group(0) @binding(2) var<storage, read> keys: array<f32>;            // [max_context, H * D]
@group(0) @binding(3) var<storage, read> values: array<f32>;          // [max_context, H * D] (may be keys' buffer)
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;  // O: [P, NSLOT, H, D], then S: [P, NSLOT, H]

const W: u32 = H * D;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.x; // (seg * NSLOT + slot) * H + h
  if (idx >= P * NSLOT * H) { return; }
  let h = idx % H;
  let slot = (idx / H) % NSLOT;
  let seg = idx / (H * NSLOT);
  let len = step.pos + 1u;
  let seg_len = (len + P - 1u) / P;
  let start = seg * seg_len;
  if (start >= len) { return; }
  let end = min(start + seg_len, len);

  let qb = slot * W + h * D;
  var acc = array<f32, D>();
  var carry = 0.0;
  for (var j = end; j > start; j--) {
    sb_walk_key(qb, (j - 1u) * W + h * D, &carry, &acc);
  }
  let obase = (seg * NSLOT + slot) * W + h * D;
  for (var i = 0u; i < D; i++) { partials[obase + i] = acc[i]; }
  partials[P * NSLOT * W + (seg * NSLOT + slot) * H + h] = carry;
}
