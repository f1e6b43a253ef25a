// molm-web wasm toolchain bench: the AssemblyScript side (asc 0.28, --enable simd, stub runtime).
//
// The same kernels, loops and operation order as ../c/kernels.c (read the layout notes there).
// Pointers are byte addresses into the module's own memory; the host places x, W and y above
// heap_base(). Every kernel computes y = x · W (y is overwritten).

export function heap_base(): usize {
  return __heap_base;
}

// Four f16 (8 bytes, little-endian) -> f32x4, exact for every f16 (subnormals, ±0, inf, NaN).
// @ts-ignore: decorator
@inline function f16x4_to_f32x4(p: usize): v128 {
  const h = v128.load16x4_u(p);
  const sign = i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16);
  const em = v128.and(h, i32x4.splat(0x7fff));
  let f = f32x4.mul(i32x4.shl(em, 13), i32x4.splat(0x77800000)); // · 2^112
  const infnan = i32x4.gt_s(em, i32x4.splat(0x7bff));
  f = v128.or(f, v128.and(infnan, i32x4.splat(0x7f800000)));
  return v128.or(f, sign);
}

// @ts-ignore: decorator
@inline function nib(q: v128, k: i32): v128 {
  return k == 7 ? i32x4.shr_s(q, 28) : i32x4.shr_s(i32x4.shl(q, 28 - 4 * k), 28);
}
// @ts-ignore: decorator
@inline function byt(q: v128, k: i32): v128 {
  return k == 3 ? i32x4.shr_s(q, 24) : i32x4.shr_s(i32x4.shl(q, 24 - 8 * k), 24);
}
// @ts-ignore: decorator
@inline function mac(acc: v128, xs: v128, qi: v128): v128 {
  return f32x4.add(acc, f32x4.mul(xs, f32x4.convert_i32x4_s(qi)));
}
// y[j..j+3] += acc · scales(sp)
// @ts-ignore: decorator
@inline function flush(yp: usize, acc: v128, sp: usize): void {
  v128.store(yp, f32x4.add(v128.load(yp), f32x4.mul(acc, f16x4_to_f32x4(sp))));
}

// ---------------------------------------------------------------- q4
export function q4_x4(x: usize, W: usize, y: usize, IN: i32, OUT: i32): void {
  const S = W + (<usize>((IN / 8) * OUT) << 2);
  memory.fill(y, 0, <usize>OUT << 2);
  for (let g = 0; g < IN / 32; g++) {
    const xg = x + (<usize>(32 * g) << 2);
    const Wg = W + (<usize>(4 * g * OUT) << 2);
    const Sg = S + (<usize>(g * OUT) << 1);
    for (let j = 0; j < OUT; j += 4) {
      let acc = f32x4.splat(0);
      for (let w = 0; w < 4; w++) {
        const q = v128.load(Wg + (<usize>(w * OUT + j) << 2));
        const xw = xg + (<usize>(8 * w) << 2);
        acc = mac(acc, v128.load32_splat(xw, 0), nib(q, 0));
        acc = mac(acc, v128.load32_splat(xw, 4), nib(q, 1));
        acc = mac(acc, v128.load32_splat(xw, 8), nib(q, 2));
        acc = mac(acc, v128.load32_splat(xw, 12), nib(q, 3));
        acc = mac(acc, v128.load32_splat(xw, 16), nib(q, 4));
        acc = mac(acc, v128.load32_splat(xw, 20), nib(q, 5));
        acc = mac(acc, v128.load32_splat(xw, 24), nib(q, 6));
        acc = mac(acc, v128.load32_splat(xw, 28), nib(q, 7));
      }
      flush(y + (<usize>j << 2), acc, Sg + (<usize>j << 1));
    }
  }
}

export function q4_x16(x: usize, W: usize, y: usize, IN: i32, OUT: i32): void {
  const S = W + (<usize>((IN / 8) * OUT) << 2);
  memory.fill(y, 0, <usize>OUT << 2);
  for (let g = 0; g < IN / 32; g++) {
    const xg = x + (<usize>(32 * g) << 2);
    const Wg = W + (<usize>(4 * g * OUT) << 2);
    const Sg = S + (<usize>(g * OUT) << 1);
    for (let j = 0; j < OUT; j += 16) {
      let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
      for (let w = 0; w < 4; w++) {
        const p = Wg + (<usize>(w * OUT + j) << 2);
        const q0 = v128.load(p, 0), q1 = v128.load(p, 16), q2 = v128.load(p, 32), q3 = v128.load(p, 48);
        const xw = xg + (<usize>(8 * w) << 2);
        let xs = v128.load32_splat(xw, 0);
        a0 = mac(a0, xs, nib(q0, 0)); a1 = mac(a1, xs, nib(q1, 0)); a2 = mac(a2, xs, nib(q2, 0)); a3 = mac(a3, xs, nib(q3, 0));
        xs = v128.load32_splat(xw, 4);
        a0 = mac(a0, xs, nib(q0, 1)); a1 = mac(a1, xs, nib(q1, 1)); a2 = mac(a2, xs, nib(q2, 1)); a3 = mac(a3, xs, nib(q3, 1));
        xs = v128.load32_splat(xw, 8);
        a0 = mac(a0, xs, nib(q0, 2)); a1 = mac(a1, xs, nib(q1, 2)); a2 = mac(a2, xs, nib(q2, 2)); a3 = mac(a3, xs, nib(q3, 2));
        xs = v128.load32_splat(xw, 12);
        a0 = mac(a0, xs, nib(q0, 3)); a1 = mac(a1, xs, nib(q1, 3)); a2 = mac(a2, xs, nib(q2, 3)); a3 = mac(a3, xs, nib(q3, 3));
        xs = v128.load32_splat(xw, 16);
        a0 = mac(a0, xs, nib(q0, 4)); a1 = mac(a1, xs, nib(q1, 4)); a2 = mac(a2, xs, nib(q2, 4)); a3 = mac(a3, xs, nib(q3, 4));
        xs = v128.load32_splat(xw, 20);
        a0 = mac(a0, xs, nib(q0, 5)); a1 = mac(a1, xs, nib(q1, 5)); a2 = mac(a2, xs, nib(q2, 5)); a3 = mac(a3, xs, nib(q3, 5));
        xs = v128.load32_splat(xw, 24);
        a0 = mac(a0, xs, nib(q0, 6)); a1 = mac(a1, xs, nib(q1, 6)); a2 = mac(a2, xs, nib(q2, 6)); a3 = mac(a3, xs, nib(q3, 6));
        xs = v128.load32_splat(xw, 28);
        a0 = mac(a0, xs, nib(q0, 7)); a1 = mac(a1, xs, nib(q1, 7)); a2 = mac(a2, xs, nib(q2, 7)); a3 = mac(a3, xs, nib(q3, 7));
      }
      const yj = y + (<usize>j << 2), sj = Sg + (<usize>j << 1);
      flush(yj, a0, sj);
      flush(yj + 16, a1, sj + 8);
      flush(yj + 32, a2, sj + 16);
      flush(yj + 48, a3, sj + 24);
    }
  }
}

// ---------------------------------------------------------------- q8
export function q8_x4(x: usize, W: usize, y: usize, IN: i32, OUT: i32): void {
  const S = W + (<usize>((IN / 4) * OUT) << 2);
  memory.fill(y, 0, <usize>OUT << 2);
  for (let g = 0; g < IN / 32; g++) {
    const xg = x + (<usize>(32 * g) << 2);
    const Wg = W + (<usize>(8 * g * OUT) << 2);
    const Sg = S + (<usize>(g * OUT) << 1);
    for (let j = 0; j < OUT; j += 4) {
      let acc = f32x4.splat(0);
      for (let w = 0; w < 8; w++) {
        const q = v128.load(Wg + (<usize>(w * OUT + j) << 2));
        const xw = xg + (<usize>(4 * w) << 2);
        acc = mac(acc, v128.load32_splat(xw, 0), byt(q, 0));
        acc = mac(acc, v128.load32_splat(xw, 4), byt(q, 1));
        acc = mac(acc, v128.load32_splat(xw, 8), byt(q, 2));
        acc = mac(acc, v128.load32_splat(xw, 12), byt(q, 3));
      }
      flush(y + (<usize>j << 2), acc, Sg + (<usize>j << 1));
    }
  }
}

export function q8_x16(x: usize, W: usize, y: usize, IN: i32, OUT: i32): void {
  const S = W + (<usize>((IN / 4) * OUT) << 2);
  memory.fill(y, 0, <usize>OUT << 2);
  for (let g = 0; g < IN / 32; g++) {
    const xg = x + (<usize>(32 * g) << 2);
    const Wg = W + (<usize>(8 * g * OUT) << 2);
    const Sg = S + (<usize>(g * OUT) << 1);
    for (let j = 0; j < OUT; j += 16) {
      let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
      for (let w = 0; w < 8; w++) {
        const p = Wg + (<usize>(w * OUT + j) << 2);
        const q0 = v128.load(p, 0), q1 = v128.load(p, 16), q2 = v128.load(p, 32), q3 = v128.load(p, 48);
        const xw = xg + (<usize>(4 * w) << 2);
        let xs = v128.load32_splat(xw, 0);
        a0 = mac(a0, xs, byt(q0, 0)); a1 = mac(a1, xs, byt(q1, 0)); a2 = mac(a2, xs, byt(q2, 0)); a3 = mac(a3, xs, byt(q3, 0));
        xs = v128.load32_splat(xw, 4);
        a0 = mac(a0, xs, byt(q0, 1)); a1 = mac(a1, xs, byt(q1, 1)); a2 = mac(a2, xs, byt(q2, 1)); a3 = mac(a3, xs, byt(q3, 1));
        xs = v128.load32_splat(xw, 8);
        a0 = mac(a0, xs, byt(q0, 2)); a1 = mac(a1, xs, byt(q1, 2)); a2 = mac(a2, xs, byt(q2, 2)); a3 = mac(a3, xs, byt(q3, 2));
        xs = v128.load32_splat(xw, 12);
        a0 = mac(a0, xs, byt(q0, 3)); a1 = mac(a1, xs, byt(q1, 3)); a2 = mac(a2, xs, byt(q2, 3)); a3 = mac(a3, xs, byt(q3, 3));
      }
      const yj = y + (<usize>j << 2), sj = Sg + (<usize>j << 1);
      flush(yj, a0, sj);
      flush(yj + 16, a1, sj + 8);
      flush(yj + 32, a2, sj + 16);
      flush(yj + 48, a3, sj + 24);
    }
  }
}

// ---------------------------------------------------------------- f32
// Rows in steps of 4 (4 row streams, y loaded/stored once per 4 rows); adds still go in order of i.
// @ts-ignore: decorator
@inline function row4(a: v128, x0: v128, x1: v128, x2: v128, x3: v128, r0: usize, r1: usize, r2: usize, r3: usize): v128 {
  a = f32x4.add(a, f32x4.mul(x0, v128.load(r0)));
  a = f32x4.add(a, f32x4.mul(x1, v128.load(r1)));
  a = f32x4.add(a, f32x4.mul(x2, v128.load(r2)));
  a = f32x4.add(a, f32x4.mul(x3, v128.load(r3)));
  return a;
}

export function f32_x4(x: usize, W: usize, y: usize, IN: i32, OUT: i32): void {
  memory.fill(y, 0, <usize>OUT << 2);
  const rs = <usize>OUT << 2;
  for (let i = 0; i < IN; i += 4) {
    const xi = x + (<usize>i << 2);
    const x0 = v128.load32_splat(xi, 0), x1 = v128.load32_splat(xi, 4);
    const x2 = v128.load32_splat(xi, 8), x3 = v128.load32_splat(xi, 12);
    const r0 = W + <usize>i * rs, r1 = r0 + rs, r2 = r1 + rs, r3 = r2 + rs;
    for (let j = 0; j < OUT; j += 4) {
      const o = <usize>j << 2;
      v128.store(y + o, row4(v128.load(y + o), x0, x1, x2, x3, r0 + o, r1 + o, r2 + o, r3 + o));
    }
  }
}

export function f32_x16(x: usize, W: usize, y: usize, IN: i32, OUT: i32): void {
  memory.fill(y, 0, <usize>OUT << 2);
  const rs = <usize>OUT << 2;
  for (let i = 0; i < IN; i += 4) {
    const xi = x + (<usize>i << 2);
    const x0 = v128.load32_splat(xi, 0), x1 = v128.load32_splat(xi, 4);
    const x2 = v128.load32_splat(xi, 8), x3 = v128.load32_splat(xi, 12);
    const r0 = W + <usize>i * rs, r1 = r0 + rs, r2 = r1 + rs, r3 = r2 + rs;
    for (let j = 0; j < OUT; j += 16) {
      const o = <usize>j << 2;
      const yp = y + o;
      let a0 = v128.load(yp, 0), a1 = v128.load(yp, 16), a2 = v128.load(yp, 32), a3 = v128.load(yp, 48);
      a0 = row4(a0, x0, x1, x2, x3, r0 + o, r1 + o, r2 + o, r3 + o);
      a1 = row4(a1, x0, x1, x2, x3, r0 + o + 16, r1 + o + 16, r2 + o + 16, r3 + o + 16);
      a2 = row4(a2, x0, x1, x2, x3, r0 + o + 32, r1 + o + 32, r2 + o + 32, r3 + o + 32);
      a3 = row4(a3, x0, x1, x2, x3, r0 + o + 48, r1 + o + 48, r2 + o + 48, r3 + o + 48);
      v128.store(yp, a0, 0);
      v128.store(yp, a1, 16);
      v128.store(yp, a2, 32);
      v128.store(yp, a3, 48);
    }
  }
}
