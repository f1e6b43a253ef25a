// The ceiling of float32 multiply-add throughput in WebAssembly SIMD on this CPU: a 6-row x
// 8-column outer-product microkernel over a panel that stays in L1, with no q4 unpacking and no
// memory traffic. No real kernel can beat it, so it bounds what prefill can reach (docs/performance.md).
// Built twice: MADD=0 multiplies then adds (what the engine does), MADD=1 uses relaxed SIMD's
// fused multiply-add, to show how much a machine-dependent rounding would buy.
#include <wasm_simd128.h>

#if MADD
#define MAC(acc, x, w) acc = __builtin_wasm_relaxed_madd_f32x4(x, w, acc)
#else
#define MAC(acc, x, w) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(x, w))
#endif

__attribute__((export_name("macs_per_call"))) int macs_per_call(int k, int reps) { return k * reps * 48; }

__attribute__((export_name("run"))) float run(const float *x, const float *w, int k, int reps) {
  v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  v128_t a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
  for (int r = 0; r < reps; r++) {
    for (int i = 0; i < k; i++) {
      v128_t w0 = wasm_v128_load(w + 8 * i), w1 = wasm_v128_load(w + 8 * i + 4);
      v128_t x0 = wasm_v128_load32_splat(x + 6 * i), x1 = wasm_v128_load32_splat(x + 6 * i + 1);
      v128_t x2 = wasm_v128_load32_splat(x + 6 * i + 2), x3 = wasm_v128_load32_splat(x + 6 * i + 3);
      v128_t x4 = wasm_v128_load32_splat(x + 6 * i + 4), x5 = wasm_v128_load32_splat(x + 6 * i + 5);
      MAC(a0, x0, w0); MAC(a1, x0, w1); MAC(a2, x1, w0); MAC(a3, x1, w1);
      MAC(a4, x2, w0); MAC(a5, x2, w1); MAC(a6, x3, w0); MAC(a7, x3, w1);
      MAC(a8, x4, w0); MAC(a9, x4, w1); MAC(a10, x5, w0); MAC(a11, x5, w1);
    }
  }
  v128_t s = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_add(a0, a1), wasm_f32x4_add(a2, a3)),
                            wasm_f32x4_add(wasm_f32x4_add(a4, a5), wasm_f32x4_add(a6, a7)));
  s = wasm_f32x4_add(s, wasm_f32x4_add(wasm_f32x4_add(a8, a9), wasm_f32x4_add(a10, a11)));
  return wasm_f32x4_extract_lane(s, 0);
}
