// Workgroup sum of one f32 per invocation. WG (the workgroup size) must be a power of two and
// every invocation of the workgroup must call it (it holds barriers).
var<workgroup> reduce_scratch: array<f32, WG>;

fn workgroup_sum(v: f32, lid: u32) -> f32 {
  reduce_scratch[lid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) {
      reduce_scratch[lid] += reduce_scratch[lid + stride];
    }
    workgroupBarrier();
  }
  let total = reduce_scratch[0];
  workgroupBarrier();
  return total;
}
