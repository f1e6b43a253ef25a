import { createHash, type Hash } from 'node:crypto';
import { type FileHandle, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { openCheckpoint } from '../checkpoint/index.ts';
import type { FileSource, TensorSource } from '../checkpoint/types.ts';
import type { ModelConfig } from '../config.ts';
import { ModelFormatError } from '../errors.ts';
import { tensorEncoder } from './encode.ts';
import { readFolderTokenizer } from './load-tokenizer.ts';
import { MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest, type ManifestFile, type ManifestTensor } from '../manifest.ts';
import { type ConvertDtype, DEFAULT_SHARD_BYTES, type TensorToPlace, planShards, shardFileName, tensorsToPlace } from './plan.ts';
import { combineHashLines, tensorHashLine } from '../packs/weights-hash.ts';
import { decodeTensor } from '../quant/decode.ts';
import { DTYPE_OF_STORAGE, valueBytes } from '../storage-types.ts';

// `molm convert`: a Hugging Face checkpoint folder → manifest.json + shard-NNNNN.bin (Node).
// One tensor is read, then converted and appended to its shard file(s) one piece at a time
// before the next tensor is read; shards are written through an open file handle and hashed as
// they are written, so the peak memory is about one source tensor plus one piece (≤ one shard),
// whatever the model's size (docs/format.md has the measured figure).

export const TOKENIZER_FILE = 'tokenizer.json';

export interface ConvertProgress {
  doneBytes: number;
  totalBytes: number;
  tensor: string;
  shard: number;
  shards: number;
}

export interface ConvertOptions {
  /** The Hugging Face checkpoint folder (any form openCheckpoint reads). */
  source: FileSource;
  outDir: string;
  dtype: ConvertDtype;
  /** Largest shard, in bytes (default 32 MiB). */
  shardBytes?: number;
  onProgress?: (p: ConvertProgress) => void;
}

/** One shard file being appended to, hashed as it goes. */
class ShardWriter {
  private written = 0;
  private readonly hash: Hash = createHash('sha256');

  private constructor(
    readonly index: number,
    private readonly handle: FileHandle,
  ) {}

  static async create(dir: string, index: number): Promise<ShardWriter> {
    return new ShardWriter(index, await open(join(dir, shardFileName(index)), 'w'));
  }

  async append(offset: number, bytes: Uint8Array): Promise<void> {
    if (offset !== this.written) throw new Error(`shard ${this.index}: piece at ${offset}, but ${this.written} bytes written`);
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await this.handle.write(bytes, done, bytes.byteLength - done);
      done += bytesWritten;
    }
    this.hash.update(bytes);
    this.written += bytes.byteLength;
  }

  /** Closes the file; resolves to its size and sha256. */
  async finish(): Promise<{ bytes: number; sha256: string }> {
    await this.handle.close();
    return { bytes: this.written, sha256: this.hash.digest('hex') };
  }

  async abandon(): Promise<void> {
    await this.handle.close().catch(() => {});
  }
}

/** Copies a file of the source folder to `dest` in bounded chunks; false when it is absent. */
/**
 * Copies the source folder's tokenizer.json along (checked as the engine will check it) and
 * returns its manifest entry; null when the folder has none.
 */
async function copyTokenizer(source: FileSource, dest: string): Promise<ManifestFile | null> {
  const text = await readFolderTokenizer(source, null);
  if (text === null) return null;
  const bytes = new TextEncoder().encode(text);
  const out = await open(dest, 'w');
  try {
    await out.writeFile(bytes);
  } finally {
    await out.close();
  }
  return { file: TOKENIZER_FILE, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/**
 * Converts a checkpoint into molm-web's shard format in `outDir` and resolves to the manifest it
 * wrote. manifest.json is written last (through a rename), so a folder whose conversion was
 * interrupted has no manifest and is never mistaken for a complete model.
 */
export async function convertModel(o: ConvertOptions): Promise<Manifest> {
  const { config, rawConfig, tensors } = await openCheckpoint(o.source);
  try {
    return await writeConvertedModel({ ...o, config, rawConfig, tensors, tokenizerFrom: o.source });
  } finally {
    await tensors.close();
  }
}

export interface WriteModelOptions extends Omit<ConvertOptions, 'source'> {
  config: ModelConfig;
  /** config.json as it goes into the manifest. */
  rawConfig: Record<string, unknown>;
  tensors: TensorSource;
  /** The folder whose tokenizer.json is copied along, if it has one. */
  tokenizerFrom: FileSource;
}

/** Writes tensors (any dtype a TensorSource gives) as a converted model in `o.outDir`. */
export async function writeConvertedModel(o: WriteModelOptions): Promise<Manifest> {
  const { config, rawConfig, tensors } = o;
  await mkdir(o.outDir, { recursive: true });
  // A previous conversion's manifest would describe shards that are about to be overwritten.
  await rm(join(o.outDir, MANIFEST_FILE), { force: true });
  const hashLines = new Map<string, string>();
  const written = await writeShards(o, tensorsToPlace(config, o.dtype), tensors, async (t, stored) => {
    const info = { dtype: DTYPE_OF_STORAGE[t.storage], shape: t.shape };
    hashLines.set(t.name, await tensorHashLine(t.name, t.shape, decodeTensor(stored.subarray(0, valueBytes(t.shape, t.storage)), info)));
  });
  const tokenizer = await copyTokenizer(o.tokenizerFrom, join(o.outDir, TOKENIZER_FILE));
  if (!tokenizer) await rm(join(o.outDir, TOKENIZER_FILE), { force: true });
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    config: rawConfig,
    tokenizer,
    dtype: o.dtype,
    tensors: written.tensors,
    shards: written.shards,
    weightsSha256: await combineHashLines(hashLines),
  };
  await writeManifest(o.outDir, manifest, written.shards);
  return manifest;
}

/**
 * Writes manifest.json last, through a rename (a folder whose conversion was interrupted has no
 * manifest), and removes the shards of an earlier, larger conversion into the same folder.
 */
export async function writeManifest(outDir: string, manifest: object, shards: readonly ManifestFile[]): Promise<void> {
  const tmp = join(outDir, `${MANIFEST_FILE}.tmp`);
  const file = await open(tmp, 'w');
  try {
    await file.writeFile(JSON.stringify(manifest, null, 1) + '\n');
  } finally {
    await file.close();
  }
  await rename(tmp, join(outDir, MANIFEST_FILE));
  const listed = new Set(shards.map((s) => s.file));
  for (const name of await readdir(outDir)) {
    if (/^shard-\d{5,}\.bin$/.test(name) && !listed.has(name)) await rm(join(outDir, name), { force: true });
  }
}

/**
 * Converts each tensor to its storage type and appends it to its shard(s), one tensor at a time;
 * `onTensor` sees each tensor's whole stored bytes (for the weights hash).
 */
export async function writeShards(
  o: { outDir: string; shardBytes?: number; onProgress?: (p: ConvertProgress) => void },
  toPlace: TensorToPlace[],
  tensors: TensorSource,
  onTensor?: (t: TensorToPlace, stored: Uint8Array) => Promise<void>,
): Promise<{ tensors: ManifestTensor[]; shards: ManifestFile[] }> {
  const plan = planShards(toPlace, o.shardBytes ?? DEFAULT_SHARD_BYTES);
  const shards: ManifestFile[] = [];
  let writer: ShardWriter | null = null;
  let done = 0;
  try {
    for (const t of plan.tensors) {
      const info = tensors.tensors.get(t.name);
      if (!info) throw new ModelFormatError(`The checkpoint has no tensor "${t.name}".`);
      const encoder = tensorEncoder(await tensors.read(t.name), info.dtype, t.shape, t.storage);
      if (encoder.bytes !== t.bytes) throw new Error(`${t.name}: ${encoder.bytes} storage bytes, planned ${t.bytes}`);
      // The whole stored tensor at once when someone wants it; else a piece at a time.
      const whole = onTensor ? encoder.range(0, encoder.bytes) : null;
      if (whole) await onTensor!(t, whole);
      let at = 0;
      for (const p of t.pieces) {
        if (writer === null || writer.index !== p.shard) {
          if (writer !== null) shards.push({ file: shardFileName(writer.index), ...(await writer.finish()) });
          writer = await ShardWriter.create(o.outDir, p.shard);
        }
        await writer.append(p.offset, whole ? whole.subarray(at, at + p.bytes) : encoder.range(at, at + p.bytes));
        at += p.bytes;
        done += p.bytes;
        o.onProgress?.({ doneBytes: done, totalBytes: plan.totalBytes, tensor: t.name, shard: p.shard, shards: plan.shardBytes.length });
      }
    }
    if (writer !== null) shards.push({ file: shardFileName(writer.index), ...(await writer.finish()) });
    writer = null;
  } catch (e) {
    await writer?.abandon();
    throw e;
  }
  for (let i = 0; i < shards.length; i++) {
    if (shards[i].bytes !== plan.shardBytes[i]) throw new Error(`shard ${i}: wrote ${shards[i].bytes} bytes, planned ${plan.shardBytes[i]}`);
  }
  return { tensors: plan.tensors, shards };
}
