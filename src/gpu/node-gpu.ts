import { existsSync, readdirSync } from 'node:fs';
import { DeviceLimitError } from '../errors.ts';

// Node gets WebGPU from Dawn through the `webgpu` package. On a machine without a GPU driver,
// Debian's chromium package ships SwiftShader (a CPU Vulkan driver) that Dawn accepts.
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];

function systemVulkanDrivers(): string[] {
  return ICD_DIRS.flatMap((dir) =>
    existsSync(dir)
      ? readdirSync(dir)
          .filter((f) => f.endsWith('.json'))
          .map((f) => `${dir}/${f}`)
      : [],
  );
}

let cached: GPU | undefined;

/**
 * The `navigator.gpu` of Node. Falls back to SwiftShader when no Vulkan driver is installed,
 * unless the caller already chose one with VK_ICD_FILENAMES / VK_DRIVER_FILES.
 */
export async function nodeGpu(): Promise<GPU> {
  if (cached) return cached;
  const env = process.env;
  if (!env.VK_ICD_FILENAMES && !env.VK_DRIVER_FILES && existsSync(SWIFTSHADER_ICD)) {
    // Offer the system drivers and SwiftShader together: Dawn drops the ones it cannot use
    // (Mesa's lavapipe, drivers without their hardware) and a real GPU wins the adapter request.
    env.VK_ICD_FILENAMES = [...systemVulkanDrivers(), SWIFTSHADER_ICD].join(':');
  }
  let mod: typeof import('webgpu');
  try {
    mod = await import('webgpu');
  } catch (e) {
    throw new DeviceLimitError(`The "webgpu" package (Dawn for Node) could not be loaded: ${(e as Error).message}. Run \`npm ci\`, or use --device cpu.`);
  }
  Object.assign(globalThis, mod.globals);
  cached = mod.create([]);
  return cached;
}
