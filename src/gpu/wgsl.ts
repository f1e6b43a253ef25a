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

/** The binding and an element accessor `NAME_at(i) -> f32` for one weight tensor. */
function weightDecl(name: string, binding: string, type: WeightType): string {
  const decl = (elem: string) => `@group(0) @binding(${binding}) var<storage, read> ${name}: array<${elem}>;`;
  switch (type) {
    case 'f32':
      return `${decl('f32')}\nfn ${name}_at(i: u32) -> f32 { return ${name}[i]; }`;
    case 'bf16':
      // bf16 is the upper half of an f32: shift the low half up, or mask the high half.
      return `${decl('u32')}\nfn ${name}_at(i: u32) -> f32 {
  let word = ${name}[i >> 1u];
  return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
}`;
    case 'f16':
      return `${decl('u32')}\nfn ${name}_at(i: u32) -> f32 { return unpack2x16float(${name}[i >> 1u])[i & 1u]; }`;
  }
}

/**
 * Turns a shader file into WGSL for one variant: `#include "lib/x.wgsl"` pastes a shared
 * fragment (once), `#weights NAME BINDING` declares a weight binding in the variant's storage
 * type, and the variant's defines are prepended as constants.
 */
export function preprocess(name: string, variant: Variant = {}): string {
  const included = new Set<string>();
  const expand = (file: string): string =>
    shaderSource(file)
      .split('\n')
      .map((line) => {
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
  const consts = Object.entries(variant.defines ?? {}).map(([k, v]) => constLine(k, v));
  return `// ${name} ${JSON.stringify(variant)}\n${consts.join('\n')}\n${expand(name)}`;
}
