// LayerNorm over rows of x [rows, width]: biased variance, eps inside the root, weight and bias.
// Mean and variance are summed in float64 in two passes, so a large common offset cannot cancel.
#include "common.h"

EXPORT(layer_norm) void layer_norm(float *out, const float *x, int rows, int width, const float *weight, const float *bias, float eps) {
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * width;
    float *o = out + (size_t)r * width;
    double mean = 0;
    for (int i = 0; i < width; i++) mean += xr[i];
    mean /= width;
    double var = 0;
    for (int i = 0; i < width; i++) {
      double d = xr[i] - mean;
      var += d * d;
    }
    var /= width;
    float inv = (float)(1.0 / __builtin_sqrt(var + eps));
    // The deviation in float64: a large common offset would lose half an ulp of the mean in f32.
    for (int i = 0; i < width; i++) o[i] = (float)(xr[i] - mean) * inv * weight[i] + bias[i];
  }
}
