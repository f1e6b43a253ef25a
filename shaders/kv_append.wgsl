// Appends this step's K (= V in MoLM) rows to a layer's cache: cache[pos + r, :] = src[r, :]
// for r < n_tokens. One workgroup per token row. Rows that would land past the cache's end
// (arrayLength of the binding) are dropped rather than written over other memory; the
// scheduler never lets pos + n_tokens exceed the context it allocated.
// The cache is f32, or f16 when HALF (two values per u32, element i in half i & 1 of word i >> 1,
// the layout of f16 weights, so attention reads it with the same accessor).
// Defines: W (row width, even when HALF), HALF (bool), WG.
#include "lib/step.wgsl"

@group(0) @binding(1) var<storage, read> src: array<f32>;          // [n_tokens, W]
@group(0) @binding(2) var<storage, read_write> cache: array<u32>;  // [max_context, W] f32 bits, or [max_context, W / 2] f16 pairs

const WORDS: u32 = select(W, W / 2u, HALF); // u32 words per cache row

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x;
  if (row >= step.n_tokens) { return; }
  let dst = step.pos + row;
  if (dst >= arrayLength(&cache) / WORDS) { return; }
  for (var i = lid; i < WORDS; i += WG) {
    if (HALF) {
      cache[dst * WORDS + i] = pack2x16float(vec2f(src[row * W + 2u * i], src[row * W + 2u * i + 1u]));
    } else {
      cache[dst * WORDS + i] = bitcast<u32>(src[row * W + i]);
    }
  }
}
