import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { nodeFileSource } from '../checkpoint/node-files.ts';
import { safetensorsHeader } from '../checkpoint/safetensors-write.ts';
import { UsageError } from '../errors.ts';
import { decodeTensor } from '../quant/decode.ts';
import { readFolderTokenizer } from '../shards/load-tokenizer.ts';
import { openModelFolder } from '../shards/model-folder.ts';
import { expectedTensorShapes } from '../tensor-names.ts';
import { openPackFolder } from './load-pack.ts';

// `molm merge`: a base with packs merged in, written as an ordinary Hugging Face checkpoint
// (config.json, F32 model.safetensors, tokenizer.json) that PyTorch, or any MoLM reader, loads.

export interface MergeSummary {
  out: string;
  nAttExperts: number;
  nMlpExperts: number;
  gatingSize: number;
  bytes: number;
}

export async function runMerge(o: { modelDir: string; packDirs: string[]; outDir: string }): Promise<MergeSummary> {
  if ([o.modelDir, ...o.packDirs].some((d) => resolve(d) === resolve(o.outDir))) throw new UsageError('--out must be a new folder, not the model or a pack.');
  const packs = [];
  for (const dir of o.packDirs) packs.push(await openPackFolder(nodeFileSource(dir)));
  const files = nodeFileSource(o.modelDir);
  const { config, rawConfig, tensors } = await openModelFolder(files, { packs });
  try {
    await mkdir(o.outDir, { recursive: true });
    const shapes = [...expectedTensorShapes(config)];
    const { header, fileBytes } = safetensorsHeader(
      shapes.map(([name, shape]) => ({ name, dtype: 'F32', shape })),
      { format: 'pt', generator: 'molm merge' },
    );
    // Written under a temporary name and renamed: an interrupted merge leaves no model.safetensors.
    const tmp = join(o.outDir, 'model.safetensors.tmp');
    const file = await open(tmp, 'w');
    try {
      await file.write(header);
      for (const [name] of shapes) {
        const values = decodeTensor(await tensors.read(name), tensors.tensors.get(name)!);
        await file.write(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      }
    } finally {
      await file.close();
    }
    await rename(tmp, join(o.outDir, 'model.safetensors'));
    await writeFile(join(o.outDir, 'config.json'), JSON.stringify({ ...rawConfig, torch_dtype: 'float32' }, null, 2) + '\n');
    const tokenizer = await readFolderTokenizer(files);
    if (tokenizer !== null) await writeFile(join(o.outDir, 'tokenizer.json'), tokenizer);
    else await rm(join(o.outDir, 'tokenizer.json'), { force: true });
    return { out: o.outDir, nAttExperts: config.nAttExperts, nMlpExperts: config.nMlpExperts, gatingSize: config.gatingSize, bytes: fileBytes };
  } finally {
    await tensors.close();
  }
}
