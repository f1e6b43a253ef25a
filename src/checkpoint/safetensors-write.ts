import { DTYPE_BYTES, type ElementDType } from './types.ts';

export interface SafetensorsEntry {
  name: string;
  dtype: ElementDType;
  shape: number[];
}

/**
 * The header of a safetensors file whose tensors follow in the given order, back to back.
 * Returns the bytes to write first (8-byte length + JSON, padded with spaces to 8 bytes so the
 * data stays aligned) and each tensor's byte offset within the file.
 */
export function safetensorsHeader(
  entries: SafetensorsEntry[],
  metadata: Record<string, string> = {},
): {
  header: Uint8Array;
  offsets: number[];
  fileBytes: number;
} {
  const json: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const rel: number[] = [];
  for (const e of entries) {
    const bytes = e.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[e.dtype];
    json[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + bytes] };
    rel.push(offset);
    offset += bytes;
  }
  let text = JSON.stringify(json);
  text += ' '.repeat((8 - ((8 + text.length) % 8)) % 8);
  const body = new TextEncoder().encode(text);
  const header = new Uint8Array(8 + body.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(body.length), true);
  header.set(body, 8);
  return { header, offsets: rel.map((o) => o + header.length), fileBytes: header.length + offset };
}
