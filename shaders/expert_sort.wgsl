// Groups the (token row, slot) pairs of a prefill chunk by expert, so that the grouped matmuls
// (expert_matmul.wgsl) read each selected expert's weights once per tile of TM slots instead of
// once per slot. A counting sort: stable (an expert's slots keep their token order, so results do
// not depend on scheduling), and the ids never leave the GPU.
// One workgroup; invocation e owns expert e: it counts its slots, invocation 0 turns the counts
// into offsets, then each invocation writes its slots and its tiles. Scanning all n·K ids per
// expert costs E·n·K reads, a few hundred thousand at most, far below one matmul's weights.
// Output `groups` (u32), laid out by src/kernels/expert-grouped.ts (groupsLayout):
//   [0]                      number of tiles this step
//   [OFFSETS_AT + e]         first position of expert e in `order` (E + 1 entries)
//   [ORDER_AT + p]           slot index s = row·K + k, sorted by expert
//   [TILES_AT + 2t, + 2t+1]  tile t: its expert, and its first position in `order`; a tile
//                            holds up to TM positions, never crossing into the next expert
// Defines: E (experts, <= WG), K, TM, WG, OFFSETS_AT, ORDER_AT, TILES_AT.
#include "lib/step.wgsl"

@group(0) @binding(1) var<storage, read> ids: array<u32>;           // [n_tokens, K] expert of each slot
@group(0) @binding(2) var<storage, read_write> groups: array<u32>;

var<workgroup> first_slot: array<u32, WG>;
var<workgroup> first_tile: array<u32, WG>;

// An id past the last expert (a router bug) counts as the last expert, as the matmuls read it.
fn expert_of(s: u32) -> u32 { return min(ids[s], E - 1u); }

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) e: u32) {
  let n = step.n_tokens * K;
  var count = 0u;
  if (e < E) {
    for (var s = 0u; s < n; s++) {
      if (expert_of(s) == e) { count++; }
    }
  }
  first_slot[e] = count;
  workgroupBarrier();
  if (e == 0u) {
    // Exclusive prefix sums over experts; E is small, one invocation is quickest.
    var slots = 0u;
    var tiles = 0u;
    for (var j = 0u; j < E; j++) {
      let c = first_slot[j];
      first_slot[j] = slots;
      first_tile[j] = tiles;
      groups[OFFSETS_AT + j] = slots;
      slots += c;
      tiles += (c + TM - 1u) / TM;
    }
    groups[OFFSETS_AT + E] = slots;
    groups[0] = tiles;
  }
  workgroupBarrier();
  if (e >= E) { return; }
  let start = first_slot[e];
  var p = start;
  for (var s = 0u; s < n; s++) {
    if (expert_of(s) == e) {
      groups[ORDER_AT + p] = s;
      p++;
    }
  }
  var t = first_tile[e];
  for (var q = start; q < p; q += TM) {
    groups[TILES_AT + 2u * t] = e;
    groups[TILES_AT + 2u * t + 1u] = q;
    t++;
  }
}
