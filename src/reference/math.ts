// Scalar functions of the MoLM math, in float64 to near machine precision. The GPU kernels
// approximate some of these (WGSL has no erf); this file is what they are measured against.

const TWO_OVER_SQRT_PI = 1.1283791670955126; // 2/√π
const ONE_OVER_SQRT_PI = 0.5641895835477563; // 1/√π
const SQRT_HALF = Math.SQRT1_2;
const SQRT_TWO_OVER_PI = 0.7978845608028654; // √(2/π)

// Below this |x| the series is used, above it the continued fraction: at 3 both need well under
// a hundred terms for full double precision, and neither suffers cancellation on its side.
const SERIES_LIMIT = 3;
// erfc(6) ≈ 2e-17: beyond this erf is ±1 in float64.
const SATURATION = 6;

/**
 * erf on 0 ≤ x < 3 from the all-positive series
 *   erf(x) = 2/√π · e^(−x²) · Σ_n 2ⁿ x^(2n+1) / (1·3·…·(2n+1)).
 * The alternating Taylor series would lose three digits to cancellation near x = 3; this one
 * only adds positive terms, so its error stays at a few ulps.
 */
function erfSeries(x: number): number {
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return TWO_OVER_SQRT_PI * Math.exp(-x2) * sum;
}

/**
 * erfc on x ≥ 3 from Laplace's continued fraction
 *   erfc(x) = e^(−x²)/√π · 1 / (x + (1/2) / (x + 1 / (x + (3/2) / (x + …)))),
 * evaluated forwards with the modified Lentz method. It converges fast for large x, exactly
 * where the series above is slow, and keeps erfc's relative accuracy (erf = 1 − erfc then has
 * full absolute accuracy).
 */
function erfcContinuedFraction(x: number): number {
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let n = 1; n < 500; n++) {
    const a = n / 2;
    d = x + a * d;
    d = d === 0 ? tiny : d;
    c = x + a / c;
    c = c === 0 ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return (ONE_OVER_SQRT_PI * Math.exp(-x * x)) / f;
}

/** The error function, to within a few ulps over the whole real line. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  let r: number;
  if (a < SERIES_LIMIT) r = erfSeries(a);
  else if (a < SATURATION) r = 1 - erfcContinuedFraction(a);
  else r = 1;
  return x < 0 ? -r : r;
}

/** The complementary error function 1 − erf(x), with relative accuracy in the far right tail. */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x < SERIES_LIMIT) return 1 - erf(x);
  return x > 27 ? 0 : erfcContinuedFraction(x);
}

/**
 * Exact GELU, x·Φ(x), used by the routers. Written with erfc so that for negative x (where
 * 1 + erf(x/√2) cancels) the small result keeps its relative precision.
 */
export function geluErf(x: number): number {
  return 0.5 * x * erfc(-x * SQRT_HALF);
}

/** The tanh GELU ("gelu_new") used inside the MLP experts. */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(SQRT_TWO_OVER_PI * (x + 0.044715 * x * x * x)));
}

/** log(1 + eˣ) without overflow for large x or loss of the small tail for very negative x. */
export function softplus(x: number): number {
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

/** 1 / (1 + e^(−x)), never evaluating an exponential of a large positive number. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}
