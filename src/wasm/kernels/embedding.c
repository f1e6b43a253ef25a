// Rows of the embedding table [V, C] for token ids, in any storage type.
#include "weights.h"

EXPORT(embedding) void embedding(float *out, const uint8_t *table, int st, int vocab, int width, const int32_t *ids, int rows) {
  for (int r = 0; r < rows; r++) {
    int id = ids[r];
    float *o = out + (size_t)r * width;
    if (id < 0 || id >= vocab) {
      for (int i = 0; i < width; i++) o[i] = 0;  // ids are checked before a step; never read past the table
      continue;
    }
    for (int i = 0; i < width; i++) o[i] = weight_at(st, table, width, vocab, id, i, 1);
  }
}
