import { preprocess, type Variant } from './wgsl.ts';

/**
 * Compiled compute pipelines keyed by shader and variant. Layers with the same shapes share one
 * pipeline; everything is compiled at load time, never during a token.
 */
export class PipelineCache {
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();

  constructor(private readonly device: GPUDevice) {}

  get(shader: string, variant: Variant = {}): Promise<GPUComputePipeline> {
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
    const module = this.device.createShaderModule({ code, label });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length) {
      const lines = code.split('\n');
      const detail = errors.map((m) => `  line ${m.lineNum}: ${m.message}\n    ${lines[m.lineNum - 1] ?? ''}`).join('\n');
      throw new Error(`WGSL compilation failed for ${label}:\n${detail}`);
    }
    return this.device.createComputePipelineAsync({ label, layout: 'auto', compute: { module, entryPoint: 'main' } });
  }
}
