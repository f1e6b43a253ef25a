import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { openCheckpoint } from '../../src/checkpoint/hf-folder.ts';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { openTorchBin } from '../../src/checkpoint/torch-bin.ts';
import type { ByteSource, FileSource, TensorSource } from '../../src/checkpoint/types.ts';
import { blobFileSource, urlFileSource } from '../../src/checkpoint/web-files.ts';
import { openZip } from '../../src/checkpoint/zip.ts';
import { MolmTokenizer } from '../../src/engine/tokenizer.ts';
import { convertModel } from '../../src/shards/convert.ts';
import { streamShards } from '../../src/shards/load-model.ts';
import { loadTokenizerJson, readFolderTokenizer } from '../../src/shards/load-tokenizer.ts';
import { openManifest } from '../../src/shards/manifest-source.ts';
import { openModelFolder } from '../../src/shards/model-folder.ts';
import { convertPack } from '../../src/packs/convert-pack.ts';
import { openPackFolder } from '../../src/packs/load-pack.ts';
import { memoryShardStore } from '../../src/store/shard-store.ts';
import { type Random, concat, int, mutateBytes, mutateJson, pick } from './mutate.ts';
import { hostilePickle, mutatePickleInts, torchBin, writeZip } from './pickle.ts';

// The readers under fuzz, each fed a whole model folder built from the project's fixtures with
// one file damaged. A target opens the folder the way the product does and reads every tensor,
// so a defect anywhere between the first byte and the last tensor shows.

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A model folder: file name → bytes. */
export type Folder = Map<string, Uint8Array>;

export interface FuzzTarget {
  name: string;
  /** Inputs cost this many times a typical one (the campaign gives the target fewer). */
  cost?: number;
  /** The undamaged folder the inputs are made from: it must load (else the campaign tests nothing). */
  seed(): Folder;
  /** The folder for one input. */
  input(r: Random): Folder;
  /** Reads it as the product does; resolves or throws. URLs fetched go to `requested`. */
  run(folder: Folder, requested: string[]): Promise<void>;
}

function readFolder(dir: string): Folder {
  return new Map(readdirSync(dir).map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))]));
}

const filesOf = (folder: Folder): FileSource => blobFileSource(new Map([...folder].map(([k, v]) => [k, new Blob([v as Uint8Array<ArrayBuffer>])])));

/** Reads every tensor of a source, then closes it. */
async function readAll(tensors: TensorSource): Promise<void> {
  try {
    for (const name of tensors.tensors.keys()) await tensors.read(name);
  } finally {
    await tensors.close();
  }
}

export const MODEL_ORIGIN = 'https://models.test';
export const MODEL_BASE = `${MODEL_ORIGIN}/org/model/`;

/** A fetch that serves a folder under MODEL_BASE (with Range and HEAD) and records every URL asked for. */
export function folderFetch(folder: Folder, requested: string[]): typeof fetch {
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    requested.push(url);
    const file = url.startsWith(MODEL_BASE) ? folder.get(decodeURIComponent(url.slice(MODEL_BASE.length))) : undefined;
    if (!file) return new Response('not found', { status: 404 });
    const headers = new Headers({ 'content-length': String(file.length), 'accept-ranges': 'bytes' });
    if ((init?.method ?? 'GET') === 'HEAD') return new Response(null, { status: 200, headers });
    const range = new Headers(init?.headers).get('range');
    const m = range && /^bytes=(\d+)-(\d*)$/.exec(range);
    if (m) {
      const from = Number(m[1]);
      const to = m[2] === '' ? file.length - 1 : Math.min(Number(m[2]), file.length - 1);
      if (from >= file.length) return new Response(null, { status: 416 });
      return new Response(file.slice(from, to + 1), {
        status: 206,
        headers: { 'content-range': `bytes ${from}-${to}/${file.length}`, 'content-length': String(to - from + 1) },
      });
    }
    return new Response(file.slice(), { status: 200, headers });
  }) as typeof fetch;
}

function replaced(folder: Folder, name: string, bytes: Uint8Array): Folder {
  return new Map(folder).set(name, bytes);
}

/** A safetensors file with another header (the length field rewritten to match). */
function withHeader(file: Uint8Array, header: string): Uint8Array {
  const old = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  const h = encoder.encode(header);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(h.length), true);
  return concat(len, h, file.subarray(8 + old));
}

function safetensorsHeader(file: Uint8Array): unknown {
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return JSON.parse(decoder.decode(file.subarray(8, 8 + n)));
}

/** Structural or raw damage to a JSON file. */
function damagedJson(r: Random, bytes: Uint8Array): Uint8Array {
  return r() < 0.75 ? encoder.encode(mutateJson(r, JSON.parse(decoder.decode(bytes)))) : mutateBytes(r, bytes);
}

async function openFolderAndRead(files: FileSource): Promise<void> {
  const ckpt = await openCheckpoint(files);
  await readAll(ckpt.tensors);
}

export interface Fixtures {
  tinySafetensors: Folder;
  stSharded: Folder;
  binFolder: Folder;
  binSharded: Folder;
  pickle: Uint8Array;
  converted: Folder;
  /** tools/fixtures' expert pack a for tiny-molm, converted to q8. */
  pack: Folder;
  tokenizer: Uint8Array;
  cleanup(): Promise<void>;
}

/** The seed inputs: the project's own fixtures, and a converted model made from one. */
export async function loadFixtures(): Promise<Fixtures> {
  const tinySafetensors = readFolder(join(FIXTURES, 'golden/tiny-molm'));
  tinySafetensors.delete('expected.json');
  tinySafetensors.delete('expected_logits.f32');
  const binFolder = readFolder(join(FIXTURES, 'checkpoints/tiny-molm-bin'));
  const bin = binFolder.get('pytorch_model.bin')!;
  const zip = await openZip(memorySource(bin), 'pytorch_model.bin');
  const entry = [...zip.entries.values()].find((e) => e.name.endsWith('/data.pkl'))!;
  const range = await zip.dataRange(entry);
  const pickle = bin.slice(range.offset, range.offset + range.length);
  const prefix = entry.name.slice(0, -'data.pkl'.length);
  storages = [];
  for (const e of zip.entries.values()) {
    if (!e.name.startsWith(`${prefix}data/`)) continue;
    const at = await zip.dataRange(e);
    storages.push({ name: `archive/data/${e.name.slice(prefix.length + 5)}`, data: bin.slice(at.offset, at.offset + at.length) });
  }

  const tokenizer = new Uint8Array(readFileSync(join(FIXTURES, '..', '..', 'public/models/molm-brown/tokenizer.json')));
  const tmp = await mkdtemp(join(tmpdir(), 'molm-fuzz-'));
  const hf = new Map(tinySafetensors).set('tokenizer.json', tokenizer);
  await convertModel({ source: filesOf(hf), outDir: tmp, dtype: 'q8', shardBytes: 64 * 1024 });
  const converted = readFolder(tmp);
  const packDir = join(tmp, 'pack');
  await convertPack({ source: filesOf(readFolder(join(FIXTURES, 'packs/tiny-pack-a'))), outDir: packDir, dtype: 'q8', shardBytes: 16 * 1024 });
  const pack = readFolder(packDir);
  return {
    tinySafetensors,
    stSharded: readFolder(join(FIXTURES, 'checkpoints/tiny-molm-st-sharded')),
    binFolder,
    binSharded: readFolder(join(FIXTURES, 'checkpoints/tiny-molm-bin-sharded')),
    pickle,
    converted,
    pack,
    tokenizer,
    cleanup: () => rm(tmp, { recursive: true, force: true }),
  };
}

function memorySource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read: async (offset, length) => {
      if (offset < 0 || length < 0 || offset + length > bytes.length) throw new RangeError('past the end');
      return bytes.slice(offset, offset + length);
    },
  };
}

/**
 * A one-tensor geometry: sizes, strides, offset and storage that stress the extent arithmetic.
 * Half are a well-formed tensor (contiguous or transposed) with one field changed.
 */
function randomGeometry(r: Random) {
  if (r() < 0.5) {
    const rows = 1 + int(r, 8);
    const cols = 1 + int(r, 8);
    const g = { shape: [rows, cols], stride: r() < 0.5 ? [cols, 1] : [1, rows], offset: 0, numel: rows * cols, bytes: 4 * rows * cols };
    switch (int(r, 5)) {
      case 0:
        g.shape[int(r, 2)] = pick(r, [0, 2 ** 20, 2 ** 31 - 1]);
        break;
      case 1:
        g.stride[int(r, 2)] = pick(r, [0, -1, 2 ** 20]);
        break;
      case 2:
        g.offset = pick(r, [1, g.numel, 2 ** 31 - 1]);
        break;
      case 3:
        g.numel = pick(r, [0, 1, 2 ** 31 - 1]);
        break;
      default:
        g.bytes = pick(r, [0, 4, g.bytes - 4]);
    }
    return g;
  }
  const rank = int(r, 4);
  const dim = () => pick(r, [0, 1, 2, 3, 7, 64, 1 << 14, 1 << 20, 2 ** 30, 2 ** 31 - 1]);
  const shape = Array.from({ length: rank }, dim);
  const stride = shape.map((_, i) => pick(r, [0, 1, 2, -1, shape.slice(i + 1).reduce((a, b) => a * b, 1), 1 << 20]));
  const numel = pick(r, [0, 1, 4, 16, 64, 2 ** 20, 2 ** 31 - 1]);
  return { shape, stride, offset: pick(r, [0, 0, 1, 3, 16, 2 ** 31 - 1]), numel, bytes: pick(r, [0, 4, 16, 64, 256, 1024]) };
}

export function fuzzTargets(f: Fixtures): FuzzTarget[] {
  const readConverted = async (folder: Folder) => readAll((await openManifest(filesOf(folder))).tensors);
  // A pack read from its folder, then merged into the tiny-molm checkpoint it extends (every merged tensor read).
  const readMerged = async (pack: Folder) => {
    const loaded = await openPackFolder(filesOf(pack));
    await readAll((await openModelFolder(filesOf(f.tinySafetensors), { packs: [loaded] })).tensors);
  };
  return [
    {
      name: 'safetensors bytes',
      seed: () => f.tinySafetensors,
      input: (r) => replaced(f.tinySafetensors, 'model.safetensors', mutateBytes(r, f.tinySafetensors.get('model.safetensors')!)),
      run: (folder) => openFolderAndRead(filesOf(folder)),
    },
    {
      name: 'safetensors header',
      seed: () => f.tinySafetensors,
      input: (r) => {
        const file = f.tinySafetensors.get('model.safetensors')!;
        return replaced(f.tinySafetensors, 'model.safetensors', withHeader(file, mutateJson(r, safetensorsHeader(file))));
      },
      run: (folder) => openFolderAndRead(filesOf(folder)),
    },
    {
      name: 'config.json',
      seed: () => f.tinySafetensors,
      input: (r) => replaced(f.tinySafetensors, 'config.json', damagedJson(r, f.tinySafetensors.get('config.json')!)),
      run: (folder) => openFolderAndRead(filesOf(folder)),
    },
    {
      name: 'index.json over URLs',
      seed: () => f.stSharded,
      input: (r) => replaced(f.stSharded, 'model.safetensors.index.json', damagedJson(r, f.stSharded.get('model.safetensors.index.json')!)),
      run: (folder, requested) => openFolderAndRead(urlFileSource(MODEL_BASE, folderFetch(folder, requested))),
    },
    {
      name: 'index.json in a local folder',
      seed: () => f.binSharded,
      input: (r) => replaced(f.binSharded, 'pytorch_model.bin.index.json', damagedJson(r, f.binSharded.get('pytorch_model.bin.index.json')!)),
      run: async (folder, requested) => {
        const dir = await mkdtemp(join(tmpdir(), 'molm-fuzz-folder-'));
        try {
          for (const [name, bytes] of folder) writeFileSync(join(dir, name), bytes);
          const files = nodeFileSource(dir);
          // Every file the reader opened, as a URL under MODEL_BASE when it lies inside the folder.
          const watched: FileSource = {
            location: files.location,
            async open(name) {
              const source = await files.open(name);
              const path = resolve(dir, name);
              if (source) requested.push(path.startsWith(dir + sep) ? MODEL_BASE + name : `file://${path}`);
              return source;
            },
          };
          await openFolderAndRead(watched);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      },
    },
    {
      name: 'pytorch_model.bin bytes',
      seed: () => f.binFolder,
      input: (r) => {
        const [folder, file] =
          r() < 0.7
            ? [f.binFolder, 'pytorch_model.bin']
            : [
                f.binSharded,
                pick(
                  r,
                  [...f.binSharded.keys()].filter((k) => k.endsWith('.bin')),
                ),
              ];
        return replaced(folder, file, mutateBytes(r, folder.get(file)!));
      },
      run: (folder) => openFolderAndRead(filesOf(folder)),
    },
    {
      name: 'pytorch_model.bin pickle',
      seed: () => binWithPickle(f, f.pickle),
      input: (r) => {
        const u = r();
        return binWithPickle(f, u < 0.35 ? mutatePickleInts(r, f.pickle) : u < 0.7 ? mutateBytes(r, f.pickle) : hostilePickle(r));
      },
      run: (folder) => openFolderAndRead(filesOf(folder)),
    },
    {
      name: 'pytorch_model.bin tensor geometry',
      seed: () => new Map([['pytorch_model.bin', torchBin([{ name: 'w', shape: [4, 3], stride: [1, 4], offset: 0, numel: 12, key: '0' }], { '0': 48 })]]),
      input: (r) => {
        const g = randomGeometry(r);
        const spec = { name: 'w', shape: g.shape, stride: g.stride, offset: g.offset, numel: g.numel, key: '0' };
        return new Map([['pytorch_model.bin', torchBin([spec], { '0': g.bytes })]]);
      },
      run: async (folder) => readAll(await openTorchBin((await filesOf(folder).open('pytorch_model.bin'))!, 'pytorch_model.bin')),
    },
    {
      name: 'manifest.json',
      seed: () => f.converted,
      input: (r) => replaced(f.converted, 'manifest.json', damagedJson(r, f.converted.get('manifest.json')!)),
      run: (folder) => readConverted(folder),
    },
    {
      name: 'manifest.json over URLs, with the cache',
      seed: () => f.converted,
      input: (r) => replaced(f.converted, 'manifest.json', damagedJson(r, f.converted.get('manifest.json')!)),
      run: async (folder, requested) => {
        const get = folderFetch(folder, requested);
        const store = memoryShardStore();
        await streamShards(`${MODEL_BASE}manifest.json`, { store, fetch: get, retries: 0, backoffMs: 0 }, async () => ({
          sink: { writePiece: () => {}, finishWrites: () => {} },
          finish: async () => {},
          abandon: () => {},
        }));
        MolmTokenizer.fromJson(await loadTokenizerJson(MODEL_BASE, { store, fetch: get }));
      },
    },
    {
      name: 'expert pack manifest.json, merged into its base',
      seed: () => f.pack,
      input: (r) => replaced(f.pack, 'manifest.json', damagedJson(r, f.pack.get('manifest.json')!)),
      run: (folder) => readMerged(folder),
    },
    {
      name: 'expert pack shards, merged into its base',
      seed: () => f.pack,
      input: (r) => {
        const file = pick(
          r,
          [...f.pack.keys()].filter((k) => k !== 'manifest.json'),
        );
        return replaced(f.pack, file, mutateBytes(r, f.pack.get(file)!));
      },
      run: (folder) => readMerged(folder),
    },
    {
      name: 'shards and tokenizer.json of a converted model',
      seed: () => f.converted,
      input: (r) => {
        const file = pick(
          r,
          [...f.converted.keys()].filter((k) => k !== 'manifest.json'),
        );
        return replaced(f.converted, file, mutateBytes(r, f.converted.get(file)!));
      },
      run: async (folder) => {
        await readConverted(folder);
        const json = await readFolderTokenizer(filesOf(folder));
        if (json !== null) MolmTokenizer.fromJson(json).encode('hostile input');
      },
    },
    {
      name: 'tokenizer.json (the tokenizer library behind it)',
      cost: 20, // a 2 MB vocabulary is parsed and built for every input
      seed: () => new Map([['tokenizer.json', f.tokenizer]]),
      input: (r) => new Map([['tokenizer.json', int(r, 4) === 0 ? mutateBytes(r, f.tokenizer) : damagedJson(r, f.tokenizer)]]),
      run: async (folder) => {
        const t = MolmTokenizer.fromJson(decoder.decode(folder.get('tokenizer.json')!));
        t.decode(t.encode('The <b>hostile</b> input ü 日本 \u0000'));
      },
    },
  ];
}

/** The fixture's pytorch_model.bin folder with another data.pkl (its storages unchanged). */
function binWithPickle(f: Fixtures, pickle: Uint8Array): Folder {
  const bin = writeZip([{ name: 'archive/data.pkl', data: pickle }, { name: 'archive/byteorder', data: encoder.encode('little') }, ...storagesOf()]);
  return replaced(f.binFolder, 'pytorch_model.bin', bin);
}

let storages: { name: string; data: Uint8Array }[] | null = null;
/** The storages of the fixture's pytorch_model.bin (kept as they are while its pickle is damaged). */
function storagesOf(): { name: string; data: Uint8Array }[] {
  if (!storages) throw new Error('loadFixtures reads the storages first');
  return storages;
}
