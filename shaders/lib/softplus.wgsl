// The two halves of a stick-breaking logit l: log sigmoid(l) (the log of what key j takes) and
// -softplus(l) = log(1 - sigmoid(l)) (the log of what it leaves to older keys). Both share
// t = log(1 + exp(-|l|)), which is the whole of the value when |l| is large and l < 0 or l > 0
// respectively, so t is computed without WGSL's log: log is only guaranteed to 2^-21 absolute
// near 1, and these terms are summed over thousands of keys.

// log(1 + x) for x in [0, 1]: 2 atanh(z) with z = x / (2 + x) in [0, 1/3]. The series is cut
// after z^13 / 13, whose successor is below 1.4e-8 of the sum: under f32 rounding.
fn sb_log1p_unit(x: f32) -> f32 {
  let z = x / (2.0 + x);
  let z2 = z * z;
  var p = 1.0 / 13.0;
  p = p * z2 + 1.0 / 11.0;
  p = p * z2 + 1.0 / 9.0;
  p = p * z2 + 1.0 / 7.0;
  p = p * z2 + 1.0 / 5.0;
  p = p * z2 + 1.0 / 3.0;
  p = p * z2 + 1.0;
  return 2.0 * z * p;
}

// (log sigmoid(l), -softplus(l)).
fn sb_split(l: f32) -> vec2f {
  let t = sb_log1p_unit(exp(-abs(l)));
  return vec2f(min(l, 0.0) - t, -max(l, 0.0) - t);
}
