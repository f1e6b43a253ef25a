import { type ModelConfig, parseConfig } from '../config.ts';
import { expectedTensorShapes, isUnusedBuffer } from '../tensor-names.ts';
import { ModelFormatError } from '../errors.ts';
import { LIMITS, checkFileName, parseJsonObject, readBounded } from '../limits.ts';
import { formatShape } from './bytes.ts';
import { openSafetensors } from './safetensors.ts';
import type { TensorFile } from './tensor-file.ts';
import { openTorchBin } from './torch-bin.ts';
import type { ByteSource, FileSource, TensorInfo, TensorSource } from './types.ts';

// A Hugging Face checkpoint folder: config.json plus the weights in one of the four layouts
// save_pretrained produces. The first layout found wins, in the order below (safetensors first:
// it is the faster and safer format when a repository ships both).

export interface Checkpoint {
  config: ModelConfig;
  rawConfig: Record<string, unknown>;
  tensors: TensorSource;
}

const LAYOUTS = [
  { file: 'model.safetensors', sharded: false },
  { file: 'model.safetensors.index.json', sharded: true },
  { file: 'pytorch_model.bin', sharded: false },
  { file: 'pytorch_model.bin.index.json', sharded: true },
] as const;

/**
 * Opens a checkpoint folder: parses config.json, indexes the weights and checks that every tensor
 * the model needs is there with the right shape and a float dtype. No weights are read yet.
 */
export async function openCheckpoint(files: FileSource): Promise<Checkpoint> {
  const rawConfig = await readJson(files, 'config.json');
  if (rawConfig === null) {
    throw new ModelFormatError(`${files.location} has no config.json; a Hugging Face checkpoint folder needs one next to the weights.`);
  }
  const config = parseConfig(rawConfig);
  const tensors = await openWeights(files);
  try {
    validateTensors(config, tensors);
  } catch (e) {
    await tensors.close();
    throw e;
  }
  return { config, rawConfig, tensors: withoutUnusedBuffers(tensors) };
}

/** Opens the weights of a folder in its first layout found, as one set of tensors. */
async function openWeights(files: FileSource): Promise<TensorFile> {
  for (const { file, sharded } of LAYOUTS) {
    if (sharded) {
      const index = await readJson(files, file);
      if (index !== null) return openSharded(files, file, index);
    } else {
      const source = await files.open(file);
      if (source !== null) return openWeightsFile(source, file);
    }
  }
  throw new ModelFormatError(
    `${files.location} holds no weights: looked for ${LAYOUTS.map((l) => l.file).join(', ')}. ` + 'Download the whole Hugging Face model folder.',
  );
}

async function openWeightsFile(source: ByteSource, file: string): Promise<TensorFile> {
  try {
    return file.endsWith('.safetensors') ? await openSafetensors(source, file) : await openTorchBin(source, file);
  } catch (e) {
    await source.close?.();
    throw e;
  }
}

async function readJson(files: FileSource, name: string): Promise<Record<string, unknown> | null> {
  const source = await files.open(name);
  if (source === null) return null;
  const limits = { what: name, maxBytes: name === 'config.json' ? LIMITS.configBytes : LIMITS.indexBytes, fix: 're-download it' };
  return parseJsonObject(await readBounded(source, limits), limits);
}

/** A sharded checkpoint: `weight_map` names, for each tensor, the shard file that holds it. */
async function openSharded(files: FileSource, indexName: string, index: Record<string, unknown>): Promise<TensorFile> {
  const map = index.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    throw new ModelFormatError(`${indexName} has no "weight_map" object; re-download it.`);
  }
  const weightMap = map as Record<string, unknown>;
  const shardNames = new Set<string>();
  for (const [tensor, shard] of Object.entries(weightMap)) {
    if (tensor.length > LIMITS.tensorNameLength) {
      throw new ModelFormatError(
        `${indexName}: a tensor name is ${tensor.length} characters long, more than the ${LIMITS.tensorNameLength} a name may have; re-download it.`,
      );
    }
    // Shard names come from the index file: only plain names next to it, never a path or a URL.
    shardNames.add(checkFileName(shard, `${indexName}: the shard of tensor "${tensor}"`, 're-download it'));
  }

  const shards = new Map<string, TensorFile>();
  const closeAll = () => Promise.all([...shards.values()].map((s) => s.close()));
  try {
    for (const name of shardNames) {
      const source = await files.open(name);
      if (source === null) {
        throw new ModelFormatError(`${files.location} lacks ${name}, a shard that ${indexName} lists; download the whole model folder.`);
      }
      shards.set(name, await openWeightsFile(source, name));
    }
    const owner = new Map<string, TensorFile>();
    const tensors = new Map<string, TensorInfo>();
    const unreadable = new Map<string, string>();
    for (const [tensor, shardName] of Object.entries(weightMap) as [string, string][]) {
      const shard = shards.get(shardName)!;
      const info = shard.tensors.get(tensor);
      const dtype = shard.unreadable.get(tensor);
      if (info) tensors.set(tensor, info);
      else if (dtype !== undefined) unreadable.set(tensor, dtype);
      else throw new ModelFormatError(`${indexName} places tensor "${tensor}" in ${shardName}, which does not hold it; re-download the model folder.`);
      owner.set(tensor, shard);
    }
    return {
      fileName: indexName,
      tensors,
      unreadable,
      async read(name: string): Promise<Uint8Array> {
        const shard = owner.get(name);
        if (!shard) throw new ModelFormatError(`The checkpoint has no tensor "${name}".`);
        return shard.read(name);
      },
      async close(): Promise<void> {
        await closeAll();
      },
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/** Checks the tensors the math needs against config.json; extra tensors are fine. */
function validateTensors(config: ModelConfig, file: TensorFile): void {
  const missing: string[] = [];
  for (const [name, shape] of expectedTensorShapes(config)) {
    const info = file.tensors.get(name);
    const unreadable = file.unreadable.get(name);
    if (unreadable !== undefined) {
      throw new ModelFormatError(
        `${file.fileName}: tensor "${name}" is stored as ${unreadable}; molm-web needs float weights (F32, F16 or BF16). ` + 'Re-convert the checkpoint.',
      );
    }
    if (!info) {
      missing.push(`"${name}" ${formatShape(shape)}`);
      continue;
    }
    if (info.dtype === 'I8') {
      throw new ModelFormatError(
        `${file.fileName}: tensor "${name}" is stored as I8; molm-web needs float weights (F32, F16 or BF16). Re-convert the checkpoint.`,
      );
    }
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(
        `${file.fileName}: tensor "${name}" has shape ${formatShape(info.shape)}, but config.json implies ${formatShape(shape)}. ` +
          'The weights and config.json belong to different models; download them from the same repository.',
      );
    }
  }
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).join(', ') + (missing.length > 5 ? `, and ${missing.length - 5} more` : '');
    throw new ModelFormatError(
      `${file.fileName} lacks ${missing.length} tensor(s) the model needs: ${shown}. ` + 'Is it a complete ModuleFormer checkpoint for this config.json?',
    );
  }
}

/** The checkpoint's tensors as the engine sees them: without attn.mask / attn.cum_weight. */
function withoutUnusedBuffers(file: TensorFile): TensorSource {
  const tensors = new Map([...file.tensors].filter(([name]) => !isUnusedBuffer(name)));
  return {
    tensors,
    read(name: string): Promise<Uint8Array> {
      if (!tensors.has(name)) return Promise.reject(new ModelFormatError(`The checkpoint has no tensor "${name}".`));
      return file.read(name);
    },
    close: () => file.close(),
  };
}
