import { ModelFormatError, MolmError } from '../errors.ts';
import { LIMITS, fileUrlInside } from '../limits.ts';
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
 * most static hosts do. A JSON file (config.json, an index, tokenizer.json) is read whole anyway,
 * so a server that sends it whole (200) is accepted for it, up to the size a JSON file may have.
 *
 * Redirects are followed (the hub answers `resolve` with a 302 to its CDN), and a file's reads go
 * straight to where its first request ended, so a checkpoint of a few hundred tensors costs the
 * redirecting server one request per file, not one per tensor. A read that target refuses (a
 * signed CDN address that expired) goes through the original URL once more.
 *
 * Every answer must carry the ETag and total size of the first one: a file replaced on the server
 * while it is read would otherwise mix the bytes of two versions into one model.
 */
export function urlFileSource(baseUrl: string, fetchImpl: typeof fetch = fetch): FileSource {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  // Called as a plain function: a browser's fetch throws when invoked as a method of another object.
  const get = fetchImpl;
  return {
    location: base,
    async open(name: string): Promise<ByteSource | null> {
      const url = fileUrlInside(base, name, base, 'is the model folder damaged?');
      const probe = await probeFile(get, url, name.endsWith('.json'));
      if (probe === null) return null;
      if ('whole' in probe) return memoryByteSource(probe.whole, url);
      const { size, etag } = probe;
      let target = probe.target;
      return {
        size,
        async read(offset: number, length: number): Promise<Uint8Array> {
          checkRange(url, size, offset, length);
          if (length === 0) return new Uint8Array(0);
          const range = `bytes=${offset}-${offset + length - 1}`;
          let res = await request(get, target, { headers: { Range: range } });
          if (target !== url && REFUSED.has(res.status)) {
            await discard(res);
            res = await request(get, url, { headers: { Range: range } });
            target = finalUrl(res, url);
          }
          if (res.status !== 206) {
            await discard(res);
            throw new MolmError(
              res.status === 200
                ? `${url}: the server ignored an HTTP Range request (status 200); molm-web needs a server that supports ranges.`
                : `${url}: HTTP ${res.status} ${res.statusText} for bytes ${offset}-${offset + length - 1}.`,
            );
          }
          const now = res.headers.get('etag');
          const total = totalFromContentRange(res.headers.get('content-range'));
          if ((etag !== null && now !== null && weakEtag(now) !== weakEtag(etag)) || (total !== null && total !== size)) {
            await discard(res);
            const what = total !== null && total !== size ? `its size went from ${size} to ${total} bytes` : `its ETag went from ${etag} to ${now}`;
            throw new MolmError(`${url} changed on the server while it was being read (${what}); start the import (or load) again.`);
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

/** Answers of a redirect target that a fresh redirect may cure (an expired or revoked signed URL). */
const REFUSED = new Set([401, 403, 404, 410]);

/** Where a request ended after its redirects; Responses built by hand (tests) have no url. */
function finalUrl(res: Response, requested: string): string {
  return res.redirected && res.url ? res.url : requested;
}

/** W/"x" and "x" name the same content for this purpose: either one changing means new bytes. */
function weakEtag(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

function memoryByteSource(bytes: Uint8Array, where: string): ByteSource {
  return {
    size: bytes.byteLength,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange(where, bytes.byteLength, offset, length);
      return bytes.slice(offset, offset + length);
    },
  };
}

async function request(get: typeof fetch, url: string, init: RequestInit): Promise<Response> {
  try {
    return await get(url, init);
  } catch (e) {
    // A wrapping fetch (the hub's) may already say what went wrong.
    if (e instanceof MolmError) throw e;
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

type Probe = { size: number; etag: string | null; target: string } | { whole: Uint8Array };

/**
 * A file's size, ETag and final URL from a one-byte Range request (the size from HEAD when
 * Content-Range is hidden), or the whole file where `wholeOk` and the server sent it whole; null
 * when the file does not exist.
 */
async function probeFile(get: typeof fetch, url: string, wholeOk: boolean): Promise<Probe | null> {
  const res = await request(get, url, { headers: { Range: 'bytes=0-0' } });
  if (res.status === 200 && wholeOk) return { whole: await readBounded(res, url, LIMITS.indexBytes) };
  await discard(res);
  if (res.status === 404 || res.status === 410) return null;
  const target = finalUrl(res, url);
  const etag = res.headers.get('etag');
  if (res.status === 416) {
    // Nothing satisfies bytes=0-0 in an empty file.
    const total = totalFromContentRange(res.headers.get('content-range'));
    if (total === 0) return { size: 0, etag, target };
  }
  if (res.status === 200) {
    throw new MolmError(`${url}: the server ignored an HTTP Range request (status 200); molm-web needs a server that supports ranges.`);
  }
  if (res.status !== 206) throw new MolmError(`${url}: HTTP ${res.status} ${res.statusText}.`);
  const total = totalFromContentRange(res.headers.get('content-range'));
  if (total !== null) return { size: total, etag, target };
  // Cross-origin responses hide Content-Range unless the server exposes it; Content-Length of a
  // HEAD response is always visible.
  const head = await request(get, target, { method: 'HEAD' });
  await discard(head);
  const length = head.ok ? Number(head.headers.get('content-length') ?? NaN) : NaN;
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new MolmError(`${url}: the server does not tell the file size (no readable Content-Range or Content-Length).`);
  }
  return { size: length, etag, target };
}

/** A response body of at most `max` bytes; a larger one is refused before it is all read. */
async function readBounded(res: Response, url: string, max: number): Promise<Uint8Array> {
  const tooLarge = () => new ModelFormatError(`${url} is more than the ${max} bytes such a file may have; is it the right file?`);
  if (Number(res.headers.get('content-length') ?? 0) > max) {
    await discard(res);
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body?.getReader();
  if (reader) {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > max) {
        await reader.cancel().catch(() => {});
        throw tooLarge();
      }
      chunks.push(value);
    }
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
