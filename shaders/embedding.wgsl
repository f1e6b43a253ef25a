// Token embedding: h[r, :] = wte[ids[r], :] (no scaling, no positions in MoLM). One workgroup
// per token row. An id ≥ V gives a row of zeros instead of a read past the table: the engine
// rejects such ids before they reach the GPU, this only keeps a bad id from reading other memory.
// Defines: C (width), V (vocabulary), WG.
#include "lib/step.wgsl"

@group(0) @binding(1) var<storage, read> ids: array<u32>;         // [n_tokens] token ids
// wte: [V, C]
#weights wte 2
@group(0) @binding(3) var<storage, read_write> h: array<f32>;     // [n_tokens, C]

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x;
  if (row >= step.n_tokens) { return; }
  let id = ids[row];
  if (id < V) {
    for (var c = lid; c < C; c += WG) { h[row * C + c] = wte_at(id * C + c); }
  } else {
    for (var c = lid; c < C; c += WG) { h[row * C + c] = 0.0; }
  }
}
