import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

// bin/stderr-filter.mjs: what bin/molm.mjs drops from the CLI's stderr unless --verbose. The
// noise below is what Dawn and Mesa print on this project's CI machine (SwiftShader and lavapipe
// offered to Dawn, no desktop session) for one `molm generate --device gpu`.

interface Filter {
  write(text: string): void;
  end(): void;
}
const { StderrFilter, isVerbose } = (await import(pathToFileURL(join(__dirname, '../../bin/stderr-filter.mjs')).href)) as {
  StderrFilter: new (out: (s: string) => void, o?: { holdMs?: number }) => Filter;
  isVerbose: (args: string[]) => boolean;
};

const MEASURED = [
  'error: XDG_RUNTIME_DIR is invalid or not set in the environment.',
  'error: XDG_RUNTIME_DIR is invalid or not set in the environment.',
  'Warning: Vulkan shaderUniform*ArrayDynamicIndexing required.',
  ' - While initializing adapter (backend=BackendType::Vulkan)',
  '    at InitializeImpl (/home/runner/work/node-webgpu/node-webgpu/third_party/dawn/src/dawn/native/vulkan/PhysicalDeviceVk.cpp:257)',
  '',
  '',
].join('\n');

/** The same noise when only a Vulkan driver without a device is offered. */
const NO_DEVICE = [
  'Error: Loader Message: setup_loader_term_phys_devs:  Failed to detect any valid GPUs in the current config',
  'Warning: vkEnumeratePhysicalDevices',
  '    at GatherPhysicalDevices (/home/runner/work/node-webgpu/node-webgpu/third_party/dawn/src/dawn/native/vulkan/VulkanInfo.cpp:147)',
  '',
  '',
].join('\n');

const OTHERS = [
  'WARNING:          vkEnumerateInstanceLayerProperties: Unable to resolve symbol "" in implicit layer library "libVkLayer_MESA_device_select.so"',
  'ERROR: [Loader Message] Code 0 : loader_scanned_icd_add: Could not get vkCreateInstance via vk_icdGetInstanceProcAddr for ICD libGLX_nvidia.so.0',
  'WARNING: lavapipe is not a conformant vulkan implementation, testing use only.',
  'MESA-LOADER: failed to open iris: /usr/lib/dri/iris_dri.so: cannot open shared object file',
  'MESA: error: ZINK: vkCreateInstance failed (VK_ERROR_INCOMPATIBLE_DRIVER)',
  'radv/amdgpu: Failed to allocate a buffer:',
  'libEGL warning: DRI2: failed to authenticate',
  '../../third_party/swiftshader/src/Vulkan/VkPhysicalDevice.cpp:412 WARNING: UNSUPPORTED: pProperties->pNext sType = 1000000000',
  '',
].join('\n');

function filtered(chunks: string[]): string {
  let out = '';
  const f = new StderrFilter((s) => (out += s));
  for (const c of chunks) f.write(c);
  f.end();
  return out;
}

describe('bin/stderr-filter.mjs', () => {
  it('drops the driver noise measured here, whole Dawn warnings with their context lines', () => {
    expect(filtered([MEASURED])).toBe('');
    expect(filtered([NO_DEVICE])).toBe('');
    expect(filtered([OTHERS])).toBe('');
    // However the pipe cuts it.
    const all = MEASURED + 'molm: done\n' + NO_DEVICE + OTHERS;
    for (const size of [1, 7, 64]) {
      const chunks = Array.from({ length: Math.ceil(all.length / size) }, (_, i) => all.slice(i * size, (i + 1) * size));
      expect(filtered(chunks)).toBe('molm: done\n');
    }
  });

  it("keeps the CLI's messages, Node's errors and their JavaScript stacks", () => {
    const kept = [
      'molm: --max-new-tokens must be a whole number from 0 to 1048576, got "abc".',
      '',
      'usage:',
      '  molm generate --model DIR --prompt "text"',
      'Error: something broke',
      '    at main (file:///work/main/dist/cli.mjs:100:5)',
      '(node:123) Warning: a Node warning',
      ' - a line that starts like a Dawn cause, not after a Dawn warning',
      '',
    ].join('\n');
    expect(filtered([kept])).toBe(kept);
    // After a dropped warning, the first line that is none of its context lines is kept.
    expect(filtered(['Warning: x\n - While y\nmolm: real\n    at f (a.cpp:1)\n'])).toBe('molm: real\n    at f (a.cpp:1)\n');
  });

  it('passes a line without its end (progress) on after a short wait, and the rest of that line at once', async () => {
    const out: string[] = [];
    const f = new StderrFilter((s) => out.push(s), { holdMs: 20 });
    f.write(MEASURED);
    f.write('\r1/4 tokens');
    expect(out).toEqual([]);
    await new Promise((r) => setTimeout(r, 60));
    expect(out).toEqual(['\r1/4 tokens']);
    f.write('\r2/4 tokens');
    expect(out.at(-1)).toBe('\r2/4 tokens');
    f.write('\r4/4 tokens\nWarning: late\n - While z\n\nmolm: end\n');
    f.end();
    expect(out.join('')).toBe('\r1/4 tokens\r2/4 tokens\r4/4 tokens\nmolm: end\n');
  });

  it('keeps an unfinished last line unless it is noise', () => {
    expect(filtered(['molm: no newline'])).toBe('molm: no newline');
    expect(filtered(['error: XDG_RUNTIME_DIR is invalid'])).toBe('');
  });

  it('--verbose turns it off', () => {
    expect(isVerbose(['generate', '--verbose'])).toBe(true);
    expect(isVerbose(['generate', '--prompt=--verbose'])).toBe(false);
  });
});
