// One key of a serial stick-breaking walk (newest key first), shared by the CPU-adapter kernels
// stickbreaking_decode_serial.wgsl and stickbreaking_prefill_serial.wgsl: the logit of query
// row qb against key row kb (a dot product over the head's D dims), log sigmoid and -softplus
// (lib/softplus.wgsl), the weight exp(log sigmoid + carry), carry += -softplus, and the weighted
// value row into acc. The including kernel declares q, keys, values, D and SCALE.
#include "lib/softplus.wgsl"

fn sb_walk_key(qb: u32, kb: u32, carry: ptr<function, f32>, acc: ptr<function, array<f32, D>>) {
  var l = 0.0;
  for (var i = 0u; i < D; i++) { l += q[qb + i] * keys[kb + i]; }
  let sp = sb_split(l * SCALE);
  let w = exp(sp.x + *carry);
  *carry += sp.y;
  for (var i = 0u; i < D; i++) { (*acc)[i] += w * values[kb + i]; }
}
