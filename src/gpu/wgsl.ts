import { type WeightSpec, weightDecl } from './weight-accessors.ts';
import { shaderSource } from './shader-sources.ts';

// The WGSL preprocessor: a shader file plus a kernel variant (its constants, its weights' storage
// types, its extensions) → the WGSL of that variant.

/** Compile-time numbers of a kernel variant: u32 by default, {f32: x} for floats. */
export type Define = number | boolean | { f32: number };

export interface Variant {
  /** Constants prepended as `const NAME: u32 = ...;` (the "define step"). */
  defines?: Record<string, Define>;
  /**
   * Storage of each weight binding declared with `#weights NAME BINDING`: its type, with the
   * tensor's shape for q8 / q4 (`weightSpec` builds either).
   */
  weights?: Record<string, WeightSpec>;
  /**
   * WGSL extensions the variant uses (`enable NAME;`), e.g. 'subgroups'. They are emitted before
   * the defines: WGSL wants directives ahead of every declaration. The device must have the
   * matching feature.
   */
  enables?: string[];
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
  // A variant that enables f16 reads its f16 weights natively (PipelineCache decides).
  const nativeF16 = variant.enables?.includes('f16') ?? false;
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
          const spec = variant.weights?.[w[1]];
          if (!spec) throw new Error(`${file}: variant gives no storage type for weights "${w[1]}"`);
          return weightDecl(w[1], w[2], spec, nativeF16);
        }
        if (/^\s*#/.test(line)) throw new Error(`${file}: unknown directive: ${line.trim()}`);
        return line;
      })
      .join('\n');
    if (active.length) throw new Error(`${file}: #if without #endif`);
    return out;
  };
  const enables = (variant.enables ?? []).map((e) => {
    if (!/^\w+$/.test(e)) throw new Error(`${name}: bad WGSL extension name "${e}"`);
    return `enable ${e};\n`;
  });
  const consts = Object.entries(defines).map(([k, v]) => constLine(k, v));
  return `// ${name} ${JSON.stringify(variant)}\n${enables.join('')}${consts.join('\n')}\n${expand(name)}`;
}
