// Stick-breaking attention (ModuleFormer). Query row t (position pos0 + t) attends keys
// 0 … pos0 + t, its own included: walking keys newest to oldest with acc = log of the stick
// the newer keys left, each key gets a = exp(l − softplus(l) + acc) and then breaks off
// softplus(l) more; o = Σ a·V and the leftover stick is discarded. Every exponent is ≤ 0.
//
// The k slots of a row share its keys and values (one pass over the cache serves all of them).
// Decode splits the keys into segments of SEG: each unit walks one (head, segment) and leaves
// (O, S); the segments are then joined newest to oldest, O = O_newer + exp(S_newer)·O_older.
// Segment bounds depend only on the position, so results do not depend on the thread count.
#include "common.h"

#define SEG 64
#define MAXK 8

typedef struct {
  float *o;            // [rows, k, H·d]
  const float *q;      // [rows, k, H·d]
  const float *keys;   // [L, width]
  const float *values;
  int rows, k, heads, d, pos0, width;
  float scale;
  float *partial;      // decode: [segments, heads, k, d + 1]
  int segments;
} sb_job;

static inline float dot(const float *a, const float *b, int n) {
  v128_t acc0 = wasm_f32x4_splat(0), acc1 = wasm_f32x4_splat(0);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    acc0 = wasm_f32x4_add(acc0, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
    acc1 = wasm_f32x4_add(acc1, wasm_f32x4_mul(wasm_v128_load(a + i + 4), wasm_v128_load(b + i + 4)));
  }
  float s = hsum(wasm_f32x4_add(acc0, acc1));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

static inline void axpy(float *y, float a, const float *x, int n) {
  v128_t av = wasm_f32x4_splat(a);
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), wasm_f32x4_mul(av, wasm_v128_load(x + i))));
  for (; i < n; i++) y[i] += a * x[i];
}

// Keys from..to−1 (to−1 newest) of one head, for k queries; o[s] accumulates, acc[s] carries.
static void walk(const sb_job *j, int col, const float *const *q, float *const *o, float *acc, int from, int to) {
  for (int key = to - 1; key >= from; key--) {
    const float *kr = j->keys + (size_t)key * j->width + col;
    const float *vr = j->values + (size_t)key * j->width + col;
    for (int s = 0; s < j->k; s++) {
      float l = dot(q[s], kr, j->d) * j->scale;
      float sp = softplus_f32(l);
      float a = exp_f32(l - sp + acc[s]);
      axpy(o[s], a, vr, j->d);
      acc[s] -= sp;
    }
  }
}

static void decode_task(const void *ctx, int begin, int end) {
  const sb_job *j = ctx;
  for (int u = begin; u < end; u++) {
    int seg = u / j->heads, h = u % j->heads;
    int from = seg * SEG, last = j->pos0 + 1;
    int to = from + SEG < last ? from + SEG : last;
    const float *q[MAXK];
    float *o[MAXK];
    float acc[MAXK];
    float *part = j->partial + ((size_t)(seg * j->heads + h) * j->k) * (j->d + 1);
    for (int s = 0; s < j->k; s++) {
      q[s] = j->q + ((size_t)s * j->heads + h) * j->d;
      o[s] = part + (size_t)s * (j->d + 1);
      for (int i = 0; i < j->d; i++) o[s][i] = 0;
      acc[s] = 0;
    }
    walk(j, h * j->d, q, o, acc, from, to);
    for (int s = 0; s < j->k; s++) o[s][j->d] = acc[s];
  }
}

static void prefill_task(const void *ctx, int begin, int end) {
  const sb_job *j = ctx;
  for (int u = begin; u < end; u++) {
    // Longest rows first: the units' costs fall, which evens out the threads' shares.
    int t = j->rows - 1 - u / j->heads, h = u % j->heads;
    const float *q[MAXK];
    float *o[MAXK];
    float acc[MAXK];
    for (int s = 0; s < j->k; s++) {
      size_t off = (((size_t)t * j->k + s) * j->heads + h) * j->d;
      q[s] = j->q + off;
      o[s] = j->o + off;
      for (int i = 0; i < j->d; i++) o[s][i] = 0;
      acc[s] = 0;
    }
    walk(j, h * j->d, q, o, acc, 0, j->pos0 + t + 1);
  }
}

// partial: decode scratch, sb_partial_floats(...) floats.
EXPORT(stickbreaking) void stickbreaking(float *o, const float *q, const float *keys, const float *values, int rows, int k, int heads, int d,
                                         int pos0, int width, float *partial) {
  sb_job j = {o, q, keys, values, rows, k, heads, d, pos0, width, 1.0f / __builtin_sqrtf((float)d), partial, 0};
  if (rows > 1) {
    parallel_for(prefill_task, &j, rows * heads);
    return;
  }
  j.segments = (pos0 + 1 + SEG - 1) / SEG;
  parallel_for(decode_task, &j, j.segments * heads);
  for (int h = 0; h < heads; h++)
    for (int s = 0; s < k; s++) {
      float *out = o + ((size_t)s * heads + h) * d;
      float stick = 0;  // log of what the segments newer than the current one leave
      for (int i = 0; i < d; i++) out[i] = 0;
      for (int seg = j.segments - 1; seg >= 0; seg--) {
        const float *p = partial + ((size_t)(seg * heads + h) * k + s) * (d + 1);
        axpy(out, exp_f32(stick), p, d);
        stick += p[d];
      }
    }
}

EXPORT(stickbreaking_partial_floats) int stickbreaking_partial_floats(int max_context, int k, int heads, int d) {
  return ((max_context + SEG - 1) / SEG) * heads * k * (d + 1);
}
