import { open, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfig } from '../config.ts';
import { f32ToBf16, f32ToF16 } from '../checkpoint/dtype.ts';
import { safetensorsHeader } from '../checkpoint/safetensors-write.ts';
import type { ElementDType } from '../checkpoint/types.ts';
import { UsageError } from '../errors.ts';
import { expectedTensorShapes } from '../tensor-names.ts';

export interface SynthOptions {
  configPath: string;
  layers?: number;
  outDir: string;
  dtype?: 'F32' | 'BF16' | 'F16';
  seed?: number;
  /** Overrides of config.json keys (e.g. n_mlp_experts for the sparsity benchmark). */
  overrides?: Record<string, number>;
  log?: (line: string) => void;
}

/**
 * Writes a random-weight checkpoint of a config's shapes (config.json + model.safetensors), one
 * tensor at a time so that a multi-GB model never sits in memory. Weights are uniform with the
 * config's initializer_range as standard deviation; LayerNorms start at weight 1, bias 0.
 */
export async function synthesize(o: SynthOptions): Promise<void> {
  const raw = JSON.parse(await readFile(o.configPath, 'utf8')) as Record<string, unknown>;
  if (o.layers !== undefined) raw.n_layer = o.layers;
  Object.assign(raw, o.overrides ?? {});
  const dtype = o.dtype ?? 'BF16';
  if (!['F32', 'BF16', 'F16'].includes(dtype)) throw new UsageError(`--dtype must be f32, bf16 or f16, got ${dtype}`);
  raw.torch_dtype = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' }[dtype];
  const config = parseConfig(raw);
  const std = typeof raw.initializer_range === 'number' ? raw.initializer_range : 0.02;
  const shapes = [...expectedTensorShapes(config)].map(([name, shape]) => ({ name, shape, dtype: dtype as ElementDType }));
  const { header, fileBytes } = safetensorsHeader(shapes, { format: 'pt', generator: 'molm synth' });

  await mkdir(o.outDir, { recursive: true });
  await writeFile(join(o.outDir, 'config.json'), JSON.stringify(raw, null, 2) + '\n');
  const file = await open(join(o.outDir, 'model.safetensors'), 'w');
  try {
    await file.write(header);
    let state = (o.seed ?? 1) >>> 0 || 1;
    const half = std * Math.sqrt(3); // uniform(-a, a) has standard deviation a / sqrt(3)
    let written = header.length;
    for (const { name, shape } of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const isVector = shape.length === 1;
      const isLnWeight = /\.ln_\w+\.weight$|ln_f\.weight$/.test(name);
      const values = new Float32Array(n);
      if (isLnWeight) values.fill(1);
      else if (!isVector) {
        for (let i = 0; i < n; i++) {
          state ^= state << 13;
          state ^= state >>> 17;
          state ^= state << 5;
          values[i] = (((state >>> 0) / 4294967296) * 2 - 1) * half;
        }
      }
      let bytes: Uint8Array;
      if (dtype === 'F32') bytes = new Uint8Array(values.buffer);
      else {
        const round = dtype === 'BF16' ? f32ToBf16 : f32ToF16;
        const u16 = new Uint16Array(n);
        for (let i = 0; i < n; i++) u16[i] = round(values[i]);
        bytes = new Uint8Array(u16.buffer);
      }
      await file.write(bytes);
      written += bytes.length;
      o.log?.(`${name} [${shape}] ${((written / fileBytes) * 100).toFixed(0)}%`);
    }
  } finally {
    await file.close();
  }
}
