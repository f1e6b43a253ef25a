import { shaderSource } from './shader-sources.ts';

/**
 * How weights of one tensor are stored in its GPU buffer. Compute is always f32; 16-bit weights
 * stay packed two per u32 and are unpacked in the shader, so adapters without shader-f16 can
 * read them. (q8 and q4 join this list with the shard format.)
 */
export type WeightType = 'f32' | 'bf16' | 'f16';

/** Compile-time numbers of a kernel variant: u32 by default, {f32: x} for floats. */
export type Define = number | boolean | { f32: number };

export interface Variant {
  /** Constants prepended as `const NAME: u32 = ...;` (the "define step"). */
  defines?: Record<string, Define>;
  /** Storage type of each weight binding declared with `#weights NAME BINDING`. */
  weights?: Record<string, WeightType>;
}

function constLine(name: string, value: Define): string {
  if (typeof value === 'boolean') return `const ${name}: bool = ${value};`;
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new Error(`WGSL define ${name}=${value} is not a u32; pass {f32: value} for floats`);
    }
    return `const ${name}: u32 = ${value}u;`;
  }
  const s = Number.isInteger(value.f32) ? `${value.f32}.0` : value.f32.toPrecision(9);
  return `const ${name}: f32 = ${s};`;
}

/**
 * The binding and accessors for one weight tensor: `NAME_at(i) -> f32` (element i) and
 * `NAME_at2(i) -> vec2f` (elements i and i + 1, i even), which reads 16-bit weights as one
 * packed word instead of loading and unpacking the same word twice.
 */
function weightDecl(name: string, binding: string, type: WeightType): string {
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
      return `${decl('u32')}\nfn ${name}_at(i: u32) -> f32 { return unpack2x16float(${name}[i >> 1u])[i & 1u]; }
fn ${name}_at2(i: u32) -> vec2f { return unpack2x16float(${name}[i >> 1u]); }`;
  }
}

/** Whether `#if NAME` / `#if !NAME` keeps its lines: NAME must be a boolean or u32 define. */
function condition(file: string, expr: string, defines: Record<string, Define>): boolean {
  const m = /^(!?)(\w+)$/.exec(expr);
  if (!m) throw new Error(`${file}: #if takes NAME or !NAME, got "${expr}"`);
  const value = defines[m[2]];
  if (value === undefined) throw new Error(`${file}: #if ${m[2]}: the variant has no such define`);
  if (typeof value === 'object') throw new Error(`${file}: #if ${m[2]}: an f32 define is not a condition`);
  return Boolean(value) !== (m[1] === '!');
}

/**
 * Turns a shader file into WGSL for one variant: `#include "lib/x.wgsl"` pastes a shared
 * fragment (once), `#weights NAME BINDING` declares a weight binding in the variant's storage
 * type, `#if NAME` / `#if !NAME` ... `#endif` keep lines only when the boolean or u32 define NAME
 * is true / non-zero (or false / zero), and the variant's defines are prepended as constants.
 * `#if` exists for what a `const` branch cannot do: leave a binding out of the 'auto' layout, which
 * keeps every binding the code mentions, even in dead branches.
 */
export function preprocess(name: string, variant: Variant = {}): string {
  const included = new Set<string>();
  const defines = variant.defines ?? {};
  const expand = (file: string): string => {
    const active: boolean[] = []; // one entry per open #if: whether its lines are kept
    const out = shaderSource(file)
      .split('\n')
      .map((line) => {
        const cond = /^\s*#if\s+(\S+)\s*$/.exec(line);
        if (cond) {
          active.push(active.every(Boolean) && condition(file, cond[1], defines));
          return '';
        }
        if (/^\s*#endif\s*$/.test(line)) {
          if (!active.length) throw new Error(`${file}: #endif without #if`);
          active.pop();
          return '';
        }
        if (!active.every(Boolean)) return '';
        const inc = /^\s*#include\s+"([^"]+)"\s*$/.exec(line);
        if (inc) {
          if (included.has(inc[1])) return '';
          included.add(inc[1]);
          return expand(inc[1]);
        }
        const w = /^\s*#weights\s+(\w+)\s+(\d+)\s*$/.exec(line);
        if (w) {
          const type = variant.weights?.[w[1]];
          if (!type) throw new Error(`${file}: variant gives no storage type for weights "${w[1]}"`);
          return weightDecl(w[1], w[2], type);
        }
        if (/^\s*#/.test(line)) throw new Error(`${file}: unknown directive: ${line.trim()}`);
        return line;
      })
      .join('\n');
    if (active.length) throw new Error(`${file}: #if without #endif`);
    return out;
  };
  const consts = Object.entries(defines).map(([k, v]) => constLine(k, v));
  return `// ${name} ${JSON.stringify(variant)}\n${consts.join('\n')}\n${expand(name)}`;
}
