// The roofline's yardstick: dst = src, vec4 words, GROUPS workgroups of WG invocations striding
// over the whole buffer (a few large workgroups striding did best on SwiftShader, and it is the
// shape a bandwidth test uses on GPUs). Not part of the model: `molm bench` and the benchmark
// page time it to know what "the memory bandwidth of this adapter" means in the same run.
// Defines: WG, GROUPS.

@group(0) @binding(0) var<storage, read> src: array<vec4u>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4u>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let n = arrayLength(&src);
  for (var i = gid.x; i < n; i += WG * GROUPS) {
    dst[i] = src[i];
  }
}
