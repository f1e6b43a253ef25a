// The bindings of a MoLM router (router_topk.wgsl, and router_topk_serial.wgsl for many-row
// steps on CPU adapters): both shapes take the same buffers from src/kernels/router.ts.
#include "lib/step.wgsl"

@group(0) @binding(1) var<storage, read> x: array<f32>;              // [n_tokens, C]
// w0: [G, C] nn.Linear weight
#weights w0 2
@group(0) @binding(3) var<storage, read> b0: array<f32>;             // [G]
// w3: [E, G] nn.Linear weight, no bias
#weights w3 4
@group(0) @binding(5) var<storage, read_write> ids: array<u32>;      // [n_tokens, K] expert ids, slot 0 = most probable
@group(0) @binding(6) var<storage, read_write> gates: array<f32>;    // [n_tokens, K] their probabilities
@group(0) @binding(7) var<storage, read_write> probs: array<f32>;    // [n_tokens, E] the full softmax
