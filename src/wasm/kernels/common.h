// Shared by every wasm kernel: storage types, half-float conversion, the thread pool's API and
// the scalar math the kernels need (the module is freestanding: there is no libm).
#pragma once
#include <stdint.h>
#include <stddef.h>
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))

// Storage types of weight tensors; the numbers are src/wasm/abi.ts's STORAGE_CODE.
enum { ST_F32 = 0, ST_BF16 = 1, ST_F16 = 2, ST_Q8 = 3, ST_Q4 = 4 };

static inline float as_float(uint32_t u) { union { uint32_t u; float f; } v = { .u = u }; return v.f; }
static inline uint32_t as_bits(float f) { union { float f; uint32_t u; } v = { .f = f }; return v.u; }
static inline double as_double(uint64_t u) { union { uint64_t u; double f; } v = { .u = u }; return v.f; }
static inline uint64_t as_bits64(double f) { union { double f; uint64_t u; } v = { .f = f }; return v.u; }

static inline float bf16_to_f32(uint16_t h) { return as_float((uint32_t)h << 16); }

// f16 → f32 for every finite half, subnormals included: the exponent is rebased by multiplying
// with 2^112 instead of adding a bias, which also turns a subnormal half into a normal float.
static inline float f16_to_f32(uint16_t h) {
  uint32_t mag = (uint32_t)(h & 0x7fff);
  if (mag >= 0x7c00) return as_float(((uint32_t)(h & 0x8000) << 16) | 0x7f800000 | (mag & 0x3ff) << 13);
  float f = as_float(mag << 13) * 0x1p112f;
  return (h & 0x8000) ? -f : f;
}

// Four halves (the low 64 bits of h, as u16 lanes) to four floats; finite halves only (scales
// and weights are finite: the converter refuses anything else).
static inline v128_t f16x4_to_f32x4(v128_t h) {
  v128_t w = wasm_u32x4_extend_low_u16x8(h);
  v128_t mag = wasm_i32x4_shl(wasm_v128_and(w, wasm_i32x4_splat(0x7fff)), 13);
  v128_t f = wasm_f32x4_mul(mag, wasm_f32x4_splat(0x1p112f));
  return wasm_v128_or(f, wasm_i32x4_shl(wasm_v128_and(w, wasm_i32x4_splat(0x8000)), 16));
}

static inline v128_t bf16x4_to_f32x4(v128_t h) { return wasm_i32x4_shl(wasm_u32x4_extend_low_u16x8(h), 16); }

static inline float hsum(v128_t v) {
  return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
         (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

// ---- the thread pool (pool.c) ----
// A task runs units [begin, end) of a job; units are handed out one at a time to whichever
// thread asks first, so a unit's result never depends on the thread count.
typedef void (*task_fn)(const void *ctx, int begin, int end);
void parallel_for(task_fn fn, const void *ctx, int units);

// ---- scalar math (math.c) ----
double exp_f64(double x);
float exp_f32(float x);
float log1p_f32_small(float u); // log(1 + u) for u in [0, 1]
float softplus_f32(float x);
float gelu_erf_f32(float x);
float gelu_tanh_f32(float x);
