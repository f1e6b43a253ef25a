// molm-web wasm toolchain bench: the C side (Debian clang 14, wasm32 + simd128, no libc).
//
// Every kernel computes y = x · W for one expert block, W of shape [IN, OUT] (y is overwritten).
// The same loops, in the same order, are written in ../as/kernels.ts; keep the two in step.
//
//   q4  : words [IN/8, OUT]  (word (w, j) = inputs 8w..8w+7 of column j, value k in bits [4k, 4k+4))
//   q8  : words [IN/4, OUT]  (word (w, j) = inputs 4w..4w+3 of column j, value k in bits [8k, 8k+8))
//         both followed by f16 scales [IN/32, OUT], two per u32 (scale m in the low half of word
//         m/2 when m is even). Per group g of 32 inputs: s_j = sum_i x[i]·q[i][j] in f32, in order
//         of i; then y[j] += s_j · scale[g][j].
//   f32 : W as f32 [IN, OUT]; y[j] += x[i] · W[i][j] for i = 0, 1, ... (in that order).
//
// Suffix _x4 = 4 columns per step (one i32x4/f32x4), _x16 = 16 columns per step (4 vectors that
// share each x splat). The _x16 kernels need OUT % 16 == 0, the _x4 kernels OUT % 4 == 0.
#include <stdint.h>
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))

extern unsigned char __heap_base;
EXPORT(heap_base) uintptr_t heap_base(void) { return (uintptr_t)&__heap_base; }

// Four f16 (8 bytes, little-endian) -> f32x4, exact for every f16 (subnormals, ±0, inf, NaN).
static inline v128_t f16x4_to_f32x4(const void *p) {
  v128_t h = wasm_u32x4_load16x4(p);
  v128_t sign = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16);
  v128_t em = wasm_v128_and(h, wasm_i32x4_splat(0x7fff));
  v128_t f = wasm_f32x4_mul(wasm_i32x4_shl(em, 13), wasm_i32x4_splat(0x77800000)); // · 2^112
  v128_t infnan = wasm_i32x4_gt(em, wasm_i32x4_splat(0x7bff));
  f = wasm_v128_or(f, wasm_v128_and(infnan, wasm_i32x4_splat(0x7f800000)));
  return wasm_v128_or(f, sign);
}

static inline void zero(float *y, int n) {
  for (int j = 0; j < n; j += 4) wasm_v128_store(y + j, wasm_f32x4_splat(0.0f));
}

// acc += splat(xk) · f32(signed field of q at bit LO, width BITS)
#define NIB(q, k) wasm_i32x4_shr(wasm_i32x4_shl((q), 28 - 4 * (k)), 28)
#define NIB7(q) wasm_i32x4_shr((q), 28)
#define BYT(q, k) wasm_i32x4_shr(wasm_i32x4_shl((q), 24 - 8 * (k)), 24)
#define BYT3(q) wasm_i32x4_shr((q), 24)
#define MAC(acc, xs, qi) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(xs, wasm_f32x4_convert_i32x4(qi)))

// ---------------------------------------------------------------- q4
EXPORT(q4_x4) void q4_x4(const float *x, const uint32_t *W, float *y, int IN, int OUT) {
  const uint16_t *S = (const uint16_t *)(W + (IN / 8) * OUT);
  zero(y, OUT);
  for (int g = 0; g < IN / 32; g++) {
    const float *xg = x + 32 * g;
    const uint32_t *Wg = W + 4 * g * OUT;
    const uint16_t *Sg = S + g * OUT;
    for (int j = 0; j < OUT; j += 4) {
      v128_t acc = wasm_f32x4_splat(0.0f);
      for (int w = 0; w < 4; w++) {
        v128_t q = wasm_v128_load(Wg + w * OUT + j);
        const float *xw = xg + 8 * w;
        MAC(acc, wasm_v128_load32_splat(xw + 0), NIB(q, 0));
        MAC(acc, wasm_v128_load32_splat(xw + 1), NIB(q, 1));
        MAC(acc, wasm_v128_load32_splat(xw + 2), NIB(q, 2));
        MAC(acc, wasm_v128_load32_splat(xw + 3), NIB(q, 3));
        MAC(acc, wasm_v128_load32_splat(xw + 4), NIB(q, 4));
        MAC(acc, wasm_v128_load32_splat(xw + 5), NIB(q, 5));
        MAC(acc, wasm_v128_load32_splat(xw + 6), NIB(q, 6));
        MAC(acc, wasm_v128_load32_splat(xw + 7), NIB7(q));
      }
      v128_t s = f16x4_to_f32x4(Sg + j);
      wasm_v128_store(y + j, wasm_f32x4_add(wasm_v128_load(y + j), wasm_f32x4_mul(acc, s)));
    }
  }
}

#define MAC4_Q4(k, SHIFTED)                                 \
  {                                                         \
    v128_t xs = wasm_v128_load32_splat(xw + (k));           \
    MAC(a0, xs, SHIFTED(q0, k));                            \
    MAC(a1, xs, SHIFTED(q1, k));                            \
    MAC(a2, xs, SHIFTED(q2, k));                            \
    MAC(a3, xs, SHIFTED(q3, k));                            \
  }
#define NIB7K(q, k) NIB7(q)
#define BYT3K(q, k) BYT3(q)

EXPORT(q4_x16) void q4_x16(const float *x, const uint32_t *W, float *y, int IN, int OUT) {
  const uint16_t *S = (const uint16_t *)(W + (IN / 8) * OUT);
  zero(y, OUT);
  for (int g = 0; g < IN / 32; g++) {
    const float *xg = x + 32 * g;
    const uint32_t *Wg = W + 4 * g * OUT;
    const uint16_t *Sg = S + g * OUT;
    for (int j = 0; j < OUT; j += 16) {
      v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
      for (int w = 0; w < 4; w++) {
        const uint32_t *p = Wg + w * OUT + j;
        v128_t q0 = wasm_v128_load(p), q1 = wasm_v128_load(p + 4);
        v128_t q2 = wasm_v128_load(p + 8), q3 = wasm_v128_load(p + 12);
        const float *xw = xg + 8 * w;
        MAC4_Q4(0, NIB) MAC4_Q4(1, NIB) MAC4_Q4(2, NIB) MAC4_Q4(3, NIB)
        MAC4_Q4(4, NIB) MAC4_Q4(5, NIB) MAC4_Q4(6, NIB) MAC4_Q4(7, NIB7K)
      }
      float *yj = y + j;
      const uint16_t *sj = Sg + j;
      wasm_v128_store(yj + 0, wasm_f32x4_add(wasm_v128_load(yj + 0), wasm_f32x4_mul(a0, f16x4_to_f32x4(sj + 0))));
      wasm_v128_store(yj + 4, wasm_f32x4_add(wasm_v128_load(yj + 4), wasm_f32x4_mul(a1, f16x4_to_f32x4(sj + 4))));
      wasm_v128_store(yj + 8, wasm_f32x4_add(wasm_v128_load(yj + 8), wasm_f32x4_mul(a2, f16x4_to_f32x4(sj + 8))));
      wasm_v128_store(yj + 12, wasm_f32x4_add(wasm_v128_load(yj + 12), wasm_f32x4_mul(a3, f16x4_to_f32x4(sj + 12))));
    }
  }
}

// ---------------------------------------------------------------- q8
EXPORT(q8_x4) void q8_x4(const float *x, const uint32_t *W, float *y, int IN, int OUT) {
  const uint16_t *S = (const uint16_t *)(W + (IN / 4) * OUT);
  zero(y, OUT);
  for (int g = 0; g < IN / 32; g++) {
    const float *xg = x + 32 * g;
    const uint32_t *Wg = W + 8 * g * OUT;
    const uint16_t *Sg = S + g * OUT;
    for (int j = 0; j < OUT; j += 4) {
      v128_t acc = wasm_f32x4_splat(0.0f);
      for (int w = 0; w < 8; w++) {
        v128_t q = wasm_v128_load(Wg + w * OUT + j);
        const float *xw = xg + 4 * w;
        MAC(acc, wasm_v128_load32_splat(xw + 0), BYT(q, 0));
        MAC(acc, wasm_v128_load32_splat(xw + 1), BYT(q, 1));
        MAC(acc, wasm_v128_load32_splat(xw + 2), BYT(q, 2));
        MAC(acc, wasm_v128_load32_splat(xw + 3), BYT3(q));
      }
      v128_t s = f16x4_to_f32x4(Sg + j);
      wasm_v128_store(y + j, wasm_f32x4_add(wasm_v128_load(y + j), wasm_f32x4_mul(acc, s)));
    }
  }
}

EXPORT(q8_x16) void q8_x16(const float *x, const uint32_t *W, float *y, int IN, int OUT) {
  const uint16_t *S = (const uint16_t *)(W + (IN / 4) * OUT);
  zero(y, OUT);
  for (int g = 0; g < IN / 32; g++) {
    const float *xg = x + 32 * g;
    const uint32_t *Wg = W + 8 * g * OUT;
    const uint16_t *Sg = S + g * OUT;
    for (int j = 0; j < OUT; j += 16) {
      v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
      for (int w = 0; w < 8; w++) {
        const uint32_t *p = Wg + w * OUT + j;
        v128_t q0 = wasm_v128_load(p), q1 = wasm_v128_load(p + 4);
        v128_t q2 = wasm_v128_load(p + 8), q3 = wasm_v128_load(p + 12);
        const float *xw = xg + 4 * w;
        MAC4_Q4(0, BYT) MAC4_Q4(1, BYT) MAC4_Q4(2, BYT) MAC4_Q4(3, BYT3K)
      }
      float *yj = y + j;
      const uint16_t *sj = Sg + j;
      wasm_v128_store(yj + 0, wasm_f32x4_add(wasm_v128_load(yj + 0), wasm_f32x4_mul(a0, f16x4_to_f32x4(sj + 0))));
      wasm_v128_store(yj + 4, wasm_f32x4_add(wasm_v128_load(yj + 4), wasm_f32x4_mul(a1, f16x4_to_f32x4(sj + 4))));
      wasm_v128_store(yj + 8, wasm_f32x4_add(wasm_v128_load(yj + 8), wasm_f32x4_mul(a2, f16x4_to_f32x4(sj + 8))));
      wasm_v128_store(yj + 12, wasm_f32x4_add(wasm_v128_load(yj + 12), wasm_f32x4_mul(a3, f16x4_to_f32x4(sj + 12))));
    }
  }
}

// ---------------------------------------------------------------- f32
// Rows in steps of 4 (4 row streams, y loaded/stored once per 4 rows); adds still go in order of i.
EXPORT(f32_x4) void f32_x4(const float *x, const float *W, float *y, int IN, int OUT) {
  zero(y, OUT);
  for (int i = 0; i < IN; i += 4) {
    v128_t x0 = wasm_v128_load32_splat(x + i), x1 = wasm_v128_load32_splat(x + i + 1);
    v128_t x2 = wasm_v128_load32_splat(x + i + 2), x3 = wasm_v128_load32_splat(x + i + 3);
    const float *r0 = W + i * OUT, *r1 = r0 + OUT, *r2 = r1 + OUT, *r3 = r2 + OUT;
    for (int j = 0; j < OUT; j += 4) {
      v128_t a = wasm_v128_load(y + j);
      a = wasm_f32x4_add(a, wasm_f32x4_mul(x0, wasm_v128_load(r0 + j)));
      a = wasm_f32x4_add(a, wasm_f32x4_mul(x1, wasm_v128_load(r1 + j)));
      a = wasm_f32x4_add(a, wasm_f32x4_mul(x2, wasm_v128_load(r2 + j)));
      a = wasm_f32x4_add(a, wasm_f32x4_mul(x3, wasm_v128_load(r3 + j)));
      wasm_v128_store(y + j, a);
    }
  }
}

#define ROW4(a, o)                                                     \
  a = wasm_f32x4_add(a, wasm_f32x4_mul(x0, wasm_v128_load(r0 + j + o))); \
  a = wasm_f32x4_add(a, wasm_f32x4_mul(x1, wasm_v128_load(r1 + j + o))); \
  a = wasm_f32x4_add(a, wasm_f32x4_mul(x2, wasm_v128_load(r2 + j + o))); \
  a = wasm_f32x4_add(a, wasm_f32x4_mul(x3, wasm_v128_load(r3 + j + o)));

EXPORT(f32_x16) void f32_x16(const float *x, const float *W, float *y, int IN, int OUT) {
  zero(y, OUT);
  for (int i = 0; i < IN; i += 4) {
    v128_t x0 = wasm_v128_load32_splat(x + i), x1 = wasm_v128_load32_splat(x + i + 1);
    v128_t x2 = wasm_v128_load32_splat(x + i + 2), x3 = wasm_v128_load32_splat(x + i + 3);
    const float *r0 = W + i * OUT, *r1 = r0 + OUT, *r2 = r1 + OUT, *r3 = r2 + OUT;
    for (int j = 0; j < OUT; j += 16) {
      v128_t a0 = wasm_v128_load(y + j), a1 = wasm_v128_load(y + j + 4);
      v128_t a2 = wasm_v128_load(y + j + 8), a3 = wasm_v128_load(y + j + 12);
      ROW4(a0, 0) ROW4(a1, 4) ROW4(a2, 8) ROW4(a3, 12)
      wasm_v128_store(y + j, a0);
      wasm_v128_store(y + j + 4, a1);
      wasm_v128_store(y + j + 8, a2);
      wasm_v128_store(y + j + 12, a3);
    }
  }
}
