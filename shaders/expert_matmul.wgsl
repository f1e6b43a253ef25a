// Grouped expert matmul of a prefill chunk: the slots that chose the same expert (grouped by
// expert_sort.wgsl) go through that expert's stacked weights W [E, IN, OUT] together, TM at a
// time, so each weight is read (and, for q8 / q4, unpacked) once per tile instead of once per
// slot. For slot s = row·K + k of expert e:
//   y[s, :] = act(x[src(s), :] @ W[e])          GATED false: src(s) = row, or s with PER_SLOT_INPUT;
//                                               act is the tanh GELU with GELU
//   y[s, :] = gates[s] · (x[s, :] @ W[e])      GATED true (output and down projections; their
//                                               sum over slots and the residual add follow in
//                                               expert_slot_sum.wgsl, as floats have no atomics)
// One workgroup per (tile of 2·COLS output columns, tile of up to TM slots of one expert). Each
// invocation owns one column pair (one packed word of 16-bit weights, so neighbouring
// invocations read neighbouring addresses) for all TM slots of its tile, in registers: no
// workgroup memory and no barrier in the loop, which suits CPU adapters as well as GPUs.
// Grid: x over column tiles; y (folded into z beyond 65535) over an upper bound of the tiles,
// which only the GPU knows exactly; workgroups past the last tile return at once. The step's row
// count is not read: the sort's tiles hold only this step's slots.
// Defines: IN, OUT, E, K, TM (4, 8 or 16), COLS, RUN8 (read runs of 8 inputs: q8 / q4),
// OFFSETS_AT, ORDER_AT, TILES_AT (the sort's layout), PER_SLOT_INPUT, GELU, GATED.
#include "lib/gelu.wgsl"

@group(0) @binding(1) var<storage, read> x: array<f32>;        // [n_tokens, IN], or [n_tokens, K, IN] (PER_SLOT_INPUT)
// [E, IN, OUT]
#weights weight 2
@group(0) @binding(3) var<storage, read> groups: array<u32>;   // expert_sort.wgsl's output
#if GATED
@group(0) @binding(4) var<storage, read> gates: array<f32>;    // [n_tokens, K]
fn gate_of(s: u32) -> f32 { return gates[s]; }
#endif
#if !GATED
fn gate_of(s: u32) -> f32 { return 1.0; }
#endif
@group(0) @binding(5) var<storage, read_write> y: array<f32>;  // [n_tokens, K, OUT]

var<workgroup> tile_count: u32;

// The tile's input rows (x offsets of slots 4g .. 4g + 3 in src_g) and accumulators:
// acc_g.x / acc_g.y hold columns c, c + 1 of those slots, one vector component per slot.
// Vectors, not an indexed array: an array indexed in a loop may live in memory rather than
// registers (it does on SwiftShader), and that costs more than the weight reads grouping saves.
var<private> src0: vec4u;
var<private> src1: vec4u;
var<private> src2: vec4u;
var<private> src3: vec4u;
var<private> tile_slots: u32;
var<private> acc0x: vec4f;
var<private> acc0y: vec4f;
var<private> acc1x: vec4f;
var<private> acc1y: vec4f;
var<private> acc2x: vec4f;
var<private> acc2y: vec4f;
var<private> acc3x: vec4f;
var<private> acc3y: vec4f;

// Adds input i's contribution, weights w of columns c, c + 1, to every slot of the tile. Row
// groups past the tile's last slot are skipped (the same branch for the whole workgroup).
fn accumulate(i: u32, w: vec2f) {
  let x0 = vec4f(x[src0.x + i], x[src0.y + i], x[src0.z + i], x[src0.w + i]);
  acc0x += x0 * w.x;
  acc0y += x0 * w.y;
  if (TM > 4u && tile_slots > 4u) {
    let x1 = vec4f(x[src1.x + i], x[src1.y + i], x[src1.z + i], x[src1.w + i]);
    acc1x += x1 * w.x;
    acc1y += x1 * w.y;
  }
  if (TM > 8u && tile_slots > 8u) {
    let x2 = vec4f(x[src2.x + i], x[src2.y + i], x[src2.z + i], x[src2.w + i]);
    let x3 = vec4f(x[src3.x + i], x[src3.y + i], x[src3.z + i], x[src3.w + i]);
    acc2x += x2 * w.x;
    acc2y += x2 * w.y;
    acc3x += x3 * w.x;
    acc3y += x3 * w.y;
  }
}

@compute @workgroup_size(COLS)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups_n: vec3u,
  @builtin(local_invocation_index) l: u32,
) {
  if (l == 0u) { tile_count = groups[0]; }
  // Uniform across the workgroup, so a GPU retires the whole workgroup at once.
  if (wid.z * groups_n.y + wid.y >= workgroupUniformLoad(&tile_count)) { return; }
  let t = wid.z * groups_n.y + wid.y;
  let e = min(groups[TILES_AT + 2u * t], E - 1u);
  let first = groups[TILES_AT + 2u * t + 1u];
  let count = min(TM, groups[OFFSETS_AT + e + 1u] - first);

  // Slots of the tile, four to a vector; spare lanes repeat the last slot.
  var slots: array<vec4u, 4>;
  for (var g = 0u; g < TM / 4u; g++) {
    for (var j = 0u; j < 4u; j++) {
      slots[g][j] = groups[ORDER_AT + first + min(4u * g + j, count - 1u)];
    }
  }
  src0 = select(slots[0] / K, slots[0], PER_SLOT_INPUT) * IN;
  src1 = select(slots[1] / K, slots[1], PER_SLOT_INPUT) * IN;
  src2 = select(slots[2] / K, slots[2], PER_SLOT_INPUT) * IN;
  src3 = select(slots[3] / K, slots[3], PER_SLOT_INPUT) * IN;
  tile_slots = count;

  let c = 2u * (wid.x * COLS + l);
  // The last even column: invocations past OUT read there and store nothing.
  let cr = min(c, (OUT - 1u) & ~1u);
  let w0 = e * IN * OUT + cr;
  // For an odd OUT the last pair's second column is the first one again (never stored).
  let d1 = min(cr + 1u, OUT - 1u) - cr;
  if (RUN8) {
    // Quantised: 8 inputs of a column are one q4 word (two q8 words) under one scale, read once.
    for (var i = 0u; i < IN; i += 8u) {
      let a = weight_col8(w0 + i * OUT);
      let b = weight_col8(w0 + i * OUT + d1);
      for (var k = 0u; k < 8u; k++) {
        accumulate(i + k, vec2f(a[k / 4u][k % 4u], b[k / 4u][k % 4u]));
      }
    }
  } else {
    for (var i = 0u; i < IN; i++) {
      if (OUT % 2u == 0u) {
        accumulate(i, weight_at2(w0 + i * OUT));
      } else {
        accumulate(i, vec2f(weight_at(w0 + i * OUT), weight_at(w0 + i * OUT + d1)));
      }
    }
  }

  if (c >= OUT) { return; }
  let accx = array<vec4f, 4>(acc0x, acc1x, acc2x, acc3x);
  let accy = array<vec4f, 4>(acc0y, acc1y, acc2y, acc3y);
  for (var m = 0u; m < count; m++) {
    let s = slots[m / 4u][m % 4u];
    var v = vec2f(accx[m / 4u][m % 4u], accy[m / 4u][m % 4u]) * gate_of(s);
    if (GELU) { v = vec2f(gelu_tanh(v.x), gelu_tanh(v.y)); }
    y[s * OUT + c] = v.x;
    if (c + 1u < OUT) { y[s * OUT + c + 1u] = v.y; }
  }
}
