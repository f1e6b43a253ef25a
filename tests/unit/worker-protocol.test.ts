import { describe, expect, it } from 'vitest';
import { DeviceLostError, ModelFormatError, MolmError } from '../../src/errors.ts';
import { deserializeError, serializeError } from '../../src/engine/worker-protocol.ts';

// What an error keeps when it crosses the worker boundary: structuredClone stands in for
// postMessage (the same algorithm), so the test sees exactly what a page receives.
const cross = (e: unknown) => deserializeError(structuredClone(serializeError(e)));

describe('errors across the engine worker', () => {
  it('keep their class, message, stack and chain of causes', () => {
    const network = new TypeError('Failed to fetch');
    const format = new ModelFormatError('shard-00001.bin is damaged', { cause: network });
    const lost = new DeviceLostError('The GPU device was lost', { cause: format });
    const back = cross(lost);
    expect(back).toBeInstanceOf(DeviceLostError);
    expect(back).toBeInstanceOf(MolmError);
    expect(back.message).toBe(lost.message);
    expect(back.stack).toBe(lost.stack);
    const cause = back.cause as Error;
    expect(cause).toBeInstanceOf(ModelFormatError);
    expect(cause.message).toBe(format.message);
    const root = cause.cause as Error;
    expect(root).toBeInstanceOf(Error);
    expect(root.name).toBe('TypeError');
    expect(root.message).toBe('Failed to fetch');
  });

  it("an error that is not molm-web's keeps its name; a cyclic cause chain is cut", () => {
    const odd = new RangeError('out of range');
    expect(cross(odd).name).toBe('RangeError');
    expect(cross('a string thrown').message).toBe('a string thrown');
    const a = new MolmError('a');
    const b = new MolmError('b', { cause: a });
    (a as { cause?: unknown }).cause = b;
    let depth = 0;
    for (let e: unknown = cross(a); e instanceof Error; e = e.cause) depth++;
    expect(depth).toBe(9);
  });
});
