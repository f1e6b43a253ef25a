import { hasKvProjections, kvWidth, type ModelConfig } from '../config.ts';
import { createStorage } from '../gpu/buffers.ts';

/**
 * Keys and values of every cached token, one f32 tensor [maxContext, width] per layer. MoLM's
 * keys ARE its values (the ln_1 output), so for MoLM `values[l] === keys[l]` and the cache costs
 * half of what a k/v model's does.
 */
export class KvCache {
  readonly keys: GPUBuffer[] = [];
  readonly values: GPUBuffer[] = [];
  readonly width: number;
  /** Tokens whose keys are in the cache; the next token goes to this position. */
  length = 0;

  constructor(
    device: GPUDevice,
    config: ModelConfig,
    readonly maxContext: number,
  ) {
    this.width = kvWidth(config);
    const shared = !hasKvProjections(config);
    for (let l = 0; l < config.nLayer; l++) {
      const k = createStorage(device, maxContext * this.width * 4, `kv.${l}.keys`);
      this.keys.push(k);
      this.values.push(shared ? k : createStorage(device, maxContext * this.width * 4, `kv.${l}.values`));
    }
  }

  get layerBytes(): number {
    return this.maxContext * this.width * 4;
  }

  get bytes(): number {
    return new Set([...this.keys, ...this.values]).size * this.layerBytes;
  }

  destroy(): void {
    for (const b of new Set([...this.keys, ...this.values])) b.destroy();
  }
}
