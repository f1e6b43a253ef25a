import { type FileHandle, open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ModelFormatError, MolmError } from '../errors.ts';
import { checkFileName } from '../limits.ts';
import type { ByteSource, FileSource } from './types.ts';

// The one module that touches node: APIs, so everything else in src/checkpoint runs unchanged
// in a browser. Reads are positional (pread), so several tensors can be read at once from one
// handle, and positions are plain numbers: exact up to 2^53, far past 8+ GB checkpoints.

/** fs reads of more than 2 GiB fail, so large tensors are read in pieces. */
const MAX_CHUNK = 1 << 30;

/** The files of a local folder. Each opened file holds a handle until its close(). */
export function nodeFileSource(dir: string): FileSource {
  const root = resolve(dir);
  return {
    location: root,
    async open(name: string): Promise<ByteSource | null> {
      // One safe path segment (no separator, no "..", no NUL): the file is inside the folder.
      const path = join(root, checkFileName(name, root, 'is the model folder damaged?'));
      let handle: FileHandle;
      try {
        handle = await open(path, 'r');
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return null;
        throw new MolmError(`Cannot open ${path} (${code ?? (e as Error).message}); check that the file is readable.`, { cause: e });
      }
      const stat = await handle.stat();
      if (!stat.isFile()) {
        await handle.close();
        return null;
      }
      return fileByteSource(handle, stat.size, path);
    },
  };
}

function fileByteSource(handle: FileHandle, size: number, path: string): ByteSource {
  let closed = false;
  return {
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
        throw new ModelFormatError(`${path}: cannot read ${length} bytes at offset ${offset} of a ${size}-byte file.`);
      }
      // A fresh buffer per read (never Node's shared pool), so callers may view its whole .buffer.
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, Math.min(length - done, MAX_CHUNK), offset + done);
        if (bytesRead === 0) {
          throw new ModelFormatError(`${path} became shorter while it was being read (expected ${size} bytes); was it being rewritten?`);
        }
        done += bytesRead;
      }
      return out;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await handle.close();
    },
  };
}
