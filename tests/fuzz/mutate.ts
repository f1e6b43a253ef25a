// Seeded mutations of a reader's input, as an attacker or a damaged download would make them:
// raw byte damage (bit flips, overwritten bytes, truncation, cut or repeated ranges, length and
// offset fields set to edge values) and, for JSON, structural damage (values swapped for hostile
// ones, deep nesting, names that reach outside the folder).

/** mulberry32: small, fast, and the same sequence on every machine. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Random = () => number;
export const int = (r: Random, n: number) => Math.floor(r() * n);
export const pick = <T>(r: Random, items: readonly T[]): T => items[int(r, items.length)];

/** Values a length, count or offset field should be tried with. */
const EDGE_U32 = [0, 1, 2, 3, 4, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

/** Where damage tends to matter: the first and last kilobytes hold the headers and directories. */
function position(r: Random, length: number): number {
  if (length === 0) return 0;
  const u = r();
  if (u < 0.35) return int(r, Math.min(length, 1024));
  if (u < 0.7) return Math.max(0, length - 1 - int(r, Math.min(length, 1024)));
  return int(r, length);
}

/** One to a few byte-level mutations of `input` (never modified in place). */
export function mutateBytes(r: Random, input: Uint8Array): Uint8Array {
  let out: Uint8Array = input.slice();
  const rounds = 1 + int(r, 3);
  for (let k = 0; k < rounds; k++) {
    const n = out.length;
    switch (int(r, 8)) {
      case 0: // bit flips
        for (let i = 0, m = 1 + int(r, 8); i < m && n > 0; i++) out[position(r, n)] ^= 1 << int(r, 8);
        break;
      case 1: // random bytes
        for (let i = 0, m = 1 + int(r, 16); i < m && n > 0; i++) out[position(r, n)] = int(r, 256);
        break;
      case 2: // truncation
        out = out.slice(0, int(r, n + 1));
        break;
      case 3: {
        // a range cut out
        const a = position(r, n);
        const b = Math.min(n, a + 1 + int(r, 4096));
        out = concat(out.subarray(0, a), out.subarray(b));
        break;
      }
      case 4: {
        // a range repeated
        const a = position(r, n);
        const b = Math.min(n, a + 1 + int(r, 256));
        out = concat(out.subarray(0, b), out.subarray(a, b), out.subarray(b));
        break;
      }
      case 5: {
        // a 32-bit field set to an edge value
        if (n < 4) break;
        const at = Math.min(position(r, n), n - 4);
        new DataView(out.buffer, out.byteOffset, n).setUint32(at, pick(r, EDGE_U32), true);
        break;
      }
      case 6: {
        // a 64-bit field set to a huge value
        if (n < 8) break;
        const at = Math.min(position(r, n), n - 8);
        const view = new DataView(out.buffer, out.byteOffset, n);
        view.setUint32(at, pick(r, EDGE_U32), true);
        view.setUint32(at + 4, pick(r, [0, 1, 0x1fffff, 0x200000, 0xffffffff]), true);
        break;
      }
      default: {
        // random bytes inserted
        const at = position(r, n);
        const extra = Uint8Array.from({ length: 1 + int(r, 64) }, () => int(r, 256));
        out = concat(out.subarray(0, at), extra, out.subarray(at));
      }
    }
  }
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** File names a hostile manifest or index.json would try (issue 14's class 6 and 7). */
export const HOSTILE_NAMES = [
  '../secret.bin',
  '..',
  '.',
  '',
  '/etc/passwd',
  'C:\\Windows\\win.ini',
  'a/b.bin',
  'a\\b.bin',
  'http:evil.example',
  'https://evil.example/x.bin',
  '//evil.example/x',
  'file:///etc/passwd',
  'javascript:alert(1)',
  'blob:x',
  'data:,x',
  '%2e%2e',
  '.%2e',
  '%2e%2e%2fsecret',
  'shard\u0000.bin',
  'x'.repeat(300),
  'ｓｈａｒｄ.bin',
  ' shard.bin',
];

/** Values that a field of any type could be swapped for. */
function hostileValue(r: Random, depth = 0): unknown {
  switch (int(r, 16)) {
    case 0:
      return null;
    case 1:
      return pick(r, [-1, 0, 0.5, 1e9, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e300, -0, Number.MAX_SAFE_INTEGER]);
    case 2:
      return pick(r, HOSTILE_NAMES);
    case 3:
      return true;
    case 4:
      return [];
    case 5:
      return {};
    case 6:
      return depth < 2 ? [hostileValue(r, depth + 1), hostileValue(r, depth + 1)] : 0;
    case 7:
      return 'x'.repeat(int(r, 100_000));
    case 8:
      return Array.from({ length: int(r, 5000) }, () => int(r, 1000));
    case 9:
      return { __proto__: 1, constructor: 2 };
    default:
      return int(r, 3) === 0 ? -int(r, 1000) : int(r, 1 << int(r, 31));
  }
}

/** A JSON text nested `depth` levels deep (arrays or objects). */
export function deepJson(depth: number, object: boolean): string {
  return object ? '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) : '['.repeat(depth) + ']'.repeat(depth);
}

/** Every value position in a JSON value, as paths. */
function paths(value: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = [], limit = 20000): (string | number)[][] {
  if (out.length >= limit) return out;
  out.push(prefix);
  if (Array.isArray(value))
    value.forEach((v, i) => {
      paths(v, [...prefix, i], out, limit);
    });
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) paths(v, [...prefix, k], out, limit);
  return out;
}

/**
 * A structural mutation of a JSON document: a value replaced (by a hostile one, or by one taken
 * from elsewhere in the document), a key deleted or renamed, or a deep nest planted. Returns text.
 */
export function mutateJson(r: Random, doc: unknown): string {
  const copy = structuredClone(doc) as Record<string, unknown>;
  const all = paths(copy);
  const target = pick(r, all);
  const parentOf = (path: (string | number)[]) => path.slice(0, -1).reduce<any>((o, k) => o[k], copy);
  const deep = int(r, 12) === 0;
  const replacement = deep ? `__DEEP__` : int(r, 4) === 0 ? structuredClone(pick(r, all).reduce<any>((o, k) => o[k], copy)) : hostileValue(r);
  if (target.length === 0) {
    return deep ? deepJson(10_000 + int(r, 200_000), r() < 0.5) : JSON.stringify(replacement);
  }
  const parent = parentOf(target);
  const key = target[target.length - 1];
  const op = int(r, 8);
  if (op === 0 && !Array.isArray(parent)) delete parent[key];
  else if (op === 1 && !Array.isArray(parent)) {
    parent[pick(r, HOSTILE_NAMES)] = parent[key];
    delete parent[key];
  } else parent[key] = replacement;
  const text = JSON.stringify(copy);
  return deep ? text.replace('"__DEEP__"', deepJson(100 + int(r, 100_000), r() < 0.5)) : text;
}
