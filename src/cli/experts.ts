import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { nodeFileSource } from '../checkpoint/node-files.ts';
import { parseConfig } from '../config.ts';
import { UsageError } from '../errors.ts';
import { prunedTensors, selectExperts, type ExpertSelection, type PruneRule } from '../experts/prune.ts';
import { parseExpertUsage, profileExperts, type ExpertUsage } from '../experts/usage.ts';
import { writeConvertedModel } from '../shards/convert.ts';
import { openModelFolder } from '../shards/model-folder.ts';
import { openPacks } from './backend.ts';
import { CONVERT_DTYPES, type ConvertDtype } from '../shards/plan.ts';
import { openModel, openTokenizer, type OpenOptions } from './backend.ts';

// `molm profile` and `molm prune`: which experts a corpus uses, and a model with only those.

export async function runProfile(o: {
  modelDir: string;
  textFile: string;
  out: string;
  window?: number;
  maxTokens?: number;
  open: OpenOptions;
  quiet?: boolean;
}): Promise<ExpertUsage> {
  const text = await readFile(o.textFile, 'utf8');
  const tokenizer = await openTokenizer(o.modelDir);
  let ids = tokenizer.encode(text);
  if (o.maxTokens !== undefined) ids = ids.slice(0, o.maxTokens);
  const model = await openModel(o.modelDir, o.open);
  try {
    const usage = await profileExperts(model, ids, {
      window: o.window ?? Math.min(512, model.maxContext),
      onWindow: o.quiet ? undefined : (done, total) => process.stderr.write(`\r${done}/${total} tokens`),
    });
    if (!o.quiet) process.stderr.write('\n');
    await writeFile(o.out, JSON.stringify(usage, null, 1) + '\n');
    return usage;
  } finally {
    model.close();
  }
}

export interface PruneSummary {
  out: string;
  dtype: ConvertDtype;
  kept: ExpertSelection;
  bytes: number;
  sourceBytes: number | null;
}

export async function runPrune(o: {
  modelDir: string;
  usageFile: string;
  rule: PruneRule;
  outDir: string;
  dtype?: string;
  packs?: string[];
}): Promise<PruneSummary> {
  if (resolve(o.modelDir) === resolve(o.outDir)) throw new UsageError('--out must be a new folder, not the model being pruned.');
  const files = nodeFileSource(o.modelDir);
  const { config, rawConfig, tensors, manifest } = await openModelFolder(files, { packs: await openPacks(o.packs) });
  try {
    const usage = parseExpertUsage(JSON.parse(await readFile(o.usageFile, 'utf8')), config, o.usageFile);
    const dtype = (o.dtype ?? manifest?.dtype ?? 'f32') as ConvertDtype;
    if (!CONVERT_DTYPES.includes(dtype)) throw new UsageError(`--dtype must be one of ${CONVERT_DTYPES.join(', ')}, got "${dtype}".`);
    const kept = selectExperts(usage, o.rule);
    const pruned = prunedTensors(tensors, config, kept);
    // The original expert ids stay in the config, so the pruned model says what it came from.
    const prunedConfig = { ...rawConfig, ...pruned.config, molm_kept_experts: kept };
    const written = await writeConvertedModel({
      config: parseConfig(prunedConfig),
      rawConfig: prunedConfig,
      tensors: pruned.tensors,
      tokenizerFrom: files,
      outDir: o.outDir,
      dtype,
    });
    const size = (m: { shards: { bytes: number }[] } | null) => (m ? m.shards.reduce((a, s) => a + s.bytes, 0) : null);
    return { out: o.outDir, dtype, kept, bytes: size(written)!, sourceBytes: size(manifest) };
  } finally {
    await tensors.close();
  }
}
