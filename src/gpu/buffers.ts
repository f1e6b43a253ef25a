/** Storage-buffer helpers. All allocation happens at load time. */

/**
 * GPUBufferUsage's flags by value: Node has the GPUBufferUsage global only once nodeGpu() has
 * installed Dawn's globals, and a module may be imported (and its constants read) before that.
 * The one definition of these numbers in src/; everything else names them from here.
 */
export const BufferUsage = {
  MAP_READ: 0x0001,
  MAP_WRITE: 0x0002,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
  QUERY_RESOLVE: 0x0200,
} as const;

/** GPUMapMode's flags by value, for the same reason as BufferUsage. */
export const MapMode = { READ: 0x0001, WRITE: 0x0002 } as const;

const { STORAGE, COPY_SRC, COPY_DST, UNIFORM, MAP_READ } = BufferUsage;

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
