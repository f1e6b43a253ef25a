import { quantGeometry, type QuantType } from '../quant/layout.ts';
import type { StorageType } from '../storage-types.ts';

// The WGSL that reads one weight tensor in its storage type: what `#weights NAME BINDING` in a
// shader expands to (src/gpu/wgsl.ts). Kernels see logical f32 elements whatever the storage:
// 16-bit weights stay packed two per u32 and are unpacked here, so adapters without shader-f16
// read them too; q8 / q4 (src/quant/layout.ts) are dequantised with every index a literal.

/**
 * Whether a kernel reads `type` weights in runs of 8 inputs (NAME_run8 / NAME_col8): for q8 and
 * q4, whose element accessors would read each packed word and scale once per element or pair.
 * Quantised matrices always have IN % 32 == 0.
 */
export function runsOf8(type: StorageType, inDim: number): boolean {
  return (type === 'q8' || type === 'q4') && inDim % 8 === 0;
}

/** Whether any of a variant's weight bindings is f16 (which shader-f16 lets it read natively). */
export function hasF16Weights(weights: Record<string, WeightSpec> = {}): boolean {
  return Object.values(weights).some((w) => (typeof w === 'string' ? w : w.type) === 'f16');
}

/**
 * A weight binding's storage type with the tensor's logical (Hugging Face) shape: [R, IN] for an
 * nn.Linear weight or the embedding, [E, IN, OUT] for stacked experts. q8 / q4 need it (the
 * accessors map logical indices into the quantised layout); other types ignore it.
 */
export interface WeightGeometry {
  type: StorageType;
  shape: readonly number[];
}

export type WeightSpec = StorageType | WeightGeometry;

/** A weight binding spec for a kernel variant: the plain type, plus the shape when q8 / q4 need it. */
export function weightSpec(type: StorageType, shape: readonly number[]): WeightSpec {
  return type === 'q8' || type === 'q4' ? { type, shape: [...shape] } : type;
}

/**
 * Run accessors, declared for every type so kernels compile whichever branch they take:
 * `NAME_run8(i)`: elements i .. i + 7 (i a multiple of 8, one row of a 2-D tensor), and
 * `NAME_col8(i)`: elements i, i + OUT, .., i + 7·OUT (the same column of 8 consecutive inputs of
 * a 3-D [E, IN, OUT] tensor, input row a multiple of 8), as two vec4f. For q8 / q4 they read
 * each packed word and scale once for its 4 or 8 values, where the element accessors read them
 * once per element or pair; the kernels use them for quantised weights (RUN8).
 */
function genericRuns(name: string, shape: readonly number[] | undefined): string {
  const out = shape?.length === 3 ? shape[2] : 1;
  return `fn ${name}_run8(i: u32) -> array<vec4f, 2> {
  return array<vec4f, 2>(vec4f(${name}_at2(i), ${name}_at2(i + 2u)), vec4f(${name}_at2(i + 4u), ${name}_at2(i + 6u)));
}
fn ${name}_col8(i: u32) -> array<vec4f, 2> {
  let o = ${out}u;
  return array<vec4f, 2>(vec4f(${name}_at(i), ${name}_at(i + o), ${name}_at(i + 2u * o), ${name}_at(i + 3u * o)),
    vec4f(${name}_at(i + 4u * o), ${name}_at(i + 5u * o), ${name}_at(i + 6u * o), ${name}_at(i + 7u * o)));
}`;
}

/** The WGSL of `#weights NAME BINDING`: the binding, its element accessors and its run accessors. */
export function weightDecl(name: string, binding: string, spec: WeightSpec, nativeF16: boolean): string {
  const type = typeof spec === 'string' ? spec : spec.type;
  const shape = typeof spec === 'string' ? undefined : spec.shape;
  if (type === 'q8' || type === 'q4') return elementDecl(name, binding, spec, nativeF16);
  return `${elementDecl(name, binding, spec, nativeF16)}\n${genericRuns(name, shape)}`;
}

/**
 * The binding and accessors for one weight tensor: `NAME_at(i) -> f32` (element i, the flat
 * row-major index in the tensor's logical shape) and `NAME_at2(i) -> vec2f` (elements i and
 * i + 1, i even), which reads 16-bit weights as one packed word instead of loading and unpacking
 * the same word twice. For q types, i + 1 must be in the same row of a 2-D tensor (true when IN
 * is even) and the neighbouring column of the same input of a 3-D one (true when OUT is even).
 */
function elementDecl(name: string, binding: string, spec: WeightSpec, nativeF16: boolean): string {
  const type = typeof spec === 'string' ? spec : spec.type;
  const decl = (elem: string) => `@group(0) @binding(${binding}) var<storage, read> ${name}: array<${elem}>;`;
  switch (type) {
    case 'f32':
      return `${decl('f32')}\nfn ${name}_at(i: u32) -> f32 { return ${name}[i]; }
fn ${name}_at2(i: u32) -> vec2f { return vec2f(${name}[i], ${name}[i + 1u]); }`;
    case 'bf16':
      // bf16 is the upper half of an f32: shift the low half up, or mask the high half.
      return `${decl('u32')}\nfn ${name}_at(i: u32) -> f32 {
  let word = ${name}[i >> 1u];
  return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
}
fn ${name}_at2(i: u32) -> vec2f {
  let word = ${name}[i >> 1u];
  return vec2f(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}`;
    case 'f16':
      if (nativeF16) {
        // shader-f16: the same bytes read as f16 pairs, converted to f32 for f32 arithmetic (the
        // products stay exact, so results match the unpacking path bit for bit).
        return `${decl('vec2<f16>')}\nfn ${name}_at(i: u32) -> f32 { return f32(${name}[i >> 1u][i & 1u]); }
fn ${name}_at2(i: u32) -> vec2f { return vec2f(${name}[i >> 1u]); }`;
      }
      return `${decl('u32')}\nfn ${name}_at(i: u32) -> f32 { return unpack2x16float(${name}[i >> 1u])[i & 1u]; }
fn ${name}_at2(i: u32) -> vec2f { return unpack2x16float(${name}[i >> 1u]); }`;
    case 'q8':
    case 'q4':
      if (typeof spec === 'string') throw new Error(`${type} weights "${name}" need the tensor's shape: pass weightSpec(type, shape)`);
      return decl('u32') + '\n' + quantAccessors(name, type, spec.shape);
  }
}

/**
 * Accessors of a q8 / q4 tensor (src/quant/layout.ts). Every number is a literal, so divisions
 * by IN and OUT are by compile-time constants (shifts for powers of two).
 */
function quantAccessors(name: string, type: QuantType, shape: readonly number[]): string {
  const g = quantGeometry(shape, type);
  const total = g.blocks * g.blockElements;
  if (total > 2 ** 32 || g.blocks * g.blockWords > 0x3fffffff) {
    throw new Error(`${type} weights "${name}" [${shape}] are too large to index with u32`);
  }
  const logPer = Math.log2(g.per);
  const shift = 32 - g.bits;
  const u = (n: number) => `${n}u`;
  // Values 4m .. 4m + 3 of a word, for the run accessors: q4 words hold two such quads, q8 one.
  const quad = (word: string, m: number) => {
    const sh = [0, 1, 2, 3].map((k) => u(shift - g.bits * (4 * m + k))).join(', ');
    return `vec4f(bitcast<vec4i>(vec4u(${word}) << vec4u(${sh})) >> vec4u(${u(shift)}))`;
  };
  // Eight values from the word(s) at word index `w` (q4: one word; q8: words w, w + step).
  const eight = (w: string, step: string) =>
    g.per === 8
      ? `let word = ${name}[${w}];\n  let q = array<vec4f, 2>(${quad('word', 0)}, ${quad('word', 1)});`
      : `let q = array<vec4f, 2>(${quad(`${name}[(${w})]`, 0)}, ${quad(`${name}[(${w}) + ${step}]`, 0)});`;
  // Value k of a word, sign-extended: shift it to the top, then arithmetic shift right.
  const common = `fn ${name}_q(word: u32, k: u32) -> f32 { return f32(bitcast<i32>(word << (${u(shift)} - ${u(g.bits)} * k)) >> ${u(shift)}); }
fn ${name}_q2(word: u32, k: u32) -> vec2f { return vec2f(${name}_q(word, k), ${name}_q(word, k + 1u)); }`;
  if (shape.length === 2) {
    // One block, rows of IN: element idx is value idx % P of word idx / P, and its scale is
    // scale idx / 32 (IN is a multiple of 32, so rows never share a word or a group).
    const sbase = g.wordsPerBlock;
    // A run of 8 (i a multiple of 8) is one q4 word or two q8 words, under one scale (8 | 32).
    return `${common}
fn ${name}_scale(h: u32) -> f32 { return unpack2x16float(${name}[${u(sbase)} + (h >> 1u)])[h & 1u]; }
fn ${name}_at(i: u32) -> f32 { return ${name}_q(${name}[i >> ${u(logPer)}], i & ${u(g.per - 1)}) * ${name}_scale(i >> 5u); }
fn ${name}_at2(i: u32) -> vec2f { return ${name}_q2(${name}[i >> ${u(logPer)}], i & ${u(g.per - 1)}) * ${name}_scale(i >> 5u); }
fn ${name}_run8(i: u32) -> array<vec4f, 2> {
  ${eight(`i >> ${u(logPer)}`, '1u')}
  let s = ${name}_scale(i >> 5u);
  return array<vec4f, 2>(q[0] * s, q[1] * s);
}
fn ${name}_col8(i: u32) -> array<vec4f, 2> { return ${name}_run8(i); }`;
  }
  // [E, IN, OUT]: i = (e·IN + r)·OUT + j; block e starts at word e·blockWords, holds words
  // [IN/P, OUT] then scales [IN/32, OUT].
  const IN = g.inDim;
  const OUT = g.cols;
  // Where flat element i lies: its block's first word, its input row r in the expert, its column j.
  const locate = `fn ${name}_locate(i: u32) -> vec3u {
  let row = i / ${u(OUT)};
  let j = i - row * ${u(OUT)};
  let e = row / ${u(IN)};
  return vec3u(e * ${u(g.blockWords)}, row - e * ${u(IN)}, j);
}
// The scale of input row r, column j of the block at base.
fn ${name}_scale3(base: u32, r: u32, j: u32) -> f32 {
  let h = (r >> 5u) * ${u(OUT)} + j;
  return unpack2x16float(${name}[base + ${u(g.wordsPerBlock)} + (h >> 1u)])[h & 1u];
}`;
  const at2 =
    OUT % 2 === 0
      ? `fn ${name}_at2(i: u32) -> vec2f {
  let p = ${name}_locate(i);
  let w = p.x + (p.y >> ${u(logPer)}) * ${u(OUT)} + p.z;
  let k = p.y & ${u(g.per - 1)};
  // j is even and the block's scale count is even (OUT is): scales j, j + 1 share a word.
  let s = unpack2x16float(${name}[p.x + ${u(g.wordsPerBlock)} + (((p.y >> 5u) * ${u(OUT)} + p.z) >> 1u)]);
  return vec2f(${name}_q(${name}[w], k), ${name}_q(${name}[w + 1u], k)) * s;
}`
      : `fn ${name}_at2(i: u32) -> vec2f { return vec2f(${name}_at(i), ${name}_at(i + 1u)); }`;
  // col8: input rows r .. r + 7 of column j (r a multiple of 8) are one q4 word or two q8 words
  // OUT apart, under one scale.
  const col8 = `fn ${name}_col8(i: u32) -> array<vec4f, 2> {
  let p = ${name}_locate(i);
  let w = p.x + (p.y >> ${u(logPer)}) * ${u(OUT)} + p.z;
  ${eight('w', u(OUT))}
  let s = ${name}_scale3(p.x, p.y, p.z);
  return array<vec4f, 2>(q[0] * s, q[1] * s);
}
fn ${name}_run8(i: u32) -> array<vec4f, 2> {
  return array<vec4f, 2>(vec4f(${name}_at2(i), ${name}_at2(i + 2u)), vec4f(${name}_at2(i + 4u), ${name}_at2(i + 6u)));
}`;
  return `${common}
${locate}
${col8}
fn ${name}_at(i: u32) -> f32 {
  let p = ${name}_locate(i);
  return ${name}_q(${name}[p.x + (p.y >> ${u(logPer)}) * ${u(OUT)} + p.z], p.y & ${u(g.per - 1)}) * ${name}_scale3(p.x, p.y, p.z);
}
${at2}`;
}
