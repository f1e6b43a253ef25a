// Where the values of a stored matrix sit (src/quant/layout.ts has the layout in words).
//
// A 2-D tensor [R, IN] (nn.Linear weights, the embedding) is one block; a stacked expert tensor
// [E, IN, OUT] is E blocks. In q8 / q4, a 2-D block holds row-major words [R, IN/P] then f16
// scales [R, IN/32]; an expert block holds words [IN/P, OUT] (a word is P consecutive inputs of
// one column) then scales [IN/32, OUT]; scales are u16 and the block is padded to 4 bytes.
#pragma once
#include "common.h"

static inline int per_word(int st) { return st == ST_Q4 ? 8 : 4; }
static inline int bits_of(int st) { return st == ST_Q4 ? 4 : 8; }
static inline int is_quant(int st) { return st == ST_Q8 || st == ST_Q4; }

// Bytes of one block of `cols` columns of IN values (2-D: cols = R; experts: cols = OUT).
static inline size_t block_bytes(int st, int in, int cols) {
  size_t n = (size_t)in * cols;
  switch (st) {
    case ST_F32: return n * 4;
    case ST_BF16:
    case ST_F16: return n * 2;  // 16-bit tensors pad only at their end
    default: {
      size_t words = n / per_word(st);
      size_t scales = n / 32;
      return words * 4 + ((scales + 1) / 2) * 4;
    }
  }
}

static inline float half_to_f32(int st, uint16_t h) { return st == ST_BF16 ? bf16_to_f32(h) : f16_to_f32(h); }

// Value (c, i) of a quantised block: column c, input i; `word_col`/`word_in` are the word
// strides (2-D: IN/P and 1; experts: 1 and OUT), likewise for scales.
static inline float quant_at(int st, const uint8_t *block, int in, int cols, int c, int i, int rowmajor) {
  int P = per_word(st), bits = bits_of(st);
  const uint32_t *words = (const uint32_t *)block;
  size_t nwords = (size_t)in * cols / P;
  const uint16_t *scales = (const uint16_t *)(words + nwords);
  size_t w = rowmajor ? (size_t)c * (in / P) + i / P : (size_t)(i / P) * cols + c;
  size_t s = rowmajor ? (size_t)c * (in / 32) + i / 32 : (size_t)(i / 32) * cols + c;
  int k = i % P;
  int32_t q = (int32_t)(words[w] << (32 - bits * (k + 1))) >> (32 - bits);
  return (float)q * f16_to_f32(scales[s]);
}

// Element (c, i) of any block: 2-D blocks are [cols = R][IN] row-major; expert blocks [IN][OUT].
static inline float weight_at(int st, const uint8_t *block, int in, int cols, int c, int i, int rowmajor) {
  size_t idx = rowmajor ? (size_t)c * in + i : (size_t)i * cols + c;
  switch (st) {
    case ST_F32: return ((const float *)block)[idx];
    case ST_BF16: return bf16_to_f32(((const uint16_t *)block)[idx]);
    case ST_F16: return f16_to_f32(((const uint16_t *)block)[idx]);
    default: return quant_at(st, block, in, cols, c, i, rowmajor);
  }
}
