// nn.Linear over token rows: y[r, j] = sum_i x[r, i] * weight[j, i] + bias[j], weight [OUT, IN]
// row-major (torch layout). At decode this is pure weight streaming (lm_head is the largest
// matrix of the model), so every weight is read once per step, by neighbouring invocations at
// neighbouring addresses: a workgroup owns RPW output rows, LANES invocations share one output
// row and stride along it, and their partial sums meet in workgroup memory (a tree), or, with
// SUBGROUPS, within subgroups first (butterflies, no barrier) and then in workgroup memory with
// one barrier. When a step carries several token rows, each weight read serves up to 4 of them
// (vec4 accumulators, one component per token row).
// Grid: x (folded into z beyond 65535) over blocks of RPW output rows; y over chunks of CHUNK
// token rows (1 with LAST_ROW_ONLY).
// Defines: IN, OUT, LANES and RPW (powers of two), CHUNK, HAS_BIAS, LAST_ROW_ONLY, RUN8 (read
// runs of 8 weights: q8 / q4, IN a multiple of 8), SUBGROUPS
// (the variant must enable the subgroups extension).
#include "lib/step.wgsl"

@group(0) @binding(1) var<storage, read> x: array<f32>;        // [n_tokens, IN]
// [OUT, IN]
#weights weight 2
#if HAS_BIAS
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [OUT]
fn bias_at(j: u32) -> f32 { return bias[j]; }
#endif
#if !HAS_BIAS
fn bias_at(j: u32) -> f32 { return 0.0; }
#endif
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // [n_tokens, OUT]; [1, OUT] with LAST_ROW_ONLY

const WG: u32 = LANES * RPW;
#if !SUBGROUPS
var<workgroup> partial: array<vec4f, WG>;
#endif
#if SUBGROUPS
// WebGPU subgroups have 4 to 128 invocations (a power of two): at most LANES / 4 partials per
// row leave their subgroups. Two buffers, alternated per call (see lanes_sum).
const MIN_SUBGROUP: u32 = 4u;
var<workgroup> partial: array<vec4f, max(2u * WG / MIN_SUBGROUP, 1u)>;
#endif

// This invocation's share of one output row's dot product with one token row.
fn dot1(wrow: u32, xrow: u32, lane: u32) -> f32 {
  var acc = 0.0;
  if (RUN8) {
    // Quantised rows: each packed word and scale read once for its 8 (q4) or 4 (q8) values.
    for (var i = 8u * lane; i < IN; i += 8u * LANES) {
      let w = weight_run8(wrow + i);
      let xi = xrow + i;
      acc += dot(w[0], vec4f(x[xi], x[xi + 1u], x[xi + 2u], x[xi + 3u]))
        + dot(w[1], vec4f(x[xi + 4u], x[xi + 5u], x[xi + 6u], x[xi + 7u]));
    }
  } else if (IN % 2u == 0u) {
    // Rows start on a packed-word boundary: read 16-bit weights a word (two values) at a time.
    for (var i = 2u * lane; i < IN; i += 2u * LANES) {
      acc += dot(weight_at2(wrow + i), vec2f(x[xrow + i], x[xrow + i + 1u]));
    }
  } else {
    for (var i = lane; i < IN; i += LANES) {
      acc += weight_at(wrow + i) * x[xrow + i];
    }
  }
  return acc;
}

// The same for four token rows at once (offsets xrows), sharing each weight read.
fn dot4(wrow: u32, xrows: vec4u, lane: u32) -> vec4f {
  var acc = vec4f(0.0);
  if (RUN8) {
    for (var i = 8u * lane; i < IN; i += 8u * LANES) {
      let w = weight_run8(wrow + i);
      for (var k = 0u; k < 8u; k++) {
        let ik = i + k;
        acc += w[k / 4u][k % 4u] * vec4f(x[xrows.x + ik], x[xrows.y + ik], x[xrows.z + ik], x[xrows.w + ik]);
      }
    }
  } else if (IN % 2u == 0u) {
    for (var i = 2u * lane; i < IN; i += 2u * LANES) {
      let w = weight_at2(wrow + i);
      let x0 = vec4f(x[xrows.x + i], x[xrows.y + i], x[xrows.z + i], x[xrows.w + i]);
      let i1 = i + 1u;
      let x1 = vec4f(x[xrows.x + i1], x[xrows.y + i1], x[xrows.z + i1], x[xrows.w + i1]);
      acc += w.x * x0 + w.y * x1;
    }
  } else {
    for (var i = lane; i < IN; i += LANES) {
      let xi = vec4f(x[xrows.x + i], x[xrows.y + i], x[xrows.z + i], x[xrows.w + i]);
      acc += weight_at(wrow + i) * xi;
    }
  }
  return acc;
}

#if SUBGROUPS
// Sums `v` over the LANES invocations of each output row; the row's lane 0 gets the total.
// Every invocation must call it, in uniform control flow (subgroup operations, a barrier);
// `call` numbers the calls (0, 1, 2, ...).
//
// Relies on subgroup_invocation_id == local_invocation_index % sg_size in a 1-D workgroup,
// which every implementation we know keeps (SwiftShader too; the spec does not promise it): a
// row's LANES lanes are then whole subgroups (sg_size < LANES) or an aligned run of lanes inside
// one, so the xor partners of a lane below min(LANES, sg_size) are lanes of the same row.
fn lanes_sum(v: vec4f, lid: u32, lane: u32, sg_size: u32, call: u32) -> vec4f {
  var s = v;
  let n = min(LANES, sg_size);
  for (var m = 1u; m < n; m = m * 2u) {
    s += subgroupShuffleXor(s, m);
  }
  if (LANES <= MIN_SUBGROUP || sg_size >= LANES) { return s; }
  // The row spans LANES / sg_size subgroups: each one's first lane leaves its total, and the
  // row's lane 0 adds them up after one barrier. No second barrier guards those slots: calls
  // alternate between two buffers, and a lane writes the same buffer again only after the next
  // call's barrier, which lane 0 reaches when it is done reading.
  let slot = (call & 1u) * (WG / MIN_SUBGROUP) + (lid / LANES) * (LANES / MIN_SUBGROUP);
  if (lane % n == 0u) { partial[slot + lane / n] = s; }
  workgroupBarrier();
  if (lane == 0u) {
    for (var k = 1u; k < LANES / n; k++) { s += partial[slot + k]; }
  }
  return s;
}
#endif

#if !SUBGROUPS
// Sums `v` over the LANES invocations of each output row; the row's lane 0 gets the total.
// Every invocation must call it (barriers).
fn lanes_sum(v: vec4f, lid: u32, lane: u32, sg_size: u32, call: u32) -> vec4f {
  // One lane per row (the CPU-adapter shape): nothing to sum, and no barrier, which a CPU
  // implementation pays for by switching between every invocation of the workgroup.
  if (LANES == 1u) { return v; }
  partial[lid] = v;
  workgroupBarrier();
  for (var stride = LANES / 2u; stride > 0u; stride = stride / 2u) {
    if (lane < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  // Only lane 0 reads, and only its own slot, which no other invocation writes again before
  // the next call's first barrier.
  return partial[lid];
}
#endif

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
  @builtin(local_invocation_index) lid: u32,
#if SUBGROUPS
  @builtin(subgroup_size) sg_size: u32,
#endif
) {
#if !SUBGROUPS
  let sg_size = 1u;
#endif
  var calls = 0u;
  let lane = lid % LANES;
  let j = (wid.z * groups.x + wid.x) * RPW + lid / LANES;
  // Invocations past the last output row repeat it without storing: all must reach the barriers.
  let wrow = min(j, OUT - 1u) * IN;
  let store = j < OUT && lane == 0u;
  let b = select(0.0, bias_at(min(j, OUT - 1u)), store);

  // Token rows [first, first + count) of x, written to y from row out_first.
  var first: u32;
  var count: u32;
  var out_first: u32;
  if (LAST_ROW_ONLY) {
    if (step.n_tokens == 0u) { return; }
    first = step.n_tokens - 1u;
    count = 1u;
    out_first = 0u;
  } else {
    first = wid.y * CHUNK;
    if (first >= step.n_tokens) { return; }
    count = min(CHUNK, step.n_tokens - first);
    out_first = first;
  }

  var t = 0u;
  // Groups of four rows; a final group of two or three repeats its last row in the spare lanes.
  while (count - t >= 2u) {
    let n = min(4u, count - t);
    let r = first + t;
    let last = r + n - 1u;
    let xrows = vec4u(r, r + 1u, min(r + 2u, last), min(r + 3u, last)) * IN;
    let s = lanes_sum(dot4(wrow, xrows, lane), lid, lane, sg_size, calls);
    calls++;
    if (store) {
      let o = (out_first + t) * OUT + j;
      y[o] = s.x + b;
      y[o + OUT] = s.y + b;
      if (n > 2u) { y[o + 2u * OUT] = s.z + b; }
      if (n > 3u) { y[o + 3u * OUT] = s.w + b; }
    }
    t += n;
  }
  if (t < count) {
    // One row left (always the case when decoding).
    let s = lanes_sum(vec4f(dot1(wrow, (first + t) * IN, lane), 0.0, 0.0, 0.0), lid, lane, sg_size, calls);
    if (store) {
      y[(out_first + t) * OUT + j] = s.x + b;
    }
  }
}
