// Combines the segments of stickbreaking_decode.wgsl into the attention output of the decoded
// token. Segment X + 1 is newer than X, and two adjacent segments merge as
// O = O_newer + exp(S_newer) * O_older, S = S_older + S_newer; walking from the newest segment
// down, each older one enters scaled by the product of exp(S) of everything newer.
// One invocation per output element (slot, head, dim); only segments holding keys are read
// (the same ceil(len / P) split as the decode kernel).
// Defines: NSLOT, H, D, P, WG.
#include "lib/step.wgsl"

@group(0) @binding(1) var<storage, read> partials: array<f32>;  // O: [P, NSLOT, H, D], then S: [P, NSLOT, H]
@group(0) @binding(2) var<storage, read_write> o: array<f32>;   // [1, NSLOT, H * D]

const N: u32 = NSLOT * H * D;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x; // (slot * H + head) * D + dim: the same index in o and in one segment's O
  if (e >= N) { return; }
  let len = step.pos + 1u;
  let seg_len = (len + P - 1u) / P;
  let used = (len + seg_len - 1u) / seg_len;
  let sidx = e / D;
  var acc = 0.0;
  var scale = 1.0;
  for (var x = used; x > 0u; x--) {
    acc += scale * partials[(x - 1u) * N + e];
    scale *= exp(partials[P * N + (x - 1u) * NSLOT * H + sidx]);
  }
  o[e] = acc;
}
