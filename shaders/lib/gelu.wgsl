// The two GELUs of MoLM. The routers use the exact (erf) one, the experts the tanh one
// ("gelu_new"); mixing them up is a measurable bug, so both live here, side by side.
//
// WGSL has no erf. gelu_erf(x) = x·Φ(x) with Φ the standard normal CDF, evaluated as
//   |z| < 1: Φ = 1/2 + z/2 · P(z²)                    (z = x/√2, erf(z) = z·P(z²))
//   |z| ≥ 1: Φ = 1 − e^(−z²)/2 · Q(1/|z|) for z > 0,  e^(−z²)/2 · Q(1/|z|) for z < 0
// where Q(1/z) ≈ erfc(z)·e^(z²). Computing the negative tail from erfc directly (instead of
// 1 + erf) keeps its absolute error small where the result is tiny. P (degree 6 in z²) and Q
// (degree 8 in 1/z, fitted on z in [1, 4]) are Chebyshev fits made for this file; in float32
// the whole gelu_erf stays within 4e-7 of the float64 function on [-12, 12] (output rounding
// included). Beyond |z| = 4, erfc(z) < 2e-8 is below float32 resolution next to 1, so Q is
// held at its z = 4 value.

fn gelu_erf_poly_small(s: f32) -> f32 {
  return 1.128379166 + s * (-0.3761262695 + s * (0.1128359774 + s * (-0.02685433613
    + s * (0.005189320534 + s * (-8.018894667e-4 + s * 7.882529770e-5)))));
}

fn gelu_erfc_scaled(w: f32) -> f32 {
  return 2.749640821e-4 + w * (0.5589593432 + w * (0.04261177425 + w * (-0.4739685105
    + w * (0.5022413192 + w * (-0.2492767902 + w * (0.02997781101 + w * (0.02562604631
    + w * -0.008862397922)))))));
}

// Φ(x), the standard normal CDF.
fn gelu_normal_cdf(x: f32) -> f32 {
  let z = x * 0.70710678118654752;
  if (abs(z) < 1.0) {
    return 0.5 + 0.5 * z * gelu_erf_poly_small(z * z);
  }
  // WGSL leaves overflow and infinities indeterminate, so the exponent is bounded (e^-81 is
  // still a normal float32) and the tail set to exactly 0 past |z| = 9, where it is < 1e-36;
  // 1/min(a, 4) keeps Q inside its fitted range.
  let a = min(abs(z), 9.0);
  let tail = select(0.5 * exp(-a * a) * gelu_erfc_scaled(1.0 / min(a, 4.0)), 0.0, abs(z) > 9.0);
  return select(tail, 1.0 - tail, z > 0.0);
}

fn gelu_erf(x: f32) -> f32 {
  return x * gelu_normal_cdf(x);
}

// 0.5·x·(1 + tanh(u)) = x·sigmoid(2u) with u = √(2/π)·(x + 0.044715·x³). The sigmoid form avoids
// WGSL tanh, which some drivers evaluate as a ratio of exponentials that turns into NaN for large
// |u|. x is clamped to [-10, 10] inside u (|u| ≤ 43.6, so e^(2|u|) stays finite and x³ cannot
// overflow); below -10 the true value is under 1e-36 and 0 is returned, as float32 torch does.
fn gelu_tanh(x: f32) -> f32 {
  let xc = clamp(x, -10.0, 10.0);
  let u = 0.7978845608028654 * (xc + 0.044715 * xc * xc * xc);
  return select(x / (1.0 + exp(-2.0 * u)), 0.0, x < -10.0);
}
