import { describe, expect, it } from 'vitest';
import { f32ToF16 } from '../../src/checkpoint/dtype.ts';
import type { StorageType } from '../../src/storage-types.ts';
import { embedding as embeddingRef } from '../../src/reference/embedding.ts';
import { STORAGE_CODE } from '../../src/wasm/abi.ts';
import { randomF32, rng, weightData } from '../shared/numeric.ts';
import { kernelMemory, THREADS } from './harness.ts';

// embedding copies rows of the table [V, C] out of their storage type. A copy must come back bit
// for bit (tolerance 0) against the rows of the dequantised table: a bf16 / f16 value widens to
// float32 exactly, and a q8 / q4 value is q·s, exact in float32 (q has ≤ 8 bits, s 11) on both
// sides. Ids outside the table give a row of zeros.

type Table = { data: ArrayBufferView; rounded: Float32Array; vocab: number; width: number };

/** A random table; row 1 holds the edges of its encoding. */
function table(type: StorageType, vocab: number, width: number, seed: number): Table {
  const values = randomF32(vocab * width, rng(seed), 2);
  const edges: Record<string, number[]> = {
    f32: [0, -0, 1e-45, -1.2e-38, 3.4e38, -3.4e38],
    bf16: [0, -0, 1e-38, -1e-39, 3e38, -3e38],
    // f16: subnormals (2^-24, the smallest, and 1023·2^-24, the largest) and ±65504.
    f16: [0, -0, 2 ** -24, -(2 ** -24), 1023 * 2 ** -24, 65504, -65504],
    // q8 / q4: a group of zeros (scale 0).
    q8: new Array(32).fill(0),
    q4: new Array(32).fill(0),
  };
  if (edges[type] && vocab > 1) values.set(edges[type].slice(0, width), width);
  return { ...weightData(values, type, [vocab, width]), vocab, width };
}

/** Bit-exact comparison, reporting the first differing element. */
function expectBits(got: Float32Array, want: Float32Array, what: string): void {
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  expect(a.length).toBe(b.length);
  const i = a.findIndex((v, j) => v !== b[j]);
  expect(i, `${what}: element ${i} is ${got[i]}, want ${want[i]}`).toBe(-1);
}

async function check(t: Table, type: StorageType, ids: number[], threads: number): Promise<void> {
  const m = await kernelMemory(threads);
  const out = m.out(ids.length * t.width);
  m.k.embedding(out, m.put(t.data), STORAGE_CODE[type], t.vocab, t.width, m.put(Int32Array.from(ids)), ids.length);
  const got = m.f32(out, ids.length * t.width);
  const valid = ids.map((id) => (id >= 0 && id < t.vocab ? id : -1));
  const want = new Float32Array(ids.length * t.width);
  valid.forEach((id, r) => {
    if (id >= 0) want.set(embeddingRef([id], t.rounded, t.width), r * t.width);
  });
  expectBits(got, want, `${type} V=${t.vocab} C=${t.width}, ids ${ids.join(' ')}, ${threads} thread(s)`);
}

describe('wasm embedding', () => {
  const cases: [StorageType, number, number][] = [
    // type, vocab, width
    ['f32', 50, 33],
    ['bf16', 17, 33],
    ['f16', 100, 64],
    ['f16', 9, 7],
    ['q8', 50, 64],
    ['q4', 17, 96],
    ['q8', 40, 1024],
  ];
  for (const threads of THREADS) {
    cases.forEach(([type, vocab, width], n) => {
      it(`${type} table V=${vocab} C=${width}: both ends, the edge row, repeats; out-of-range ids give zeros, ${threads} thread(s)`, () => {
        const t = table(type, vocab, width, 31 + n);
        return check(t, type, [vocab - 1, 0, 1, 5 % vocab, vocab, 5 % vocab, -1, Math.floor(vocab / 2)], threads);
      });
    });
  }

  it('keeps an f16 subnormal as its exact value (2^-24 is not flushed)', async () => {
    const t = table('f16', 2, 7, 5);
    const m = await kernelMemory(1);
    const out = m.out(7);
    m.k.embedding(out, m.put(t.data), STORAGE_CODE.f16, 2, 7, m.put(Int32Array.from([1])), 1);
    expect(m.f32(out, 7)[2]).toBe(2 ** -24);
    expect(f32ToF16(2 ** -24)).toBe(1);
  });

  // MoLM's table under q4: 50295 × 1024 (26 MB stored), built once for both thread counts.
  let big: Table | undefined;
  for (const threads of THREADS) {
    it(`q4 table of MoLM's shape 50295 × 1024: first, last and middle rows, ${threads} thread(s)`, () => {
      big ??= table('q4', 50295, 1024, 77);
      return check(big, 'q4', [0, 50294, 25147, 50293, 1, 50295], threads);
    });
  }
});
