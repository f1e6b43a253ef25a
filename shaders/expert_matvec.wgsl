// Mixture-of-experts projections with stacked expert weights W [E, IN, OUT] ("[expert, in, out]":
// a slot's output is x @ W[e]), the K expert ids and gates of each token row read from buffers the
// router wrote (they never go through the CPU).
//   project (COMBINE false): y[r, s, :] = act(x[r, :] @ W[ids[r, s]]), or x[r, s, :] with
//     PER_SLOT_INPUT; act is the tanh GELU (lib/gelu.wgsl) with GELU. One workgroup per (row, slot).
//   combine (COMBINE true): h[r, :] += sum_s gates[r, s] * (x[r, s, :] @ W[ids[r, s]]): the
//     output projection fused with the gate-weighted sum and the residual add. One workgroup per
//     row owns its output columns and loops over the K slots, so no atomics are needed.
// W[e] is [IN, OUT] row-major, so invocations along x take neighbouring output-column pairs (one
// packed word of 16-bit weights) and read neighbouring addresses; invocations along y split IN
// and meet in a workgroup-memory reduction, which gives a single token row enough parallelism.
// With SUBGROUPS, runs of ADJ split lanes of one column pair are adjacent in the invocation
// index and first reduce within their subgroup (butterflies, no barrier); their totals then meet
// in workgroup memory after one barrier.
// Grid: x over tiles of 2 * COLS output columns; y (folded into z beyond 65535) over the
// (row, slot) pairs (project) or rows (combine).
// Defines: IN, OUT, E, K, COLS and SPLIT (powers of two), PER_SLOT_INPUT, GELU, COMBINE, RUN8
// (read runs of 8 inputs: q8 / q4),
// SUBGROUPS (the variant must enable the subgroups extension).
#include "lib/step.wgsl"
#include "lib/gelu.wgsl"

@group(0) @binding(1) var<storage, read> x: array<f32>;      // [n_tokens, IN], or [n_tokens, K, IN] (PER_SLOT_INPUT or COMBINE)
// [E, IN, OUT]
#weights weight 2
@group(0) @binding(3) var<storage, read> ids: array<u32>;    // [n_tokens, K] expert of each slot
#if COMBINE
@group(0) @binding(4) var<storage, read> gates: array<f32>;  // [n_tokens, K] gate of each slot
@group(0) @binding(5) var<storage, read_write> h: array<f32>; // [n_tokens, OUT] residual, added to
#endif
#if !COMBINE
@group(0) @binding(5) var<storage, read_write> y: array<f32>; // [n_tokens, K, OUT]
#endif

// Split lanes adjacent in the invocation index: ADJ of them per column pair with SUBGROUPS, so
// that a subgroup of 32 reads 4 weight rows × 8 column pairs (a 32-byte sector of each row in
// 16-bit storage) at a time, and the smallest WebGPU subgroups (4 invocations) still hold a whole
// run. 1 without SUBGROUPS (column pairs are adjacent, split lanes are COLS apart).
const ADJ: u32 = select(1u, min(SPLIT, 4u), SUBGROUPS);
var<workgroup> partial: array<vec2f, COLS * SPLIT / ADJ>;

// This invocation's share (rows i = cy mod SPLIT) of columns c0, c0 + 1 of x[xrow..] @ W[e]. c0 is
// even; the caller clamps it into range and discards columns past OUT.
fn slot_dot(slot: u32, xrow: u32, c0: u32, cy: u32) -> vec2f {
  // An id past the last expert (a router bug) must not read outside the tensor.
  let e = min(ids[slot], E - 1u);
  let w0 = e * IN * OUT + c0;
  var acc = vec2f(0.0);
  if (RUN8) {
    // Quantised: 8 inputs of a column are one q4 word (two q8 words) under one scale, read once.
    let d1 = min(c0 + 1u, OUT - 1u) - c0;
    for (var i = 8u * cy; i < IN; i += 8u * SPLIT) {
      let a = weight_col8(w0 + i * OUT);
      let b = weight_col8(w0 + i * OUT + d1);
      let xi = xrow + i;
      let x0 = vec4f(x[xi], x[xi + 1u], x[xi + 2u], x[xi + 3u]);
      let x1 = vec4f(x[xi + 4u], x[xi + 5u], x[xi + 6u], x[xi + 7u]);
      acc += vec2f(dot(a[0], x0) + dot(a[1], x1), dot(b[0], x0) + dot(b[1], x1));
    }
  } else if (OUT % 2u == 0u) {
    // Columns c0, c0 + 1 of an even-width row share one packed word.
    for (var i = cy; i < IN; i += SPLIT) {
      acc += x[xrow + i] * weight_at2(w0 + i * OUT);
    }
  } else {
    let d1 = min(c0 + 1u, OUT - 1u) - c0;
    for (var i = cy; i < IN; i += SPLIT) {
      let w = w0 + i * OUT;
      acc += x[xrow + i] * vec2f(weight_at(w), weight_at(w + d1));
    }
  }
  return acc;
}

@compute @workgroup_size(COLS * SPLIT)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  // l.x: the column pair in the tile, l.y: the split lane; lid = ((l.y / ADJ) * COLS + l.x) * ADJ
  // + l.y % ADJ.
  let l = vec2u((lid / ADJ) % COLS, (lid / (ADJ * COLS)) * ADJ + lid % ADJ);
  let unit = wid.z * groups.y + wid.y;
  let c = 2u * (wid.x * COLS + l.x);
  // The last even column index: invocations past OUT read there and store nothing.
  let cr = min(c, (OUT - 1u) & ~1u);

  var acc = vec2f(0.0);
  if (COMBINE) {
    let row = unit;
    if (row >= step.n_tokens) { return; }
    for (var s = 0u; s < K; s++) {
      let slot = row * K + s;
      acc += gate_at(slot) * slot_dot(slot, slot * IN, cr, l.y);
    }
  } else {
    if (unit >= step.n_tokens * K) { return; }
    acc = slot_dot(unit, select(unit / K, unit, PER_SLOT_INPUT) * IN, cr, l.y);
  }

  // SPLIT 1 (the CPU-adapter shape): each invocation owns its columns whole; no reduction and
  // no barrier, which a CPU implementation pays for by switching between all invocations.
  if (SPLIT == 1u) {
    if (c < OUT) {
      write_out(unit, c, acc.x);
      if (c + 1u < OUT) { write_out(unit, c + 1u, acc.y); }
    }
    return;
  }
#if SUBGROUPS
  // A run of ADJ lanes (ADJ <= 4) lies in one subgroup, and its xor partners below ADJ are its
  // own lanes, because subgroup_invocation_id == local_invocation_index % subgroup_size in a 1-D
  // workgroup: every implementation we know keeps that (SwiftShader too), though the spec does
  // not promise it; WebGPU subgroups have 4 to 128 invocations. The control flow here is uniform
  // (the early returns depend on the workgroup only).
  for (var m = 1u; m < ADJ; m = m * 2u) {
    acc += subgroupShuffleXor(acc, m);
  }
  if (SPLIT > ADJ) {
    if (l.y % ADJ == 0u) { partial[(l.y / ADJ) * COLS + l.x] = acc; }
    workgroupBarrier();
    if (l.y == 0u) {
      for (var k = 1u; k < SPLIT / ADJ; k++) { acc += partial[k * COLS + l.x]; }
    }
  }
  let total = acc;
#endif
#if !SUBGROUPS
  let p = l.y * COLS + l.x;
  partial[p] = acc;
  workgroupBarrier();
  for (var stride = SPLIT / 2u; stride > 0u; stride = stride / 2u) {
    if (l.y < stride) {
      partial[p] += partial[p + stride * COLS];
    }
    workgroupBarrier();
  }
  let total = partial[p];
#endif
  if (l.y == 0u && c < OUT) {
    write_out(unit, c, total.x);
    if (c + 1u < OUT) { write_out(unit, c + 1u, total.y); }
  }
}

#if COMBINE
fn gate_at(slot: u32) -> f32 { return gates[slot]; }
fn write_out(row: u32, col: u32, v: f32) { h[row * OUT + col] += v; }
#endif
#if !COMBINE
fn gate_at(slot: u32) -> f32 { return 1.0; }
fn write_out(slot: u32, col: u32, v: f32) {
  if (GELU) {
    y[slot * OUT + col] = gelu_tanh(v);
  } else {
    y[slot * OUT + col] = v;
  }
}
#endif
