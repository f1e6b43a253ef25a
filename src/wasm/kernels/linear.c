// nn.Linear: y[r, o] = x[r] · W[o] + b[o], W stored [OUT, IN] (one 2-D block) in any storage
// type. Used for the routers' layers, k / v projections and lm_head. Threads split the output
// rows; up to ROWS input rows share each unpacked weight.
//
// q8 / q4 rows are read four words at a time (32 inputs of q4, 16 of q8), one word per SIMD
// lane, so value k of every lane is one shift pair away. The lanes then hold inputs that are
// P apart, so x is first permuted to match: xp[base + 4k + l] = x[base + P·l + k].
#include "weights.h"

#define ROWS 4
#define UNIT 64  // output rows per unit of work

typedef struct {
  float *y;
  const float *x;   // [rows, IN]
  const float *xp;  // the permuted x (q8 / q4)
  int rows, in, out, st;
  const uint8_t *w;
  const float *bias;
} linear_job;

static void permute_x(float *xp, const float *x, int in, int st) {
  int P = per_word(st), span = 4 * P;
  for (int base = 0; base < in; base += span)
    for (int l = 0; l < 4; l++)
      for (int k = 0; k < P; k++) xp[base + 4 * k + l] = x[base + P * l + k];
}

// NR (rows) and ST (q8 or q4) are constants at every call (see ROWS_SWITCH), so the loops
// unroll, the shifts are immediates and the accumulators live in registers. Two accumulators
// per row (even and odd k) halve the dependency chains.
static inline __attribute__((always_inline)) void rows_quant(const linear_job *j, int r0, const int NR, int o, const int ST) {
  const int in = j->in, P = ST == ST_Q4 ? 8 : 4, BITS = 32 / P, WPG = 32 / P;
  const uint32_t *words = (const uint32_t *)j->w + (size_t)o * (in / P);
  const uint16_t *scales = (const uint16_t *)((const uint32_t *)j->w + (size_t)j->out * (in / P)) + (size_t)o * (in / 32);
  const float *xp = j->xp + (size_t)r0 * in;
  v128_t acc[ROWS];
  for (int r = 0; r < NR; r++) acc[r] = wasm_f32x4_splat(0);
  for (int g = 0; g < in / 32; g++) {
    v128_t ga[ROWS], gb[ROWS];
    for (int r = 0; r < NR; r++) ga[r] = gb[r] = wasm_f32x4_splat(0);
#pragma clang loop unroll(full)
    for (int w4 = 0; w4 < WPG; w4 += 4) {
      v128_t v = wasm_v128_load(words + g * WPG + w4);
      const float *xb = xp + g * 32 + w4 * P;
#pragma clang loop unroll(full)
      for (int k = 0; k < P; k++) {
        v128_t q = wasm_f32x4_convert_i32x4(wasm_i32x4_shr(wasm_i32x4_shl(v, 32 - BITS * (k + 1)), 32 - BITS));
        for (int r = 0; r < NR; r++) {
          v128_t t = wasm_f32x4_mul(q, wasm_v128_load(xb + (size_t)r * in + 4 * k));
          if (k & 1) gb[r] = wasm_f32x4_add(gb[r], t);
          else ga[r] = wasm_f32x4_add(ga[r], t);
        }
      }
    }
    v128_t s = wasm_f32x4_splat(f16_to_f32(scales[g]));
    for (int r = 0; r < NR; r++) acc[r] = wasm_f32x4_add(acc[r], wasm_f32x4_mul(wasm_f32x4_add(ga[r], gb[r]), s));
  }
  float b = j->bias ? j->bias[o] : 0.0f;
  for (int r = 0; r < NR; r++) j->y[(size_t)(r0 + r) * j->out + o] = hsum(acc[r]) + b;
}

static inline __attribute__((always_inline)) void rows_q4(const linear_job *j, int r0, const int NR, int o) { rows_quant(j, r0, NR, o, ST_Q4); }
static inline __attribute__((always_inline)) void rows_q8(const linear_job *j, int r0, const int NR, int o) { rows_quant(j, r0, NR, o, ST_Q8); }

static inline void load8(int st, const uint8_t *p, v128_t *lo, v128_t *hi) {
  v128_t h = wasm_v128_load(p);
  if (st == ST_BF16) {
    *lo = wasm_i32x4_shl(wasm_u32x4_extend_low_u16x8(h), 16);
    *hi = wasm_i32x4_shl(wasm_u32x4_extend_high_u16x8(h), 16);
  } else {
    *lo = f16x4_to_f32x4(h);
    *hi = f16x4_to_f32x4(wasm_i64x2_shuffle(h, h, 1, 0));
  }
}

static inline __attribute__((always_inline)) void rows_float(const linear_job *j, int r0, const int NR, int o) {
  const int in = j->in, st = j->st;
  v128_t acc[ROWS];
  for (int r = 0; r < NR; r++) acc[r] = wasm_f32x4_splat(0);
  const float *x = j->x + (size_t)r0 * in;
  if (st == ST_F32 && NR == 1 && in % 16 == 0) {
    // One row: four add chains, or the dot product waits on one chain's latency.
    const float *w = (const float *)j->w + (size_t)o * in;
    v128_t b0 = wasm_f32x4_splat(0), b1 = b0, b2 = b0;
    for (int i = 0; i < in; i += 16) {
      acc[0] = wasm_f32x4_add(acc[0], wasm_f32x4_mul(wasm_v128_load(w + i), wasm_v128_load(x + i)));
      b0 = wasm_f32x4_add(b0, wasm_f32x4_mul(wasm_v128_load(w + i + 4), wasm_v128_load(x + i + 4)));
      b1 = wasm_f32x4_add(b1, wasm_f32x4_mul(wasm_v128_load(w + i + 8), wasm_v128_load(x + i + 8)));
      b2 = wasm_f32x4_add(b2, wasm_f32x4_mul(wasm_v128_load(w + i + 12), wasm_v128_load(x + i + 12)));
    }
    acc[0] = wasm_f32x4_add(wasm_f32x4_add(acc[0], b0), wasm_f32x4_add(b1, b2));
  } else if (st == ST_F32) {
    const float *w = (const float *)j->w + (size_t)o * in;
    for (int i = 0; i < in; i += 4) {
      v128_t wv = wasm_v128_load(w + i);
      for (int r = 0; r < NR; r++) acc[r] = wasm_f32x4_add(acc[r], wasm_f32x4_mul(wv, wasm_v128_load(x + (size_t)r * in + i)));
    }
  } else {
    const uint8_t *w = j->w + (size_t)o * in * 2;
    v128_t b0[ROWS];
    for (int r = 0; r < NR; r++) b0[r] = wasm_f32x4_splat(0);
    for (int i = 0; i < in; i += 8) {
      v128_t lo, hi;
      load8(st, w + i * 2, &lo, &hi);
      for (int r = 0; r < NR; r++) {
        acc[r] = wasm_f32x4_add(acc[r], wasm_f32x4_mul(lo, wasm_v128_load(x + (size_t)r * in + i)));
        b0[r] = wasm_f32x4_add(b0[r], wasm_f32x4_mul(hi, wasm_v128_load(x + (size_t)r * in + i + 4)));
      }
    }
    for (int r = 0; r < NR; r++) acc[r] = wasm_f32x4_add(acc[r], b0[r]);
  }
  float b = j->bias ? j->bias[o] : 0.0f;
  for (int r = 0; r < NR; r++) j->y[(size_t)(r0 + r) * j->out + o] = hsum(acc[r]) + b;
}

static void rows_scalar(const linear_job *j, int r0, int nr, int o) {
  for (int r = r0; r < r0 + nr; r++) {
    const float *x = j->x + (size_t)r * j->in;
    float acc = 0;
    for (int i = 0; i < j->in; i++) acc += x[i] * weight_at(j->st, j->w, j->in, j->out, o, i, 1);
    j->y[(size_t)r * j->out + o] = acc + (j->bias ? j->bias[o] : 0.0f);
  }
}

#define ROWS_SWITCH(f, nr, j, r0, o) \
  do { switch (nr) {                \
    case 1: f(j, r0, 1, o); break;  \
    case 2: f(j, r0, 2, o); break;  \
    case 3: f(j, r0, 3, o); break;  \
    default: f(j, r0, 4, o); break; \
  } } while (0)

static void linear_task(const void *ctx, int begin, int end) {
  const linear_job *j = ctx;
  const int simd = is_quant(j->st) || (j->st == ST_F32 ? j->in % 4 == 0 : j->in % 8 == 0);
  for (int u = begin; u < end; u++) {
    int o_end = (u + 1) * UNIT < j->out ? (u + 1) * UNIT : j->out;
    for (int o = u * UNIT; o < o_end; o++)
      for (int r0 = 0; r0 < j->rows; r0 += ROWS) {
        int nr = j->rows - r0 < ROWS ? j->rows - r0 : ROWS;
        if (!simd) rows_scalar(j, r0, nr, o);
        else if (j->st == ST_Q4) ROWS_SWITCH(rows_q4, nr, j, r0, o);
        else if (j->st == ST_Q8) ROWS_SWITCH(rows_q8, nr, j, r0, o);
        else ROWS_SWITCH(rows_float, nr, j, r0, o);
      }
  }
}

// scratch: rows × IN floats (used by q8 / q4 for the permuted x).
EXPORT(linear) void linear(float *y, const float *x, int rows, int in, int out, const uint8_t *w, int st, const float *bias, float *scratch) {
  linear_job j = {y, x, scratch, rows, in, out, st, w, bias};
  if (is_quant(st))
    for (int r = 0; r < rows; r++) permute_x(scratch + (size_t)r * in, x + (size_t)r * in, in, st);
  int units = (out + UNIT - 1) / UNIT;
  // Small layers (a router's second layer) are not worth waking the other threads for.
  if ((size_t)out * in * rows < 65536) linear_task(&j, 0, units);
  else parallel_for(linear_task, &j, units);
}
