import { resolve } from 'node:path';
import { nodeFileSource } from '../checkpoint/node-files.ts';
import type { FileSource } from '../checkpoint/types.ts';
import { UsageError } from '../errors.ts';
import { type ConvertProgress, convertModel } from '../shards/convert.ts';
import { CONVERT_DTYPES, type ConvertDtype } from '../shards/plan.ts';
import { convertPack, readPackSourceInfo } from '../packs/convert-pack.ts';

export interface ConvertCommandOptions {
  modelDir: string;
  /** The model's files when they are not the folder modelDir (a hub repo). */
  source?: FileSource;
  outDir: string;
  dtype: string;
  shardMiB?: number;
  /** Where the progress goes (default process.stderr). */
  stream?: NodeJS.WriteStream;
}

const MIB = 1024 * 1024;

function mib(bytes: number): string {
  return (bytes / MIB).toFixed(1);
}

/**
 * Progress on stderr: one line redrawn in place on a terminal; otherwise (a log file, CI) a plain
 * line every 10 % so logs stay short.
 */
export function progressReporter(stream: NodeJS.WriteStream = process.stderr, label = 'convert'): { update(p: ConvertProgress): void; done(): void } {
  // bin/molm.mjs reads the CLI's stderr through a pipe (to drop driver noise) and says here
  // when that pipe ends at a terminal, and how wide it is.
  const passed = stream === process.stderr ? Number(process.env.MOLM_STDERR_COLUMNS) : NaN;
  const tty = stream.isTTY === true || passed > 0;
  const columns = () => (stream.isTTY === true ? stream.columns : passed) || 100;
  let lastDecile = -1;
  let lastDraw = 0;
  let drawn = false;
  return {
    update(p) {
      const pct = p.totalBytes === 0 ? 100 : (100 * p.doneBytes) / p.totalBytes;
      const text = `${mib(p.doneBytes)} / ${mib(p.totalBytes)} MiB  ${pct.toFixed(1).padStart(5)}%  shard ${p.shard + 1}/${p.shards}`;
      if (tty) {
        const now = Date.now();
        if (now - lastDraw < 100 && p.doneBytes < p.totalBytes) return;
        lastDraw = now;
        const width = 24;
        const filled = Math.round((width * pct) / 100);
        const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}  ${p.tensor}`;
        stream.write(`\r${line.slice(0, columns() - 1)}\x1b[K`);
        drawn = true;
      } else {
        const decile = Math.floor(pct / 10);
        if (decile === lastDecile) return;
        lastDecile = decile;
        stream.write(`${label}: ${text}\n`);
      }
    },
    done() {
      if (drawn) stream.write('\n');
    },
  };
}

/** `molm convert`: a Hugging Face folder → manifest.json + shards in molm-web's format. */
export async function runConvert(o: ConvertCommandOptions): Promise<string> {
  const dtype = o.dtype.toLowerCase();
  if (!(CONVERT_DTYPES as readonly string[]).includes(dtype)) {
    throw new UsageError(`--dtype must be one of ${CONVERT_DTYPES.join(', ')}, got "${o.dtype}".`);
  }
  const shardMiB = o.shardMiB ?? 32;
  if (!Number.isFinite(shardMiB) || shardMiB <= 0) throw new UsageError(`--shard-mib must be a positive number, got ${o.shardMiB}.`);
  const shardBytes = Math.floor(shardMiB * MIB);
  if (shardBytes < 4) throw new UsageError(`--shard-mib ${shardMiB} is smaller than 4 bytes.`);
  if (!o.source && resolve(o.modelDir) === resolve(o.outDir)) {
    throw new UsageError('--out must be a different folder from --model (the converted model is written next to nothing else).');
  }
  const source = o.source ?? nodeFileSource(o.modelDir);
  const progress = progressReporter(o.stream);
  if (!o.source && (await readPackSourceInfo(source)) !== null) {
    // A pack's source folder (pack.json + model.safetensors): converted into a pack.
    let pack: Awaited<ReturnType<typeof convertPack>>;
    try {
      pack = await convertPack({ source, outDir: o.outDir, dtype: dtype as ConvertDtype, shardBytes, onProgress: (p) => progress.update(p) });
    } finally {
      progress.done();
    }
    const bytes = pack.shards.reduce((a, s) => a + s.bytes, 0);
    return `expert pack ${pack.name}: ${pack.tensors.length} tensors, ${pack.shards.length} shard(s), ${mib(bytes)} MiB (${dtype}) written to ${resolve(o.outDir)}`;
  }
  let manifest: Awaited<ReturnType<typeof convertModel>>;
  try {
    manifest = await convertModel({
      source,
      outDir: o.outDir,
      dtype: dtype as ConvertDtype,
      shardBytes,
      onProgress: (p) => progress.update(p),
    });
  } finally {
    progress.done();
  }
  const total = manifest.shards.reduce((a, s) => a + s.bytes, 0);
  return (
    `${manifest.tensors.length} tensors, ${manifest.shards.length} shard(s), ${mib(total)} MiB (${dtype}) written to ${resolve(o.outDir)}` +
    (manifest.tokenizer ? ' with tokenizer.json' : '')
  );
}
