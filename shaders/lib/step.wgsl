// The per-step uniform (src/kernels/step.ts). Binding 0 in every kernel that includes it.
struct Step {
  n_tokens: u32, // token rows in this step: a prefill chunk, or 1 when decoding
  pos: u32,      // absolute position of row 0 = tokens already in the KV cache
  _pad0: u32,
  _pad1: u32,
}
@group(0) @binding(0) var<uniform> step: Step;
