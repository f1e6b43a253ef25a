import type { ByteSource } from './checkpoint/types.ts';
import { ModelFormatError } from './errors.ts';

// What every reader of a model file refuses, whatever the file claims (docs/format.md, "Limits").
// Each bound sits far above what a real ModuleFormer needs and far below what would exhaust the
// stack, the memory or the time of a reader: a hostile file gets a ModelFormatError, never a
// RangeError, a hang or a gigabyte allocation.

export const LIMITS = {
  /** Nesting of any JSON file (config.json, *.index.json, manifest.json, safetensors headers). */
  jsonDepth: 64,
  /** config.json. A real one is about 1 KB. */
  configBytes: 1 << 20,
  /** model.safetensors.index.json / pytorch_model.bin.index.json, and manifest.json. */
  indexBytes: 64 << 20,
  /** tokenizer.json (GPT-NeoX's is 2 MB; the largest multilingual ones about 30 MB). */
  tokenizerBytes: 64 << 20,
  /** A safetensors header (the format's own reference reader stops at the same 100 MB). */
  safetensorsHeaderBytes: 100_000_000,
  /** A tensor's name (real ones are under 100 characters). */
  tensorNameLength: 1024,
  /** A file name inside a model folder: one path segment. */
  fileNameLength: 128,

  // pytorch_model.bin (src/checkpoint/zip.ts, torch-bin.ts, torch-pickle.ts). torch.save's
  // data.pkl spends about 150 bytes, 30 pushed values and 10 memo entries per tensor (measured on
  // the fixtures), and a real checkpoint file holds at most a few thousand tensors.
  /**
   * data.pkl, read whole into memory: 64 MiB is some 400 000 tensors at 150 bytes (long tensor
   * names take bytes but no values, so this bound is looser than pickleValues).
   */
  torchPickleBytes: 64 << 20,
  /**
   * Values the pickle pushes in all: 2 Mi is some 70 000 tensors. Each costs the reader at most
   * one object of under 100 bytes besides a string's own characters, so a hostile pickle cannot
   * make it hold more than about 200 MB on top of its own size (measured: 150 MB of dicts).
   */
  pickleValues: 1 << 21,
  /** Memo entries (BINPUT / LONG_BINPUT / MEMOIZE): 1 Mi is some 100 000 tensors. */
  pickleMemo: 1 << 20,
  /** Items of one list, tuple or dict, and values on the stack at once (a state dict has one entry per tensor). */
  pickleItems: 1 << 20,
  /** Nesting of pickled lists, tuples and dicts (a state dict's deepest, its `_metadata`, is 3). */
  pickleDepth: 64,
  /**
   * Bytes of one LONG1 / LONG4 integer. Sizes, strides and offsets fit in 8; decoding is
   * quadratic in the length, so a 300 KB integer would take seconds.
   */
  pickleLongBytes: 64,
  /** Entries of the zip: one per storage plus a few (torch.save writes ≤ 1 storage per tensor). */
  zipEntries: 1 << 18,
  /** The zip's central directory: about 100 bytes per entry. */
  zipCentralDirectoryBytes: 64 << 20,
  /** An expert pack's shards in all: a pack is held in memory whole while it is merged into its base. */
  packBytes: 1 << 30,
  /** Packs on one model at once. */
  packsPerModel: 16,
  /** A zip entry's name ("<archive>/data/<key>", under 100 bytes in a torch.save archive). */
  zipNameLength: 1024,
} as const;

/** Upper bounds on config.json's sizes: each at least 8× what any released MoLM uses. */
export const CONFIG_BOUNDS = {
  vocab_size: 1 << 20,
  n_embd: 1 << 15,
  n_layer: 1024,
  n_head: 1024,
  att_hidden: 1 << 17,
  ffd_hidden: 1 << 18,
  gating_size: 1 << 15,
  /** The engines' routers hold one probability per expert in a fixed array of 256. */
  n_att_experts: 256,
  n_mlp_experts: 256,
  /** The attention kernels keep the k chosen experts' accumulators in registers. */
  k_att: 8,
  k_mlp: 8,
  n_ctx: 1 << 20,
} as const satisfies Record<string, number>;

/** Parameters the config may imply in all: 2^36 (275 GB in f32, 34× MoLM-700M-8B). */
export const MAX_PARAMETERS = 2 ** 36;

/**
 * The first place where `text` nests JSON arrays or objects deeper than `maxDepth`, or -1.
 * A linear scan that skips strings, so it is safe on any text and runs before JSON.parse: a value
 * nested 100 000 deep parses, but printing or walking it later would overflow the stack.
 */
export function jsonDepthExcess(text: string, maxDepth: number = LIMITS.jsonDepth): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return i;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return -1;
}

export interface JsonFileLimits {
  /** Names the file in the error, e.g. "config.json" or a URL. */
  what: string;
  /** Bytes the file may have. */
  maxBytes: number;
  /** What the user can do, appended to every error ("re-download it"). */
  fix: string;
}

/**
 * Decodes and parses a JSON file within the limits: size, UTF-8, nesting depth. Throws a
 * ModelFormatError naming the file and the fix. Returns whatever value the JSON holds.
 */
export function parseJsonFile(bytes: Uint8Array | string, { what, maxBytes, fix }: JsonFileLimits): unknown {
  const size = typeof bytes === 'string' ? bytes.length : bytes.byteLength;
  if (size > maxBytes) {
    throw new ModelFormatError(`${what} is ${size} bytes, more than the ${maxBytes} such a file may have; ${fix}.`);
  }
  let text: string;
  try {
    text = typeof bytes === 'string' ? bytes : new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ModelFormatError(`${what} is not UTF-8 text; ${fix}.`);
  }
  const deep = jsonDepthExcess(text);
  if (deep >= 0) {
    throw new ModelFormatError(`${what} nests JSON more than ${LIMITS.jsonDepth} levels deep (at character ${deep}); ${fix}.`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFormatError(`${what} is not valid JSON (${describeText((e as Error).message, 120)}); ${fix}.`);
  }
}

/**
 * The whole of a file the limits bound (its size checked before a byte is read: a hostile
 * "config.json" of gigabytes is refused unread); the source is closed either way.
 */
export async function readBounded(source: ByteSource, limits: JsonFileLimits): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    if (source.size > limits.maxBytes) {
      throw new ModelFormatError(`${limits.what} is ${source.size} bytes, more than the ${limits.maxBytes} such a file may have; ${limits.fix}.`);
    }
    bytes = await source.read(0, source.size);
  } finally {
    await source.close?.();
  }
  return bytes;
}

/** A JSON file that must hold an object. */
export function parseJsonObject(bytes: Uint8Array | string, limits: JsonFileLimits): Record<string, unknown> {
  const json = parseJsonFile(bytes, limits);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ModelFormatError(`${limits.what} must hold a JSON object, not ${describeValue(json)}; ${limits.fix}.`);
  }
  return json as Record<string, unknown>;
}

function describeText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

/**
 * A value from an untrusted file, for an error message: short, and bounded whatever the value
 * (JSON.stringify of a deep or huge value would overflow the stack or flood the message).
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) {
    const flat = value.length <= 8 && value.every((v) => v === null || typeof v !== 'object');
    return flat ? describeText(JSON.stringify(value), 80) : `an array of ${value.length} item(s)`;
  }
  if (value !== null && typeof value === 'object') return 'an object';
  if (typeof value === 'string') return describeText(JSON.stringify(value), 80);
  return String(value);
}

const SAFE_FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/**
 * A file name from an untrusted file (a manifest, an index.json), accepted only as one path
 * segment of safe characters: letters, digits, `_`, `-` and `.` (not first), at most 128 long.
 * No separator, scheme, percent escape, NUL or `..`, so it names a file inside the model's folder
 * or URL and nothing else, on every file system and URL parser.
 */
export function isSafeFileName(name: unknown): name is string {
  return typeof name === 'string' && name.length <= LIMITS.fileNameLength && SAFE_FILE_NAME.test(name);
}

/** Throws a ModelFormatError unless `name` is a safe file name (isSafeFileName). */
export function checkFileName(name: unknown, what: string, fix: string): string {
  if (!isSafeFileName(name)) {
    throw new ModelFormatError(
      `${what}: ${describeValue(name)} is not a file name molm-web will open; a name must be one path segment of letters, digits, "_", "-" and "." (not first), at most ${LIMITS.fileNameLength} characters; ${fix}.`,
    );
  }
  return name;
}

/**
 * The URL of file `name` in the folder of `base` (a manifest's or a folder's URL), checked to
 * stay inside that folder.
 */
export function fileUrlInside(base: string, name: string, what: string, fix: string): string {
  checkFileName(name, what, fix);
  const folder = new URL('.', base);
  const url = new URL(name, folder);
  if (url.origin !== folder.origin || !url.href.startsWith(folder.href) || url.href.slice(folder.href.length) !== name) {
    throw new ModelFormatError(`${what}: ${describeValue(name)} resolves outside ${folder.href}; ${fix}.`);
  }
  return url.href;
}
