import { hasF16Weights } from './weight-accessors.ts';
import { preprocess, type Variant } from './wgsl.ts';

/**
 * Compiled compute pipelines keyed by shader and variant. Layers with the same shapes share one
 * pipeline; everything is compiled at load time, never during a token.
 */
export class PipelineCache {
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();
  /**
   * Variants with f16 weights read them as native f16 (`enable f16;`) instead of unpacking u32
   * words: set by GpuContext where the device has shader-f16.
   */
  nativeF16 = false;
  /** Native-f16 variants that failed to compile and run on the u32 path instead. */
  readonly f16Fallbacks: string[] = [];

  constructor(private readonly device: GPUDevice) {}

  get(shader: string, variant: Variant = {}): Promise<GPUComputePipeline> {
    if (this.nativeF16 && hasF16Weights(variant.weights) && !variant.enables?.includes('f16')) {
      const native = { ...variant, enables: [...(variant.enables ?? []), 'f16'] };
      // A driver that advertises shader-f16 but rejects a variant must not stop the model: the
      // unpacking path computes the same values.
      return this.cached(shader, native).catch((e: Error) => {
        this.f16Fallbacks.push(`${shader}: ${e.message.split('\n')[0]}`);
        return this.cached(shader, variant);
      });
    }
    return this.cached(shader, variant);
  }

  private cached(shader: string, variant: Variant): Promise<GPUComputePipeline> {
    const key = `${shader} ${JSON.stringify(variant)}`;
    let p = this.pipelines.get(key);
    if (!p) {
      p = this.compile(shader, variant, key);
      this.pipelines.set(key, p);
    }
    return p;
  }

  get size(): number {
    return this.pipelines.size;
  }

  private async compile(shader: string, variant: Variant, label: string): Promise<GPUComputePipeline> {
    const code = preprocess(shader, variant);
    // A module that does not compile also raises a validation error; scoped here so that a
    // variant the caller can fall back from does not reach the device's uncaptured errors.
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code, label });
    const invalid = this.device.popErrorScope();
    const info = await module.getCompilationInfo();
    await invalid;
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length) {
      const lines = code.split('\n');
      const detail = errors.map((m) => `  line ${m.lineNum}: ${m.message}\n    ${lines[m.lineNum - 1] ?? ''}`).join('\n');
      throw new Error(`WGSL compilation failed for ${label}:\n${detail}`);
    }
    return this.device.createComputePipelineAsync({ label, layout: 'auto', compute: { module, entryPoint: 'main' } });
  }
}
