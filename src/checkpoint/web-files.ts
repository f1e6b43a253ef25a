import { ModelFormatError, MolmError } from '../errors.ts';
import { fileUrlInside } from '../limits.ts';
import type { ByteSource, FileSource } from './types.ts';

// Browser-side file sources (they also run in Node, which has Blob and fetch). Neither reads a
// whole file: a Blob is sliced, a URL is read with HTTP Range requests, so a multi-gigabyte
// checkpoint streams tensor by tensor.

function checkRange(where: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new ModelFormatError(`${where}: cannot read ${length} bytes at offset ${offset} of a ${size}-byte file.`);
  }
}

/** Files the user picked or dropped (File objects are named by their own name), or named Blobs. */
export function blobFileSource(files: Map<string, Blob> | File[]): FileSource {
  const byName = Array.isArray(files) ? new Map(files.map((f) => [f.name, f as Blob])) : files;
  return {
    location: Array.isArray(files) ? 'the selected files' : 'the given files',
    async open(name: string): Promise<ByteSource | null> {
      const blob = byName.get(name);
      if (!blob) return null;
      return {
        size: blob.size,
        async read(offset: number, length: number): Promise<Uint8Array> {
          checkRange(name, blob.size, offset, length);
          return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
        },
      };
    },
  };
}

/**
 * The files under a base URL (e.g. `https://huggingface.co/<repo>/resolve/main/`), read with
 * HTTP Range requests. The server must answer them with 206 Partial Content; Hugging Face and
 * most static hosts do.
 */
export function urlFileSource(baseUrl: string, fetchImpl: typeof fetch = fetch): FileSource {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  // Called as a plain function: a browser's fetch throws when invoked as a method of another object.
  const get = fetchImpl;
  return {
    location: base,
    async open(name: string): Promise<ByteSource | null> {
      const url = fileUrlInside(base, name, base, 'is the model folder damaged?');
      const size = await probeSize(get, url);
      if (size === null) return null;
      return {
        size,
        async read(offset: number, length: number): Promise<Uint8Array> {
          checkRange(url, size, offset, length);
          if (length === 0) return new Uint8Array(0);
          const res = await request(get, url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
          if (res.status !== 206) {
            await discard(res);
            throw new MolmError(
              res.status === 200
                ? `${url}: the server ignored an HTTP Range request (status 200); molm-web needs a server that supports ranges.`
                : `${url}: HTTP ${res.status} ${res.statusText} for bytes ${offset}-${offset + length - 1}.`,
            );
          }
          const bytes = new Uint8Array(await res.arrayBuffer());
          if (bytes.length !== length) {
            throw new MolmError(`${url}: asked for ${length} bytes at offset ${offset}, the server sent ${bytes.length}.`);
          }
          return bytes;
        },
      };
    },
  };
}

async function request(get: typeof fetch, url: string, init: RequestInit): Promise<Response> {
  try {
    return await get(url, init);
  } catch (e) {
    throw new MolmError(`Could not fetch ${url} (${(e as Error).message}); check the address and the network.`, { cause: e });
  }
}

async function discard(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    // The body is not needed; a failure to cancel it changes nothing.
  }
}

// "bytes 0-0/12345" or "bytes */12345" → 12345; null when absent or unreadable.
function totalFromContentRange(header: string | null): number | null {
  const m = header?.match(/^bytes (?:\d+-\d+|\*)\/(\d+)$/);
  if (!m) return null;
  const total = Number(m[1]);
  return Number.isSafeInteger(total) ? total : null;
}

/** A file's size from a one-byte Range request (or HEAD), or null when the file does not exist. */
async function probeSize(get: typeof fetch, url: string): Promise<number | null> {
  const res = await request(get, url, { headers: { Range: 'bytes=0-0' } });
  await discard(res);
  if (res.status === 404 || res.status === 410) return null;
  if (res.status === 416) {
    // Nothing satisfies bytes=0-0 in an empty file.
    const total = totalFromContentRange(res.headers.get('content-range'));
    if (total === 0) return 0;
  }
  if (res.status === 200) {
    throw new MolmError(`${url}: the server ignored an HTTP Range request (status 200); molm-web needs a server that supports ranges.`);
  }
  if (res.status !== 206) throw new MolmError(`${url}: HTTP ${res.status} ${res.statusText}.`);
  const total = totalFromContentRange(res.headers.get('content-range'));
  if (total !== null) return total;
  // Cross-origin responses hide Content-Range unless the server exposes it; Content-Length of a
  // HEAD response is always visible.
  const head = await request(get, url, { method: 'HEAD' });
  await discard(head);
  const length = head.ok ? Number(head.headers.get('content-length') ?? NaN) : NaN;
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new MolmError(`${url}: the server does not tell the file size (no readable Content-Range or Content-Length).`);
  }
  return length;
}
