// Expert projections: y[r, s] = act(x[r, (s)] · W[ids[r, s]]) from stacked [E, IN, OUT] weights,
// and the gated combine h[r] += Σ_s g[r, s] · y[r, s].
//
// The (row, slot) pairs are grouped by expert (a stable counting sort) into tasks of up to ROWS
// pairs of one expert, so each weight is read and unpacked once per task: in decode that is one
// pair per task and a plain matrix-vector product; in prefill it is the grouped matmul. Only the
// chosen experts' weights are read. Threads split (task, block of columns) units.
//
// Expert blocks keep a column's values at stride OUT, so SIMD lanes hold neighbouring columns:
// a q4 word of each of 4 columns holds the same 8 inputs, value k one shift pair away.
#include "weights.h"

#define ROWS 4
#define COLS 8          // columns per inner block (two vectors)
#define UNIT_COLS 64    // columns per unit of work (q8 / q4)
#define UNIT_COLS_FLOAT 256  // float weights: longer runs of each row

typedef struct {
  int expert, n;
  const float *x[ROWS];
  float *y[ROWS];
} expert_task;

typedef struct {
  const expert_task *tasks;
  int ntasks, in, out, st, act, col_units;
  const uint8_t *w;
  size_t block;
  // Decode's split by input rows: inputs per unit, units per task, and their partial sums.
  int unit_in, in_units;
  float *partial;
} expert_job;

enum { ACT_NONE = 0, ACT_GELU_TANH = 1 };

// Columns [c0, c1) of a task, c1 − c0 a multiple of 4·VEC. N (the task's rows), ST (q8 or q4)
// and VEC (vectors of 4 columns side by side) are constants at every call, so the loops unroll,
// the shifts are immediates and the accumulators stay in registers: one row takes 4 vectors
// (four independent add chains), several rows 2 each. Groups are the outer loop: a group's few
// weight rows are read left to right.
static inline __attribute__((always_inline)) void cols_quant(const expert_job *j, const expert_task *t, int c0, int c1, int g0, int g1,
                                                             const int N, const int ST, const int VEC) {
  const int in = j->in, out = j->out, P = ST == ST_Q4 ? 8 : 4, BITS = 32 / P, WPG = 32 / P;
  const uint8_t *blk = j->w + j->block * t->expert;
  const uint32_t *words = (const uint32_t *)blk;
  const uint16_t *scales = (const uint16_t *)(words + (size_t)(in / P) * out);
  for (int r = 0; r < N; r++)
    for (int c = c0; c < c1; c += 4) wasm_v128_store(t->y[r] + c, wasm_f32x4_splat(0));
  for (int g = g0; g < g1; g++) {
    const uint32_t *wg = words + (size_t)g * WPG * out;
    for (int c = c0; c < c1; c += 4 * VEC) {
      v128_t a[ROWS][4];
      for (int r = 0; r < N; r++)
        for (int u = 0; u < VEC; u++) a[r][u] = wasm_f32x4_splat(0);
#pragma clang loop unroll(full)
      for (int w = 0; w < WPG; w++) {
        v128_t v[4];
        for (int u = 0; u < VEC; u++) v[u] = wasm_v128_load(wg + (size_t)w * out + c + 4 * u);
#pragma clang loop unroll(full)
        for (int k = 0; k < P; k++) {
          v128_t q[4];
          for (int u = 0; u < VEC; u++) q[u] = wasm_f32x4_convert_i32x4(wasm_i32x4_shr(wasm_i32x4_shl(v[u], 32 - BITS * (k + 1)), 32 - BITS));
          for (int r = 0; r < N; r++) {
            v128_t xs = wasm_v128_load32_splat(t->x[r] + g * 32 + w * P + k);
            for (int u = 0; u < VEC; u++) a[r][u] = wasm_f32x4_add(a[r][u], wasm_f32x4_mul(q[u], xs));
          }
        }
      }
      const uint16_t *sp = scales + (size_t)g * out + c;
      for (int u = 0; u < VEC; u++) {
        v128_t s = f16x4_to_f32x4(wasm_v128_load64_zero(sp + 4 * u));
        for (int r = 0; r < N; r++) {
          float *y = t->y[r] + c + 4 * u;
          wasm_v128_store(y, wasm_f32x4_add(wasm_v128_load(y), wasm_f32x4_mul(a[r][u], s)));
        }
      }
    }
  }
}

static inline __attribute__((always_inline)) void cols_q4(const expert_job *j, const expert_task *t, int c0, int c1, int i0, int i1, const int N) {
  cols_quant(j, t, c0, c1, i0 / 32, i1 / 32, N, ST_Q4, 2);  // 4 vectors spill: measured slower
}
static inline __attribute__((always_inline)) void cols_q8(const expert_job *j, const expert_task *t, int c0, int c1, int i0, int i1, const int N) {
  cols_quant(j, t, c0, c1, i0 / 32, i1 / 32, N, ST_Q8, 2);
}

static inline __attribute__((always_inline)) void load_float8(int st, const uint8_t *blk, size_t idx, v128_t *w0, v128_t *w1) {
  if (st == ST_F32) {
    const float *w = (const float *)blk + idx;
    *w0 = wasm_v128_load(w);
    *w1 = wasm_v128_load(w + 4);
    return;
  }
  v128_t h = wasm_v128_load(blk + idx * 2);
  if (st == ST_BF16) {
    *w0 = wasm_i32x4_shl(wasm_u32x4_extend_low_u16x8(h), 16);
    *w1 = wasm_i32x4_shl(wasm_u32x4_extend_high_u16x8(h), 16);
  } else {
    *w0 = f16x4_to_f32x4(h);
    *w1 = f16x4_to_f32x4(wasm_i64x2_shuffle(h, h, 1, 0));
  }
}

// Float experts, columns [c0, c1) (a multiple of COLS), inputs [i_from, i_to): rows of IB inputs
// at a time, each read left to right across the columns, y accumulated in memory (it stays in
// L1). Walking one column block down all IN rows instead would jump OUT·4 bytes a row and
// defeat the prefetchers. One row (decode) takes 16 columns and 8 inputs a pass: four add
// chains, and the y loads and stores spread over more work.
static inline __attribute__((always_inline)) void cols_float_shape(const expert_job *j, const expert_task *t, int c0, int c1, int i_from,
                                                                   int i_to, const int N, const int IB, const int VEC) {
  const int out = j->out, st = j->st;
  const uint8_t *blk = j->w + j->block * t->expert;
  for (int r = 0; r < N; r++)
    for (int c = c0; c < c1; c += 4) wasm_v128_store(t->y[r] + c, wasm_f32x4_splat(0));
  for (int i0 = i_from; i0 < i_to; i0 += IB) {
    const int ni = i_to - i0 < IB ? i_to - i0 : IB;
    for (int c = c0; c < c1; c += 4 * VEC) {
      v128_t a[ROWS][4];
      for (int r = 0; r < N; r++)
        for (int u = 0; u < VEC; u++) a[r][u] = wasm_v128_load(t->y[r] + c + 4 * u);
      for (int i = i0; i < i0 + ni; i++) {
        v128_t w[4];
        for (int u = 0; u < VEC; u += 2) load_float8(st, blk, (size_t)i * out + c + 4 * u, &w[u], &w[u + 1]);
        for (int r = 0; r < N; r++) {
          v128_t xs = wasm_v128_load32_splat(t->x[r] + i);
          for (int u = 0; u < VEC; u++) a[r][u] = wasm_f32x4_add(a[r][u], wasm_f32x4_mul(w[u], xs));
        }
      }
      for (int r = 0; r < N; r++)
        for (int u = 0; u < VEC; u++) wasm_v128_store(t->y[r] + c + 4 * u, a[r][u]);
    }
  }
}

static inline __attribute__((always_inline)) void cols_float(const expert_job *j, const expert_task *t, int c0, int c1, int i_from, int i_to,
                                                             const int N) {
  if (N == 1 && (c1 - c0) % 16 == 0) cols_float_shape(j, t, c0, c1, i_from, i_to, 1, 8, 4);
  else cols_float_shape(j, t, c0, c1, i_from, i_to, N, 4, 2);
}

static void column_scalar(const expert_job *j, const expert_task *t, int c) {
  const uint8_t *blk = j->w + j->block * t->expert;
  for (int r = 0; r < t->n; r++) {
    float acc = 0;
    for (int i = 0; i < j->in; i++) acc += t->x[r][i] * weight_at(j->st, blk, j->in, j->out, c, i, 0);
    t->y[r][c] = acc;
  }
}

// One out-of-line copy of each (storage, rows) shape, shared by the column split (prefill) and
// the input-row split (decode): every copy of an unrolled kernel costs the bundle kilobytes.
typedef void (*cols_fn)(const expert_job *, const expert_task *, int, int, int, int);
#define SHAPE(name, f, n) \
  static __attribute__((noinline)) void name(const expert_job *j, const expert_task *t, int c0, int c1, int i0, int i1) { f(j, t, c0, c1, i0, i1, n); }
SHAPE(q4_1, cols_q4, 1) SHAPE(q4_2, cols_q4, 2) SHAPE(q4_3, cols_q4, 3) SHAPE(q4_4, cols_q4, 4)
SHAPE(q8_1, cols_q8, 1) SHAPE(q8_2, cols_q8, 2) SHAPE(q8_3, cols_q8, 3) SHAPE(q8_4, cols_q8, 4)
SHAPE(fl_1, cols_float, 1) SHAPE(fl_2, cols_float, 2) SHAPE(fl_3, cols_float, 3) SHAPE(fl_4, cols_float, 4)

/** The shape for a storage type and a task's rows (1 to ROWS). */
static cols_fn shape_of(int st, int n) {
  static const cols_fn q4[] = {q4_1, q4_2, q4_3, q4_4}, q8[] = {q8_1, q8_2, q8_3, q8_4}, fl[] = {fl_1, fl_2, fl_3, fl_4};
  return (st == ST_Q4 ? q4 : st == ST_Q8 ? q8 : fl)[n - 1];
}



static void expert_task_run(const void *ctx, int begin, int end) {
  const expert_job *j = ctx;
  for (int u = begin; u < end; u++) {
    const expert_task *t = &j->tasks[u / j->col_units];
    int width = is_quant(j->st) ? UNIT_COLS : UNIT_COLS_FLOAT;
    int c0 = (u % j->col_units) * width;
    int c1 = c0 + width < j->out ? c0 + width : j->out;
    int cv = c0 + (c1 - c0) / COLS * COLS;  // columns [c0, cv) in vectors, the rest one by one
    if (cv > c0) {
      shape_of(j->st, t->n)(j, t, c0, cv, 0, j->in);
    }
    for (int c = cv; c < c1; c++) column_scalar(j, t, c);
    if (j->act == ACT_GELU_TANH)
      for (int r = 0; r < t->n; r++)
        for (int cc = c0; cc < c1; cc++) t->y[r][cc] = gelu_tanh_f32(t->y[r][cc]);
  }
}

// Decode (one row per task): a unit is a run of input rows of one task over every column, so
// its weights are read front to back (a block of columns walked down the rows would jump
// OUT·4 bytes a row: a new page, a TLB miss, no prefetch). Each unit leaves a partial sum;
// expert_project adds them up in unit order, whatever thread made them.
static void expert_rows_run(const void *ctx, int begin, int end) {
  const expert_job *j = ctx;
  for (int u = begin; u < end; u++) {
    expert_task t = j->tasks[u / j->in_units];
    int i0 = (u % j->in_units) * j->unit_in;
    int i1 = i0 + j->unit_in < j->in ? i0 + j->unit_in : j->in;
    t.y[0] = j->partial + (size_t)u * j->out;
    shape_of(j->st, 1)(j, &t, 0, j->out, i0, i1);
  }
}

static void expert_whole_run(const void *ctx, int begin, int end) {
  const expert_job *j = ctx;
  for (int u = begin; u < end; u++) {
    const expert_task *t = &j->tasks[u];
    shape_of(j->st, t->n)(j, t, 0, j->out, 0, j->in);
    if (j->act == ACT_GELU_TANH)
      for (int r = 0; r < t->n; r++)
        for (int c = 0; c < j->out; c++) t->y[r][c] = gelu_tanh_f32(t->y[r][c]);
  }
}

#define UNIT_IN_QUANT 256
#define UNIT_IN_FLOAT 128

EXPORT(expert_partial_floats) int expert_partial_floats(int k, int max_in, int max_out) {
  return k * ((max_in + UNIT_IN_FLOAT - 1) / UNIT_IN_FLOAT) * max_out;
}

// tasks: room for rows·k tasks; counts: room for `experts` ints; partial: expert_partial_floats.
EXPORT(expert_project) void expert_project(float *y, const float *x, int rows, int k, int x_per_slot, int in, int out, const uint8_t *w,
                                           int st, int experts, const int32_t *ids, int act, expert_task *tasks, int32_t *counts,
                                           float *partial) {
  // Counting sort of the pairs by expert: counts → starts; then fill tiles expert by expert.
  for (int e = 0; e <= experts; e++) counts[e] = 0;
  int pairs = rows * k;
  for (int p = 0; p < pairs; p++) counts[ids[p] + 1]++;
  for (int e = 0; e < experts; e++) counts[e + 1] += counts[e];
  int ntasks = 0;
  for (int e = 0; e < experts; e++) {
    int n = counts[e + 1] - counts[e];
    if (n == 0) continue;
    // Walk the pairs of expert e in slot order, ROWS at a time.
    int seen = 0;
    expert_task *t = 0;
    for (int p = 0; p < pairs && seen < n; p++) {
      if (ids[p] != e) continue;
      if (seen % ROWS == 0) {
        t = &tasks[ntasks++];
        t->expert = e;
        t->n = 0;
      }
      int r = p / k;
      t->x[t->n] = x + (size_t)(x_per_slot ? p : r) * in;
      t->y[t->n] = y + (size_t)p * out;
      t->n++;
      seen++;
    }
  }
  int width = is_quant(st) ? UNIT_COLS : UNIT_COLS_FLOAT;
  int col_units = (out + width - 1) / width;
  int unit_in = is_quant(st) ? UNIT_IN_QUANT : UNIT_IN_FLOAT;
  int in_units = (in + unit_in - 1) / unit_in;
  expert_job j = {tasks, ntasks, in, out, st, act, col_units, w, block_bytes(st, in, out), unit_in, in_units, partial};
  if (out % COLS != 0 || !partial) {
    parallel_for(expert_task_run, &j, ntasks * col_units);
    return;
  }
  if (rows > 1) {
    // Prefill: a unit is a whole task, its expert's weights read front to back once for its
    // rows (there are enough tasks to share among the threads).
    j.col_units = 1;
    parallel_for(expert_whole_run, &j, ntasks);
    return;
  }
  parallel_for(expert_rows_run, &j, ntasks * in_units);
  for (int ti = 0; ti < ntasks; ti++) {
    float *yv = tasks[ti].y[0];
    const float *p = partial + (size_t)ti * in_units * out;
    for (int c = 0; c < out; c += 4) {
      v128_t acc = wasm_v128_load(p + c);
      for (int u = 1; u < in_units; u++) acc = wasm_f32x4_add(acc, wasm_v128_load(p + (size_t)u * out + c));
      wasm_v128_store(yv + c, acc);
    }
    if (act == ACT_GELU_TANH)
      for (int c = 0; c < out; c++) yv[c] = gelu_tanh_f32(yv[c]);
  }
}

// h[r] += Σ_s gates[r, s] · y[r, s]: the slots are summed first, then added to the residual.
EXPORT(expert_combine) void expert_combine(float *h, const float *y, const float *gates, int rows, int k, int width) {
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < width; i++) {
      float acc = 0;
      for (int s = 0; s < k; s++) acc += gates[r * k + s] * y[((size_t)r * k + s) * width + i];
      h[(size_t)r * width + i] += acc;
    }
}

// Bytes of scratch expert_project needs for its tasks.
EXPORT(expert_task_bytes) int expert_task_bytes(void) { return sizeof(expert_task); }
