// A plain parallel read of a memory range: the bandwidth the decode step could reach at best,
// measured in the same run as a benchmark (the wasm twin of shaders/copy.wgsl's role).
#include "common.h"

#define UNIT_BYTES (256 << 10)

typedef struct {
  const uint8_t *p;
  size_t bytes;
  uint32_t *sums;  // one per unit, so nothing is optimised away and no unit shares a line
} stream_job;

static void stream_task(const void *ctx, int begin, int end) {
  const stream_job *j = ctx;
  for (int u = begin; u < end; u++) {
    size_t from = (size_t)u * UNIT_BYTES;
    size_t to = from + UNIT_BYTES < j->bytes ? from + UNIT_BYTES : j->bytes;
    v128_t a = wasm_i32x4_splat(0), b = a, c = a, d = a;
    size_t i = from;
    for (; i + 64 <= to; i += 64) {
      a = wasm_v128_xor(a, wasm_v128_load(j->p + i));
      b = wasm_v128_xor(b, wasm_v128_load(j->p + i + 16));
      c = wasm_v128_xor(c, wasm_v128_load(j->p + i + 32));
      d = wasm_v128_xor(d, wasm_v128_load(j->p + i + 48));
    }
    v128_t x = wasm_v128_xor(wasm_v128_xor(a, b), wasm_v128_xor(c, d));
    j->sums[u * 16] = wasm_i32x4_extract_lane(x, 0) ^ wasm_i32x4_extract_lane(x, 1) ^ wasm_i32x4_extract_lane(x, 2) ^ wasm_i32x4_extract_lane(x, 3);
  }
}

// sums: room for 16 u32 per 256 KiB of the range. Returns the xor of every 16-byte word.
EXPORT(stream_read) uint32_t stream_read(const uint8_t *p, size_t bytes, uint32_t *sums) {
  int units = (int)((bytes + UNIT_BYTES - 1) / UNIT_BYTES);
  stream_job j = {p, bytes, sums};
  parallel_for(stream_task, &j, units);
  uint32_t x = 0;
  for (int u = 0; u < units; u++) x ^= sums[u * 16];
  return x;
}
