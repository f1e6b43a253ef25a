import type { ByteSource, FileSource, TensorInfo, TensorSource } from '../checkpoint/types.ts';
import { type ModelConfig, parseConfig } from '../config.ts';
import { ModelFormatError } from '../errors.ts';
import { LIMITS, describeValue, isSafeFileName, parseJsonFile, readBounded } from '../limits.ts';
import { expectedTensorShapes } from '../tensor-names.ts';
import { DTYPE_OF_STORAGE, STORAGE_TYPES, type StorageType, canStore, expertBytesOf, storageBytes, valueBytes } from '../storage-types.ts';
import { MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest, type ManifestFile, type ManifestShard, type ManifestTensor } from '../manifest.ts';

// Reading a converted model (manifest.json + shards), in the browser and in Node: the manifest
// is validated completely before any weight is read, and each shard's sha256 is checked the
// first time the shard is read (crypto.subtle, which browsers and Node 20 both have).

const RECONVERT = 're-run `molm convert` to write it again';
const REDOWNLOAD = 're-download the model (or re-run `molm convert`)';

export interface OpenManifestOptions {
  /**
   * Check each shard's sha256 the first time it is read (default true). The shard is then read
   * whole once and kept until the reads move to the next shard, so the peak is one shard plus
   * one tensor and no byte is fetched twice.
   */
  verify?: boolean;
}

export interface ManifestModel {
  manifest: Manifest;
  config: ModelConfig;
  tensors: TensorSource;
}

type Json = Record<string, unknown>;

const isObject = (x: unknown): x is Json => x !== null && typeof x === 'object' && !Array.isArray(x);
const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
const shapeText = (shape: readonly number[]) => `[${shape.join(', ')}]`;
const isSha256 = (x: unknown): x is string => typeof x === 'string' && /^[0-9a-f]{64}$/.test(x);
const NAME_RULE = 'one path segment of letters, digits, "_", "-" and "."';

/**
 * Checks a parsed manifest.json against the format and against its own config: every tensor the
 * model needs, with the right shape, a storage type whose byte count matches, pieces inside
 * their shards and not overlapping. Reads no file. Throws a ModelFormatError that says what to do.
 */
export function validateManifest(json: unknown, where = MANIFEST_FILE): { manifest: Manifest; config: ModelConfig } {
  const fail = (what: string, fix = RECONVERT): never => {
    throw new ModelFormatError(`${where}: ${what}; ${fix}.`);
  };
  if (!isObject(json)) fail('is not a JSON object');
  const m = json as Json;
  if (m.format !== MANIFEST_FORMAT) {
    fail(`"format" is ${describeValue(m.format)}, not "${MANIFEST_FORMAT}": this is not a molm-web model manifest`, 'convert the model with `molm convert`');
  }
  if (m.version !== MANIFEST_VERSION) {
    const newer = typeof m.version === 'number' && m.version > MANIFEST_VERSION;
    fail(
      `"version" is ${describeValue(m.version)}; this molm-web reads version ${MANIFEST_VERSION}`,
      newer ? 'update molm-web, or re-run `molm convert` with this version' : RECONVERT,
    );
  }
  if (!isObject(m.config)) fail('"config" must hold the model\'s config.json object');
  let config: ModelConfig;
  try {
    config = parseConfig(m.config as Json);
  } catch (e) {
    throw new ModelFormatError(`${where}: "config": ${(e as Error).message} Re-run \`molm convert\` from a valid checkpoint.`, { cause: e });
  }
  if (!STORAGE_TYPES.includes(m.dtype as StorageType)) fail(`"dtype" is ${describeValue(m.dtype)}; expected one of ${STORAGE_TYPES.join(', ')}`);
  const tokenizer = m.tokenizer === null ? null : checkFile(m.tokenizer, '"tokenizer"', LIMITS.tokenizerBytes, fail);

  // Shards.
  if (!Array.isArray(m.shards)) fail('"shards" must be an array');
  const shards = m.shards as unknown[];
  const shardFiles = new Set<string>();
  const shardList: ManifestShard[] = shards.map((s, i) => {
    const shard = checkFile(s, `shard ${i}`, Number.MAX_SAFE_INTEGER, fail);
    if (shardFiles.has(shard.file) || shard.file === tokenizer?.file) fail(`file ${shard.file} is listed twice`);
    shardFiles.add(shard.file);
    return shard;
  });

  const tensors = validateTensorTable(m.tensors, shardList, fail);

  // What the model needs.
  const missing: string[] = [];
  for (const [name, shape] of expectedTensorShapes(config)) {
    const t = tensors.get(name);
    if (!t) {
      missing.push(`"${name}" ${shapeText(shape)}`);
      continue;
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      fail(`tensor "${name}" has shape ${shapeText(t.shape)}, but the config implies ${shapeText(shape)}`);
    }
  }
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).join(', ') + (missing.length > 5 ? `, and ${missing.length - 5} more` : '');
    fail(`lacks ${missing.length} tensor(s) the model needs: ${shown}`);
  }

  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    config: m.config as Json,
    tokenizer,
    dtype: m.dtype as StorageType,
    tensors: [...tensors.values()],
    shards: shardList,
  };
  if (m.weightsSha256 !== undefined) {
    if (!isSha256(m.weightsSha256)) fail('"weightsSha256" must be 64 lower-case hex digits');
    manifest.weightsSha256 = m.weightsSha256 as string;
  }
  return { manifest, config: config! };
}

/**
 * Checks a manifest's "tensors" array against its shards: names, storage types, byte counts,
 * pieces inside their shards, 4-byte aligned and not overlapping. Shared by models and packs.
 */
export function validateTensorTable(json: unknown, shardList: readonly ManifestShard[], fail: (what: string) => never): Map<string, ManifestTensor> {
  if (!Array.isArray(json)) fail('"tensors" must be an array');
  const tensors = new Map<string, ManifestTensor>();
  const used: { shard: number; offset: number; end: number; tensor: string }[] = [];
  for (const [i, t] of (json as unknown[]).entries()) {
    if (!isObject(t) || typeof t.name !== 'string') return fail(`tensor ${i} has no name`);
    if (t.name.length > LIMITS.tensorNameLength)
      fail(`tensor ${i}'s name is ${t.name.length} characters long, more than the ${LIMITS.tensorNameLength} a name may have`);
    const name = t.name;
    if (tensors.has(name)) fail(`tensor "${name}" is listed twice`);
    const storage = t.storage as StorageType;
    if (!STORAGE_TYPES.includes(storage)) fail(`tensor "${name}": storage ${describeValue(t.storage)} is not one of ${STORAGE_TYPES.join(', ')}`);
    if (!Array.isArray(t.shape) || t.shape.length === 0 || !t.shape.every((d) => isCount(d) && d > 0)) {
      fail(`tensor "${name}": "shape" must be a non-empty array of positive integers, got ${describeValue(t.shape)}`);
    }
    const shape = t.shape as number[];
    if (!canStore(shape, storage)) fail(`tensor "${name}": a ${shapeText(shape)} tensor cannot be stored as ${storage}`);
    const bytes = storageBytes(shape, storage);
    if (t.bytes !== bytes) fail(`tensor "${name}": ${describeValue(t.bytes)} bytes, but ${storage} ${shapeText(shape)} takes ${bytes}`);
    const expertBytes = expertBytesOf(shape, storage);
    if (t.expertBytes !== undefined && t.expertBytes !== expertBytes) {
      fail(`tensor "${name}": "expertBytes" is ${describeValue(t.expertBytes)}, but one expert of ${storage} ${shapeText(shape)} takes ${expertBytes}`);
    }
    if (!Array.isArray(t.pieces) || t.pieces.length === 0) fail(`tensor "${name}" has no pieces`);
    let total = 0;
    for (const p of t.pieces as unknown[]) {
      if (!isObject(p) || !isCount(p.shard) || !isCount(p.offset) || !isCount(p.bytes) || p.bytes === 0) {
        return fail(`tensor "${name}": piece ${describeValue(p)} needs integer "shard", "offset" and a positive "bytes"`);
      }
      if (p.shard >= shardList.length) fail(`tensor "${name}": a piece is in shard ${p.shard}, but the manifest lists ${shardList.length} shard(s)`);
      const shard = shardList[p.shard];
      if (p.offset + p.bytes > shard.bytes) {
        fail(`tensor "${name}": a piece at ${p.offset}..${p.offset + p.bytes} runs past the end of ${shard.file} (${shard.bytes} bytes)`);
      }
      if (p.offset % 4 !== 0 || p.bytes % 4 !== 0) fail(`tensor "${name}": piece at ${p.offset} (+${p.bytes}) is not 4-byte aligned`);
      used.push({ shard: p.shard, offset: p.offset, end: p.offset + p.bytes, tensor: name });
      total += p.bytes;
    }
    if (total !== bytes) fail(`tensor "${name}": its pieces hold ${total} bytes, but the tensor takes ${bytes}`);
    tensors.set(name, {
      name,
      storage,
      shape: [...shape],
      bytes,
      pieces: (t.pieces as ManifestTensor['pieces']).map(({ shard, offset, bytes }) => ({ shard, offset, bytes })),
      ...(t.expertBytes !== undefined ? { expertBytes: t.expertBytes as number } : {}),
    });
  }
  used.sort((a, b) => a.shard - b.shard || a.offset - b.offset);
  for (let i = 1; i < used.length; i++) {
    const [a, b] = [used[i - 1], used[i]];
    if (a.shard === b.shard && b.offset < a.end) {
      fail(`tensors "${a.tensor}" and "${b.tensor}" overlap in ${shardList[a.shard].file} (bytes ${b.offset}..${Math.min(a.end, b.end)})`);
    }
  }

  return tensors;
}

/** A shard or tokenizer entry: a safe file name (never a path or a URL), its size and sha256. */
export function checkFile(entry: unknown, what: string, maxBytes: number, fail: (what: string) => never): ManifestFile {
  if (!isObject(entry)) return fail(`${what} must be an object { file, bytes, sha256 }, got ${describeValue(entry)}`);
  const { file, bytes, sha256 } = entry;
  if (!isSafeFileName(file)) {
    fail(
      `${what}: "file" is ${describeValue(file)}; a file next to the manifest is named by ${NAME_RULE} (not first), at most ${LIMITS.fileNameLength} characters`,
    );
  }
  if (!isCount(bytes) || bytes > maxBytes) fail(`${what} (${file}): "bytes" must be an integer from 0 to ${maxBytes}, got ${describeValue(bytes)}`);
  if (!isSha256(sha256)) fail(`${what} (${file}): "sha256" must be 64 lower-case hex digits`);
  return { file: file as string, bytes: bytes as number, sha256: sha256 as string };
}

/** The TensorInfo a reader reports for a manifest tensor (its values, without final padding). */
export function tensorInfoOf(t: ManifestTensor): TensorInfo {
  return { name: t.name, dtype: DTYPE_OF_STORAGE[t.storage], shape: [...t.shape], byteLength: valueBytes(t.shape, t.storage) };
}

async function readAll(source: ByteSource): Promise<Uint8Array> {
  return source.read(0, source.size);
}

function hex(bytes: ArrayBuffer): string {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Lower-case hex sha256 of some bytes, with the Web Crypto API (browsers and Node 20+). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return hex(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
}

/** Reads and parses manifest.json; null when the folder has none. */
export async function readManifestJson(files: FileSource): Promise<unknown | null> {
  const source = await files.open(MANIFEST_FILE);
  if (source === null) return null;
  const limits = { what: `${files.location}/${MANIFEST_FILE}`, maxBytes: LIMITS.indexBytes, fix: REDOWNLOAD };
  return parseJsonFile(await readBounded(source, limits), limits);
}

/**
 * Opens a converted model folder: validates manifest.json, checks that every shard it lists is
 * there with its size, and returns the tensors (read piece by piece; no weight is read yet).
 */
export async function openManifest(files: FileSource, options: OpenManifestOptions = {}): Promise<ManifestModel> {
  const json = await readManifestJson(files);
  if (json === null) {
    throw new ModelFormatError(`${files.location} has no ${MANIFEST_FILE}; convert the model with \`molm convert\`, or download the whole converted folder.`);
  }
  const { manifest, config } = validateManifest(json, `${files.location}/${MANIFEST_FILE}`);
  return { manifest, config, tensors: await openShardTensors(files, manifest, options) };
}

/**
 * The tensors of a validated manifest (a model's or a pack's) in a folder: checks that every
 * shard it lists is there with its size; no weight is read yet.
 */
export async function openShardTensors(files: FileSource, stored: StoredFiles, options: OpenManifestOptions = {}): Promise<TensorSource> {
  for (const s of stored.shards) {
    const source = await files.open(s.file);
    if (source === null) throw new ModelFormatError(`${files.location} lacks ${s.file}, a shard that ${MANIFEST_FILE} lists; ${REDOWNLOAD}.`);
    const size = source.size;
    await source.close?.();
    if (size !== s.bytes) {
      throw new ModelFormatError(
        `${files.location}/${s.file} is ${size} bytes, but ${MANIFEST_FILE} says ${s.bytes}: it is incomplete or from another conversion; ${REDOWNLOAD}.`,
      );
    }
  }
  return new ShardTensors(files, stored, options.verify ?? true);
}

/** The part of a manifest that says where tensors are. */
type StoredFiles = Pick<Manifest, 'tensors' | 'shards'>;

/** The tensors of a manifest: each read concatenates its pieces; one shard file open at a time. */
class ShardTensors implements TensorSource {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  private readonly entries: Map<string, ManifestTensor>;
  private readonly verified = new Set<number>();
  private open: { index: number; source: ByteSource } | null = null;
  /** The whole bytes of the shard that was verified last, while reads stay in it. */
  private cached: { index: number; bytes: Uint8Array } | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly files: FileSource,
    private readonly manifest: StoredFiles,
    private readonly verify: boolean,
  ) {
    this.entries = new Map(manifest.tensors.map((t) => [t.name, t]));
    this.tensors = new Map(manifest.tensors.map((t) => [t.name, tensorInfoOf(t)]));
  }

  read(name: string): Promise<Uint8Array> {
    // Reads are serialised: they share the one open shard and the cached shard.
    const next = this.queue.then(() => this.readNow(name));
    this.queue = next.catch(() => {});
    return next;
  }

  private async readNow(name: string): Promise<Uint8Array> {
    if (this.closed) throw new ModelFormatError(`${this.files.location}: the model was closed; open it again to read "${name}".`);
    const t = this.entries.get(name);
    if (!t) throw new ModelFormatError(`The converted model has no tensor "${name}".`);
    const length = this.tensors.get(name)!.byteLength;
    const out = new Uint8Array(length);
    let at = 0;
    for (const p of t.pieces) {
      if (at >= length) break;
      const take = Math.min(p.bytes, length - at);
      out.set(await this.readPiece(p.shard, p.offset, take), at);
      at += take;
    }
    return out;
  }

  private async readPiece(index: number, offset: number, length: number): Promise<Uint8Array> {
    if (this.verify && !this.verified.has(index)) {
      const bytes = await readAll(await this.shard(index));
      const shard = this.manifest.shards[index];
      const actual = await sha256Hex(bytes);
      if (actual !== shard.sha256) {
        throw new ModelFormatError(
          `${this.files.location}/${shard.file} is damaged: its sha256 is ${actual}, but ${MANIFEST_FILE} says ${shard.sha256}; ${REDOWNLOAD}.`,
        );
      }
      this.verified.add(index);
      this.cached = { index, bytes };
    }
    if (this.cached?.index === index) return this.cached.bytes.subarray(offset, offset + length);
    this.cached = null;
    return (await this.shard(index)).read(offset, length);
  }

  /** The shard's file, opened on first use; the previous shard's file is closed. */
  private async shard(index: number): Promise<ByteSource> {
    if (this.open?.index === index) return this.open.source;
    await this.open?.source.close?.();
    this.open = null;
    const file = this.manifest.shards[index].file;
    const source = await this.files.open(file);
    if (source === null) throw new ModelFormatError(`${this.files.location} lacks ${file}, a shard that ${MANIFEST_FILE} lists; ${REDOWNLOAD}.`);
    if (source.size !== this.manifest.shards[index].bytes) {
      await source.close?.();
      throw new ModelFormatError(`${this.files.location}/${file} changed size while the model was open; ${REDOWNLOAD}.`);
    }
    this.open = { index, source };
    return source;
  }

  async close(): Promise<void> {
    await this.queue;
    this.closed = true;
    this.cached = null;
    await this.open?.source.close?.();
    this.open = null;
  }
}
