import { createUniform } from '../gpu/buffers.ts';

/**
 * The per-step uniform every kernel reads (shaders/lib/step.wgsl): how many token rows this
 * step carries and the absolute position of its first row. Written once per step, before the
 * step's commands are submitted; it is the only thing the CPU writes during decode.
 */
export class StepUniform {
  readonly buffer: GPUBuffer;
  private readonly data = new Uint32Array(4);

  constructor(private readonly device: GPUDevice) {
    this.buffer = createUniform(device, 16, 'step');
  }

  write(rows: number, pos: number): void {
    this.data[0] = rows;
    this.data[1] = pos;
    this.device.queue.writeBuffer(this.buffer, 0, this.data);
  }
}
