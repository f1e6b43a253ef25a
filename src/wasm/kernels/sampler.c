// Token selection, by the definition in src/reference/sampler.ts (greedy; temperature, top-k,
// top-p with ties at a threshold kept; a draw walking the kept tokens in index order), in
// float64. The thresholds are found by selection, not sorting: top-k's τ is the k-th largest
// probability (quickselect), top-p's the probability at which the mass from the top first
// reaches topP of the kept mass (a quickselect weighted by mass). Both run in O(V).
#include "common.h"

// Repetition penalty (CTRL): the logit l of each listed token becomes l / r when l > 0, l·r else.
EXPORT(apply_penalty) void apply_penalty(float *logits, const int32_t *ids, int n, float penalty) {
  for (int i = 0; i < n; i++) {
    float l = logits[ids[i]];
    logits[ids[i]] = l > 0 ? l / penalty : l * penalty;
  }
}

EXPORT(argmax) int argmax(const float *logits, int vocab) {
  int best = 0;
  float v = logits[0];
  for (int i = 1; i < vocab; i++)
    if (logits[i] > v) v = logits[i], best = i;
  return best;
}

static void swap(double *a, int i, int j) { double t = a[i]; a[i] = a[j]; a[j] = t; }

// The n-th largest value of a[0..len) (n from 1); reorders a.
static double nth_largest(double *a, int len, int n) {
  int lo = 0, hi = len - 1, want = n - 1;
  while (lo < hi) {
    double pivot = a[lo + (hi - lo) / 2];
    int i = lo, j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) swap(a, i++, j--);
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return a[want];
  }
  return a[lo];
}

// The value τ such that Σ_{a ≥ τ} a first reaches `need` going down from the largest value.
static double mass_threshold(double *a, int len, double need) {
  int lo = 0, hi = len;  // candidates a[lo..hi)
  double last = a[0];
  while (lo < hi) {
    double pivot = a[lo + (hi - lo) / 2];
    // Three-way partition: [lo, g) > pivot, [g, e) == pivot, [e, hi) < pivot.
    int g = lo, i = lo, e = hi;
    while (i < e) {
      if (a[i] > pivot) swap(a, i++, g++);
      else if (a[i] < pivot) swap(a, i, --e);
      else i++;
    }
    double above = 0, equal = 0;
    for (int t = lo; t < g; t++) above += a[t];
    for (int t = g; t < e; t++) equal += a[t];
    if (above >= need && g > lo) {
      hi = g;
    } else if (above + equal >= need) {
      return pivot;
    } else {
      need -= above + equal;
      last = pivot;
      lo = e;
    }
  }
  return last;  // rounding kept the mass short of `need`: keep every candidate
}

// p: scratch for vocab doubles; sel: scratch for vocab doubles.
EXPORT(sample) int sample(const float *logits, int vocab, float temperature, int top_k, float top_p, double u, double *p, double *sel) {
  if (!(temperature > 0)) return argmax(logits, vocab);
  double max = logits[0];
  for (int i = 1; i < vocab; i++) max = logits[i] > max ? logits[i] : max;
  double sum = 0;
  for (int i = 0; i < vocab; i++) sum += p[i] = exp_f64((logits[i] - max) / temperature);
  for (int i = 0; i < vocab; i++) p[i] /= sum;

  double tau = 0;
  if (top_k > 0 && top_k < vocab) {
    for (int i = 0; i < vocab; i++) sel[i] = p[i];
    tau = nth_largest(sel, vocab, top_k);
  }
  if (top_p < 1) {
    int n = 0;
    double kept = 0;
    for (int i = 0; i < vocab; i++)
      if (p[i] >= tau) kept += sel[n++] = p[i];
    double tp = top_p > 0 ? (double)top_p * kept : 0;
    double t = mass_threshold(sel, n, tp);
    tau = t > tau ? t : tau;
  }
  double total = 0;
  for (int i = 0; i < vocab; i++)
    if (p[i] >= tau) total += p[i];
  double target = u * total, running = 0;
  int last_kept = -1;
  for (int i = 0; i < vocab; i++) {
    if (p[i] < tau) continue;
    running += p[i];
    if (p[i] > 0) last_kept = i;
    if (running > target) return i;
  }
  return last_kept;
}
