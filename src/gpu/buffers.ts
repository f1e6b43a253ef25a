/** Storage-buffer helpers. All allocation happens at load time. */

const STORAGE = 0x80; // GPUBufferUsage.STORAGE, usable before the globals exist in Node
const COPY_SRC = 0x04;
const COPY_DST = 0x08;
const UNIFORM = 0x40;
const MAP_READ = 0x01;

/** Rounds up to the 4-byte multiple that writeBuffer and bindings require. */
export function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

export function createStorage(device: GPUDevice, bytes: number, label: string): GPUBuffer {
  return device.createBuffer({ label, size: Math.max(16, align4(bytes)), usage: STORAGE | COPY_SRC | COPY_DST });
}

export function createUniform(device: GPUDevice, bytes: number, label: string): GPUBuffer {
  return device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: UNIFORM | COPY_DST });
}

export function createReadback(device: GPUDevice, bytes: number, label: string): GPUBuffer {
  return device.createBuffer({ label, size: Math.max(16, align4(bytes)), usage: MAP_READ | COPY_DST });
}

/** Uploads bytes, padding to a 4-byte multiple (writeBuffer needs it). */
export function writeBytes(device: GPUDevice, buffer: GPUBuffer, offset: number, bytes: Uint8Array): void {
  if (bytes.byteLength % 4 === 0) {
    device.queue.writeBuffer(buffer, offset, bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return;
  }
  const padded = new Uint8Array(align4(bytes.byteLength));
  padded.set(bytes);
  device.queue.writeBuffer(buffer, offset, padded);
}

/** A storage buffer holding `data` (test and load-time use). */
export function uploadStorage(device: GPUDevice, data: ArrayBufferView, label: string): GPUBuffer {
  const buffer = createStorage(device, data.byteLength, label);
  writeBytes(device, buffer, 0, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return buffer;
}

/** Copies a buffer range to the CPU. Tests and load-time checks only: never inside a token. */
export async function readBuffer(device: GPUDevice, src: GPUBuffer, offset = 0, bytes = src.size - offset): Promise<ArrayBuffer> {
  const staging = createReadback(device, bytes, 'readback');
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, offset, staging, 0, align4(bytes));
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(MAP_READ);
  const out = staging.getMappedRange(0, align4(bytes)).slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return out;
}
