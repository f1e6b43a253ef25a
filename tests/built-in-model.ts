import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { nodeFileSource } from '../src/checkpoint/node-files.ts';
import { LocalEngine } from '../src/engine/engine.ts';
import { referenceTokenModel } from '../src/reference/token-model.ts';
import { MolmTokenizer } from '../src/engine/tokenizer.ts';
import { ReferenceModel, loadReferenceWeights } from '../src/reference/model.ts';
import { openModelFolder } from '../src/shards/model-folder.ts';

// The model molm-web ships (tools/train → molm convert → public/models/), used by the tests
// that need real text: a trained MoLM with the real tokenizer.
export const BUILT_IN_MODEL = {
  /** The converted folder, relative to the repository root (Node). */
  dir: 'public/models/molm-brown',
  /** The same folder as the Vite server publishes it (relative to the server's root URL). */
  url: 'models/molm-brown/',
};

/**
 * A copy of the built-in model in `dir` (its weights linked, not copied) whose tokenizer's
 * decoder also replaces `pattern` by `content` in every piece it decodes: a real model whose
 * output holds whatever text a test needs. The manifest lists the new tokenizer's size and hash.
 */
export function builtInModelDecoding(dir: string, pattern: string, content: string): void {
  mkdirSync(dir, { recursive: true });
  symlinkSync(resolve(BUILT_IN_MODEL.dir, 'shard-00000.bin'), join(dir, 'shard-00000.bin'));
  const tokenizer = JSON.parse(readFileSync(join(BUILT_IN_MODEL.dir, 'tokenizer.json'), 'utf8'));
  tokenizer.decoder = { type: 'Sequence', decoders: [tokenizer.decoder, { type: 'Replace', pattern: { String: pattern }, content }] };
  const bytes = Buffer.from(JSON.stringify(tokenizer));
  writeFileSync(join(dir, 'tokenizer.json'), bytes);
  const manifest = JSON.parse(readFileSync(join(BUILT_IN_MODEL.dir, 'manifest.json'), 'utf8'));
  manifest.tokenizer = { ...manifest.tokenizer, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
}

/** The built-in model's tokenizer. */
export function builtInTokenizer(): MolmTokenizer {
  return MolmTokenizer.fromJson(readFileSync(join(BUILT_IN_MODEL.dir, 'tokenizer.json'), 'utf8'));
}

/** The text engine over the float64 CPU reference of the built-in model: the GPU tests' twin. */
export async function builtInReferenceEngine(maxContext: number): Promise<LocalEngine> {
  const { config, tensors } = await openModelFolder(nodeFileSource(BUILT_IN_MODEL.dir));
  const weights = await loadReferenceWeights(tensors);
  await tensors.close();
  return new LocalEngine(referenceTokenModel(new ReferenceModel(config, weights), maxContext), builtInTokenizer());
}
