// Stick-breaking attention of a prefill chunk: rows r < n_tokens at absolute positions
// pos + r, each over keys 0 .. pos + r (the row's own key included; keys of earlier chunks are
// already in the cache). Keys after a row are masked: they neither take weight nor break its
// stick (docs/architecture.md, "Stick-breaking attention").
// One workgroup per (tile of BQ rows, slot, head). It walks key blocks of BK keys, aligned to
// multiples of BK, from the block holding its last row's key back to key 0, carrying per row the
// sum of -softplus over the keys already walked. Per block:
//   1. logits S[BQ][BK] = q . K: D does not fit in workgroup memory, so q and K go through it in
//      chunks of DC dims, each invocation accumulating KPT logits of one row in registers;
//   2. each logit is split into log sigmoid and -softplus (lib/softplus.wgsl);
//   3. one invocation per row walks the block newest -> oldest: the carry plus the reverse
//      cumulative sum of -softplus gives each key's exponent, and masked keys get weight 0;
//   4. O[BQ][D] += weights . V: invocations own output dims (LANES across the dims, DPT each) and
//      RPT = BQ / RG rows (RG row groups), so each V element read serves RPT rows.
// The chunk tiles and the block's weights share one workgroup array (it stays under the default
// 16 KiB); one barrier at the end of each block keeps them apart.
// Grid: (ceil(n_tokens / BQ), NSLOT, H).
// Defines: NSLOT, H, D, BQ, BK, WG (WG divides BQ * BK, and KPT = BQ * BK / WG divides BK),
// DC <= D, RG (divides BQ and WG), LANES = WG / RG, DPT = ceil(D / LANES), TILE (workgroup
// floats: max(BQ * DC + DC * (BK + 1), 2 * BQ * BK)), SCALE = 1 / sqrt(D) (f32).
#include "lib/step.wgsl"
#include "lib/softplus.wgsl"

@group(0) @binding(1) var<storage, read> q: array<f32>;         // [n_tokens, NSLOT, H * D]
@group(0) @binding(2) var<storage, read> keys: array<f32>;      // [max_context, H * D]
@group(0) @binding(3) var<storage, read> values: array<f32>;    // [max_context, H * D] (may be keys' buffer)
@group(0) @binding(4) var<storage, read_write> o: array<f32>;   // [n_tokens, NSLOT, H * D]

const W: u32 = H * D;
const KPT: u32 = BQ * BK / WG; // logits per invocation, all in one row
const TPR: u32 = BK / KPT;     // invocations per row; logit m of one is key kc + m * TPR
const KS: u32 = BK + 1u;       // row stride of the K chunk [DC][KS]: padded so reads of
                               // neighbouring keys and stores of neighbouring dims miss no bank
const K_OFF: u32 = BQ * DC;    // during step 1: q chunk [BQ][DC] at 0, K chunk [DC][KS] at K_OFF
const NSP_OFF: u32 = BQ * BK;  // steps 2-4: log sigmoid, then weights, [BQ][BK] at 0; -softplus at NSP_OFF
const RPT: u32 = BQ / RG;

var<workgroup> tile: array<f32, TILE>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r0 = wid.x * BQ;
  if (r0 >= step.n_tokens) { return; }
  let s = wid.y;
  let h = wid.z;
  let rows = min(BQ, step.n_tokens - r0);
  let last = step.pos + r0 + rows - 1u; // position of the tile's last row: its newest key

  let lr = lid / TPR; // logits: row and first key of this invocation
  let kc = lid % TPR;
  let rg = lid / LANES; // output: rows rg + i * RG, dims lane + j * LANES
  let lane = lid % LANES;
  var acc = array<f32, RPT * DPT>(); // [RPT][DPT]
  var carry = 0.0;                 // of row lid, in invocations lid < BQ

  var b = last / BK + 1u;
  loop {
    if (b == 0u) { break; }
    b--;
    let k0 = b * BK;

    // Explicitly zeroed: Dawn + SwiftShader keep an uninitialised loop-body var's value from the
    // previous iteration (WGSL says it starts at zero each time).
    var lg = array<f32, KPT>();
    for (var c0 = 0u; c0 < D; c0 += DC) {
      for (var i = lid; i < BQ * DC; i += WG) {
        let r = i / DC;
        let c = i % DC;
        var v = 0.0;
        if (r < rows && c0 + c < D) { v = q[((r0 + r) * NSLOT + s) * W + h * D + c0 + c]; }
        tile[i] = v;
      }
      for (var i = lid; i < BK * DC; i += WG) {
        let j = i / DC;
        let c = i % DC;
        var v = 0.0;
        if (k0 + j <= last && c0 + c < D) { v = keys[(k0 + j) * W + h * D + c0 + c]; }
        tile[K_OFF + c * KS + j] = v;
      }
      workgroupBarrier();
      for (var c = 0u; c < DC; c++) {
        let qv = tile[lr * DC + c];
        for (var m = 0u; m < KPT; m++) {
          lg[m] += qv * tile[K_OFF + c * KS + kc + m * TPR];
        }
      }
      workgroupBarrier();
    }

    for (var m = 0u; m < KPT; m++) {
      let i = lr * BK + kc + m * TPR;
      let sp = sb_split(lg[m] * SCALE);
      tile[i] = sp.x;
      tile[NSP_OFF + i] = sp.y;
    }
    workgroupBarrier();

    if (lid < BQ) {
      let p = step.pos + r0 + lid;
      let live = lid < rows;
      for (var i = BK; i > 0u; i--) {
        let idx = lid * BK + i - 1u;
        var w = 0.0;
        if (live && k0 + i - 1u <= p) {
          w = exp(tile[idx] + carry);
          carry += tile[NSP_OFF + idx];
        }
        tile[idx] = w;
      }
    }
    workgroupBarrier();

    let nk = min(BK, last + 1u - k0);
    for (var i = 0u; i < nk; i++) {
      let vbase = (k0 + i) * W + h * D;
      for (var j = 0u; j < DPT; j++) {
        let dim = lane + j * LANES;
        if (dim < D) {
          let v = values[vbase + dim];
          for (var t = 0u; t < RPT; t++) {
            acc[t * DPT + j] += tile[(rg + t * RG) * BK + i] * v;
          }
        }
      }
    }
    workgroupBarrier(); // the next block's chunks overwrite the weights
  }

  for (var t = 0u; t < RPT; t++) {
    let r = rg + t * RG;
    if (r < rows) {
      let obase = ((r0 + r) * NSLOT + s) * W + h * D;
      for (var j = 0u; j < DPT; j++) {
        let dim = lane + j * LANES;
        if (dim < D) { o[obase + dim] = acc[t * DPT + j]; }
      }
    }
  }
}
