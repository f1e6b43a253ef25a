// The ModuleFormer "mlp" gate: p = softmax(gelu_erf(x·W0ᵀ + b0)·W3ᵀ), then the k most likely
// experts (ties to the lower id). The gates keep their raw probabilities (not renormalised).
// The softmax runs in float64: which experts run hangs on its ranking.
#include "common.h"

void linear(float *y, const float *x, int rows, int in, int out, const uint8_t *w, int st, const float *bias, float *scratch);

#define MAXE 256

EXPORT(router) void router(int32_t *ids, float *gates, const float *x, int rows, int width, const uint8_t *w0, int st0, const float *b0,
                           const uint8_t *w3, int st3, int gating, int experts, int k, float *hidden, float *logits, float *scratch) {
  linear(hidden, x, rows, width, gating, w0, st0, b0, scratch);
  for (int i = 0; i < rows * gating; i++) hidden[i] = gelu_erf_f32(hidden[i]);
  linear(logits, hidden, rows, gating, experts, w3, st3, 0, scratch);
  double p[MAXE];
  for (int r = 0; r < rows; r++) {
    const float *l = logits + (size_t)r * experts;
    double max = l[0];
    for (int e = 1; e < experts; e++) max = l[e] > max ? l[e] : max;
    double sum = 0;
    for (int e = 0; e < experts; e++) sum += p[e] = exp_f64(l[e] - max);
    for (int e = 0; e < experts; e++) p[e] /= sum;
    // k passes, each taking the most likely expert not yet taken: strict > keeps the lower id.
    for (int s = 0; s < k; s++) {
      int best = -1;
      for (int e = 0; e < experts; e++) {
        int taken = 0;
        for (int t = 0; t < s; t++) taken |= ids[r * k + t] == e;
        if (!taken && (best < 0 || p[e] > p[best])) best = e;
      }
      ids[r * k + s] = best;
      gates[r * k + s] = (float)p[best];
    }
  }
}
