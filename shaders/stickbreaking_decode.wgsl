// Stick-breaking attention of one decoded token over keys 0 .. step.pos (the token itself
// included), split over the context flash-decoding style; stickbreaking_merge.wgsl combines the
// segments. The context is cut into P contiguous segments of ceil(len / P) keys, computed here
// from the current length so that nothing is planned per token; trailing segments may be empty
// and are skipped (the merge knows how many are in use).
// One workgroup per (segment, head) serves all NSLOT query slots in one pass over its keys: in
// MoLM the slots share K/V, so each key row is read once for all of them. Within the segment the
// stick restarts at its newest key: walking newest -> oldest with carry = sum of -softplus(l)
// over the keys already walked, key j gets exp(log sigmoid(l_j) + carry) (docs/architecture.md,
// "Stick-breaking attention"); the segment reports (O_X, S_X = final carry).
// Keys go in blocks of KB, newest block first:
//   1. logits: TPK = WG / KB invocations per key split the head's D dims and all slots' dot
//      products, leaving NSLOT * TPK partial sums per key in workgroup memory;
//   2. one invocation per (slot, key) adds up its logit and splits it into log sigmoid and
//      -softplus (lib/softplus.wgsl);
//   3. NSLOT invocations walk the block newest -> oldest, turning those into weights and the carry;
//   4. every invocation adds weight * V into its own output dims: LANES invocations span the dims
//      (DPT each), and when D is narrower than the workgroup, KG = WG / LANES groups of them take
//      every KG-th key, their sums meeting once per segment rather than once per key.
// Defines: NSLOT (<= WG), H, D, P, WG, KB (KB divides WG), LANES (divides WG; LANES >= D when < WG),
// DPT = ceil(D / LANES), SCALE = 1 / sqrt(D) (f32).
#include "lib/step.wgsl"
#include "lib/softplus.wgsl"

@group(0) @binding(1) var<storage, read> q: array<f32>;               // [1, NSLOT, H * D]
@group(0) @binding(2) var<storage, read> keys: array<f32>;            // [max_context, H * D]
@group(0) @binding(3) var<storage, read> values: array<f32>;          // [max_context, H * D] (may be keys' buffer)
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;  // O: [P, NSLOT, H, D], then S: [P, NSLOT, H]

const W: u32 = H * D;
const TPK: u32 = WG / KB;
const KG: u32 = WG / LANES;

var<workgroup> dots: array<f32, NSLOT * WG>;       // [TPK][NSLOT][KB] partial q.K; [NSLOT][KG][LANES] at the end
var<workgroup> logsig: array<f32, NSLOT * KB>;     // [NSLOT][KB] log sigmoid(l), then the weight
var<workgroup> negsp: array<f32, NSLOT * KB>;      // [NSLOT][KB] -softplus(l)

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let seg = wid.x;
  let h = wid.y;
  let len = step.pos + 1u;
  let seg_len = (len + P - 1u) / P;
  let start = seg * seg_len;
  if (start >= len) { return; }
  let end = min(start + seg_len, len);

  let kk = lid / TPK; // key of the block this invocation dots against
  let kt = lid % TPK; // its share of the dims: kt, kt + TPK, ...
  let g = lid / LANES;
  let lane = lid % LANES;
  var acc = array<f32, NSLOT * DPT>(); // [NSLOT][DPT]: dims lane + j * LANES
  var carry = 0.0;                   // of slot lid, in invocations lid < NSLOT

  var hi = end;
  loop {
    if (hi <= start) { break; }
    let lo = select(hi - KB, 0u, hi < KB);
    let b0 = max(lo, start);
    let n = hi - b0; // keys b0 .. hi - 1 in this block

    // Explicitly zeroed: Dawn + SwiftShader keep an uninitialised loop-body var's value from the
    // previous iteration (WGSL says it starts at zero each time).
    var part = array<f32, NSLOT>();
    if (kk < n) {
      let kbase = (b0 + kk) * W + h * D;
      for (var i = kt; i < D; i += TPK) {
        let kv = keys[kbase + i];
        for (var s = 0u; s < NSLOT; s++) {
          part[s] += q[s * W + h * D + i] * kv;
        }
      }
    }
    for (var s = 0u; s < NSLOT; s++) {
      dots[(kt * NSLOT + s) * KB + kk] = part[s];
    }
    workgroupBarrier();

    for (var e = lid; e < NSLOT * KB; e += WG) { // once, unless NSLOT > WG / KB
      if (e % KB < n) {
        var l = 0.0;
        for (var t = 0u; t < TPK; t++) { l += dots[t * NSLOT * KB + e]; }
        let sp = sb_split(l * SCALE);
        logsig[e] = sp.x;
        negsp[e] = sp.y;
      }
    }
    workgroupBarrier();

    if (lid < NSLOT) {
      for (var i = n; i > 0u; i--) {
        let j = lid * KB + i - 1u;
        logsig[j] = exp(logsig[j] + carry);
        carry += negsp[j];
      }
    }
    workgroupBarrier();

    for (var i = g; i < n; i += KG) {
      let vbase = (b0 + i) * W + h * D;
      for (var j = 0u; j < DPT; j++) {
        let dim = lane + j * LANES;
        if (dim < D) {
          let v = values[vbase + dim];
          for (var s = 0u; s < NSLOT; s++) {
            acc[s * DPT + j] += logsig[s * KB + i] * v;
          }
        }
      }
    }
    // No barrier here: the next block writes dots (last read in step 2, before this block's
    // second barrier) and then logsig only after its own first barrier, which every invocation
    // reaches after finishing this step.
    hi = b0;
  }

  let obase = seg * NSLOT * W + h * D;
  if (KG > 1u) {
    // DPT is 1 here (LANES >= D), so [NSLOT][KG][LANES] fits in dots. Its last readers were in
    // step 2 of the last block, two barriers ago.
    for (var s = 0u; s < NSLOT; s++) {
      dots[(s * KG + g) * LANES + lane] = acc[s];
    }
    workgroupBarrier();
    if (g == 0u && lane < D) {
      for (var s = 0u; s < NSLOT; s++) {
        var o = 0.0;
        for (var t = 0u; t < KG; t++) { o += dots[(s * KG + t) * LANES + lane]; }
        partials[obase + s * W + lane] = o;
      }
    }
  } else {
    for (var j = 0u; j < DPT; j++) {
      let dim = lane + j * LANES;
      if (dim < D) {
        for (var s = 0u; s < NSLOT; s++) {
          partials[obase + s * W + dim] = acc[s * DPT + j];
        }
      }
    }
  }
  if (lid < NSLOT) {
    partials[P * NSLOT * W + (seg * NSLOT + lid) * H + h] = carry;
  }
}
