import { DeviceLimitError, DeviceLostError } from '../errors.ts';
import { PipelineCache } from './pipelines.ts';

/** What a model asks of the adapter, computed from its weight plan before the device exists. */
export interface DeviceRequirements {
  /** The largest single buffer binding the model will create (a stacked expert tensor, lm_head). */
  maxBindingBytes: number;
  /** The largest buffer (may hold several bindings). */
  maxBufferBytes: number;
  /** Storage buffers bound by the widest kernel. */
  storageBuffersPerStage?: number;
  /** Workgroup memory of the hungriest kernel. */
  workgroupStorageBytes?: number;
}

export interface GpuContextOptions {
  /** `navigator.gpu` in a browser, `await nodeGpu()` in Node. */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
}

const OPTIONAL_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];

/**
 * The adapter, the device and the pipeline cache: the only place that knows which features and
 * limits were granted, and that turns a lost device into an error the caller can act on.
 */
export class GpuContext {
  readonly pipelines: PipelineCache;
  private lostReason: GPUDeviceLostInfo | null = null;

  private constructor(
    readonly device: GPUDevice,
    readonly adapterInfo: GPUAdapterInfo,
  ) {
    this.pipelines = new PipelineCache(device);
    this.kernelProfile = this.isCpuAdapter ? 'cpu' : 'gpu';
    this.useSubgroups = this.hasSubgroups;
    this.useShaderF16 = this.hasShaderF16;
    device.lost.then((info) => {
      this.lostReason = info;
    });
  }

  static async create(req: DeviceRequirements, options: GpuContextOptions = {}): Promise<GpuContext> {
    const gpu = options.gpu ?? (typeof navigator !== 'undefined' ? navigator.gpu : undefined);
    if (!gpu) {
      throw new DeviceLimitError(
        'WebGPU is not available here. Use a browser with WebGPU (Chrome or Edge 113+, Safari 26+, Firefox 141+) on a secure (https or localhost) page, or run the Node CLI.',
      );
    }
    const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
    if (!adapter) {
      throw new DeviceLimitError('No WebGPU adapter was found. Check that hardware acceleration is on (chrome://gpu), or update the graphics driver.');
    }
    const limits = adapter.limits;
    const need = (name: keyof GPUSupportedLimits & string, value: number, what: string): number => {
      const have = limits[name as keyof GPUSupportedLimits] as number;
      if (value > have) {
        throw new DeviceLimitError(
          `This GPU allows ${name} = ${have} bytes, but the model needs ${value} for ${what}. Use a smaller or more compressed model (q4), or a device with a larger limit.`,
        );
      }
      return value;
    };
    const requiredLimits: Record<string, number> = {
      maxStorageBufferBindingSize: Math.max(
        need('maxStorageBufferBindingSize', req.maxBindingBytes, 'its largest weight tensor'),
        Math.min(limits.maxStorageBufferBindingSize, 128 << 20),
      ),
      maxBufferSize: Math.max(need('maxBufferSize', req.maxBufferBytes, 'its largest buffer'), Math.min(limits.maxBufferSize, 256 << 20)),
    };
    if (req.storageBuffersPerStage && req.storageBuffersPerStage > 8) {
      requiredLimits.maxStorageBuffersPerShaderStage = need('maxStorageBuffersPerShaderStage', req.storageBuffersPerStage, 'its widest kernel');
    }
    if (req.workgroupStorageBytes && req.workgroupStorageBytes > 16384) {
      requiredLimits.maxComputeWorkgroupStorageSize = need('maxComputeWorkgroupStorageSize', req.workgroupStorageBytes, 'its attention tiles');
    }
    const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
    let device: GPUDevice;
    try {
      device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
    } catch (e) {
      throw new DeviceLimitError(`The GPU refused to create a device for this model: ${(e as Error).message}`, { cause: e });
    }
    return new GpuContext(device, adapter.info);
  }

  get hasShaderF16(): boolean {
    return this.device.features.has('shader-f16');
  }

  /**
   * Whether kernels read f16 weights as native f16 (shader-f16) rather than unpacking u32
   * words. On by default where the device has shader-f16; tests turn it off to cover both.
   * Setting it on without the feature makes the f16 variants fail to compile and fall back to
   * the u32 path (PipelineCache.f16Fallbacks lists them).
   */
  get useShaderF16(): boolean {
    return this.pipelines.nativeF16;
  }

  set useShaderF16(on: boolean) {
    this.pipelines.nativeF16 = on;
  }

  /**
   * A CPU implementation of WebGPU (SwiftShader, or a browser's fallback adapter). There, every
   * workgroup barrier is a switch between CPU fibers, so kernels prefer fewer, longer-running
   * invocations over the cooperative reductions that suit a GPU.
   */
  get isCpuAdapter(): boolean {
    return isCpuEmulation(this.adapterInfo);
  }

  /**
   * Which shape of kernels to plan: 'gpu' (cooperative workgroups) or 'cpu' (one invocation per
   * output). Derived from the adapter; tests set it to cover both variants on one adapter.
   */
  kernelProfile: 'gpu' | 'cpu' = 'gpu';

  get hasSubgroups(): boolean {
    return this.device.features.has('subgroups');
  }

  /**
   * Whether 'gpu'-profile kernels reduce within subgroups (shuffles, no barrier) instead of
   * workgroup-memory trees. Defaults to hasSubgroups; tests turn it off to cover both variants.
   */
  useSubgroups: boolean;

  /** The subgroup variants apply: the device has subgroups, they are wanted, and the profile is 'gpu'. */
  get subgroupReductions(): boolean {
    return this.kernelProfile === 'gpu' && this.useSubgroups && this.hasSubgroups;
  }

  /** A one-line description of the adapter, for benchmarks and bug reports. */
  get description(): string {
    const i = this.adapterInfo;
    return [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' / ') || 'unknown adapter';
  }

  get isLost(): boolean {
    return this.lostReason !== null;
  }

  /** Throws DeviceLostError when the device is gone: the engine must be created anew. */
  assertAlive(): void {
    const lost = this.lostError();
    if (lost) throw lost;
  }

  /** The error that says the device is gone and why, or null while it is alive. */
  lostError(options?: ErrorOptions): DeviceLostError | null {
    if (!this.lostReason) return null;
    return new DeviceLostError(
      `The GPU device was lost (${this.lostReason.reason}: ${this.lostReason.message || 'no message'}). Create a new engine to continue; cached weights are kept.`,
      options,
    );
  }

  destroy(): void {
    this.device.destroy();
  }
}

/** Whether an adapter is WebGPU emulated on the CPU (SwiftShader, or a browser's fallback adapter). */
export function isCpuEmulation(info: GPUAdapterInfo): boolean {
  const i = info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  return i.isFallbackAdapter === true || /swiftshader/i.test(`${i.architecture} ${i.device} ${i.description}`);
}
