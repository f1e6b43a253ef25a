// The scalar functions of the MoLM math without libm. The routers' erf GELU and softmax run in
// float64 (they pick experts: a near tie must resolve as in the reference); attention and the
// experts' tanh GELU run in float32, as the WGSL kernels do.
#include "common.h"

#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define INV_LN2 1.44269504088896338700e+00

// e^x: x = n·ln2 + r with |r| ≤ ln2/2, e^r from its Taylor series to 1e-17, then 2^n by bits.
double exp_f64(double x) {
  if (x != x) return x;
  if (x > 709.782712893384) return as_double(0x7ff0000000000000ull);  // ln(DBL_MAX)
  // e^x rounds to 0 only below −1075·ln2 ≈ −745.13 (e^-745.1 is 2^-1074, as Math.exp gives);
  // from −746 up the two-step scaling below rounds to 0 or a subnormal itself.
  if (x < -746.0) return 0.0;
  double nf = __builtin_nearbyint(x * INV_LN2);
  int n = (int)nf;
  double r = (x - nf * LN2_HI) - nf * LN2_LO;
  double p = 1.0 / 6227020800.0;  // 1/13!
  static const double inv_fact[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                                    1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
  for (int i = 0; i < 13; i++) p = p * r + inv_fact[i];
  // 2^n in two steps, so that n down to -1074 (subnormal results) stays exact.
  int n1 = n / 2, n2 = n - n1;
  return p * as_double((uint64_t)(n1 + 1023) << 52) * as_double((uint64_t)(n2 + 1023) << 52);
}

// gelu_erf(x) = x·Φ(x), with the polynomials of shaders/lib/gelu.wgsl (within 4e-7 of the
// float64 function in float32): both engines make the same approximation.
static float erf_poly_small(float s) {
  return 1.128379166f + s * (-0.3761262695f + s * (0.1128359774f + s * (-0.02685433613f +
         s * (0.005189320534f + s * (-8.018894667e-4f + s * 7.882529770e-5f)))));
}

static float erfc_scaled(float w) {
  return 2.749640821e-4f + w * (0.5589593432f + w * (0.04261177425f + w * (-0.4739685105f +
         w * (0.5022413192f + w * (-0.2492767902f + w * (0.02997781101f + w * (0.02562604631f +
         w * -0.008862397922f)))))));
}

float gelu_erf_f32(float x) {
  float z = x * 0.70710678118654752f;
  float a = z < 0 ? -z : z;
  float cdf;
  if (a < 1.0f) {
    cdf = 0.5f + 0.5f * z * erf_poly_small(z * z);
  } else if (a > 9.0f) {
    cdf = z > 0 ? 1.0f : 0.0f;
  } else {
    float tail = 0.5f * exp_f32(-a * a) * erfc_scaled(1.0f / (a < 4.0f ? a : 4.0f));
    cdf = z > 0 ? 1.0f - tail : tail;
  }
  return x * cdf;
}

// The experts' tanh GELU as x·sigmoid(2u), as shaders/lib/gelu.wgsl writes it.
float gelu_tanh_f32(float x) {
  if (x < -10.0f) return 0.0f;
  float xc = x > 10.0f ? 10.0f : x;
  float u = 0.7978845608028654f * (xc + 0.044715f * xc * xc * xc);
  return x / (1.0f + exp_f32(-2.0f * u));
}

// e^x in float32: n·ln2 + r, a degree-6 polynomial on |r| ≤ ln2/2 (about 1 ulp).
float exp_f32(float x) {
  if (x > 88.7f) return as_float(0x7f800000);
  if (x < -103.0f) return 0.0f;
  float nf = __builtin_nearbyintf(x * 1.44269504f);
  float r = (x - nf * 0.693145752f) - nf * 1.42860677e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int n = (int)nf;
  if (n < -126) return p * as_float((uint32_t)(n + 126 + 127) << 23) * 0x1p-126f;
  return p * as_float((uint32_t)(n + 127) << 23);
}

// log(1 + u) for 0 ≤ u ≤ 1 as 2·atanh(u / (2 + u)): |z| ≤ 1/3, so eight odd terms reach float32
// precision, and a tiny u keeps its relative precision (no 1 + u is formed).
float log1p_f32_small(float u) {
  float z = u / (2.0f + u);
  float z2 = z * z;
  float p = 1.0f / 15.0f;
  p = p * z2 + 1.0f / 13.0f;
  p = p * z2 + 1.0f / 11.0f;
  p = p * z2 + 1.0f / 9.0f;
  p = p * z2 + 1.0f / 7.0f;
  p = p * z2 + 1.0f / 5.0f;
  p = p * z2 + 1.0f / 3.0f;
  p = p * z2 + 1.0f;
  return 2.0f * z * p;
}

float softplus_f32(float x) {
  float a = x < 0 ? -x : x;
  return (x > 0 ? x : 0.0f) + log1p_f32_small(exp_f32(-a));
}

