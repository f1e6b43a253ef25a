import { AbortError, ModelFormatError, MolmError } from '../errors.ts';
import { isQuotaExceeded, quotaErrorFrom, type ShardStore } from '../store/shard-store.ts';
import { readStreamInto, StreamOverflowError } from '../store/read-into.ts';
import { sha256Hex } from './manifest-source.ts';

// Downloading one shard into the store: streamed into one buffer of the shard's size, retried
// with exponential backoff, resumed with an HTTP Range request from the bytes already received
// (206 continues, 200 starts again), and stored only after its sha256 matches the manifest.

/** A shard to download: where it is, how big it is, and the sha256 it must have. */
export interface ShardRequest {
  url: string;
  /** The shard's file name, for messages and progress events. */
  file: string;
  bytes: number;
  sha256: string;
}

export interface FetchShardOptions {
  store: ShardStore;
  signal?: AbortSignal;
  /** Attempts after the first one, for network errors and 5xx / 408 / 429 answers (default 4). */
  retries?: number;
  /** Wait before the first retry; doubled each time, at most 30 s (default 500 ms). */
  backoffMs?: number;
  fetch?: typeof fetch;
  /**
   * Memory to assemble the shard in (used when it holds `bytes`; else one is allocated). Reusing
   * one buffer across shards keeps the heap at one shard per download in flight.
   */
  buffer?: Uint8Array;
  /** A download (re)starts at `from` bytes: 0, or where a partial download stopped. */
  onStart?: (from: number) => void;
  /** Bytes of the shard received so far (counting bytes from a partial download). */
  onProgress?: (received: number, total: number) => void;
  /**
   * After the sha256 check of the complete download, with its bytes (valid only until the
   * returned promise settles): the loader writes them into GPU buffers here, before they are
   * stored, so a downloaded shard is never read back from the store.
   */
  onVerified?: (bytes: Uint8Array) => void | Promise<void>;
}

/** An error worth another attempt (the network, a server hiccup). */
class RetryableError extends MolmError {
  override name = 'RetryableError';
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const done = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', done);
      resolve();
    }, ms);
    signal?.addEventListener('abort', done, { once: true });
  });

export function abortError(signal: AbortSignal): AbortError {
  const reason = signal.reason;
  if (reason instanceof AbortError) return reason;
  return new AbortError(`Loading was aborted${reason instanceof Error && reason.name !== 'AbortError' ? ` (${reason.message})` : ''}.`, {
    cause: reason,
  });
}

// "bytes 100-199/200" → 100; null when absent (a cross-origin host that does not expose it).
function rangeStart(header: string | null): number | null {
  const m = header?.match(/^bytes (\d+)-\d+\/(?:\d+|\*)$/);
  return m ? Number(m[1]) : null;
}

async function discard(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    // Nothing to read: a failed cancel changes nothing.
  }
}

/**
 * Downloads one shard, checks its sha256 and puts it into the store under that hash. Bytes of
 * an interrupted download are kept in the store as a partial shard (on failure, on abort) and
 * the next attempt, in this call or a later one, continues from them with a Range request.
 *
 * Errors: AbortError; ModelFormatError when the server's shard is corrupt (its sha256 differs
 * after a complete, fresh download: nothing is stored), missing (404) or of the wrong size;
 * QuotaError when the store is full; MolmError for a network failure that outlasts the retries.
 */
export async function fetchShard(req: ShardRequest, o: FetchShardOptions): Promise<void> {
  const { store, signal } = o;
  const get = o.fetch ?? fetch;
  const retries = o.retries ?? 4;
  const backoff = o.backoffMs ?? 500;
  const total = req.bytes;
  let buf: Uint8Array | null = null;
  let received = 0;
  /** The bytes in `buf` come from more than one response (a resumed download). */
  let spliced = false;
  let freshAfterMismatch = false;

  /** Where the shard is assembled: the caller's reusable buffer when it is large enough. */
  const assembly = () => (o.buffer && o.buffer.byteLength >= total ? o.buffer.subarray(0, total) : new Uint8Array(total));
  const partial = await store.getPartial(req.sha256).catch(() => undefined);
  if (partial && partial.total === total && partial.bytes.byteLength > 0 && partial.bytes.byteLength < total) {
    buf = assembly();
    buf.set(partial.bytes);
    received = partial.bytes.byteLength;
    spliced = true;
  } else if (partial) {
    await store.deletePartial(req.sha256).catch(() => {});
  }

  const savePartial = async () => {
    if (!buf || received === 0 || received >= total) return;
    // Best effort: a full store or a closed database just means the next load starts over.
    await store.putPartial({ sha256: req.sha256, total, bytes: buf.subarray(0, received) }).catch(() => {});
  };

  /** One request: fills `buf` from `received` to the end, or throws. */
  const attempt = async (): Promise<void> => {
    const from = received;
    const headers: Record<string, string> = from > 0 ? { Range: `bytes=${from}-` } : {};
    let res: Response;
    try {
      res = await get(req.url, { headers, signal, cache: 'no-store' });
    } catch (e) {
      if (signal?.aborted) throw abortError(signal);
      throw new RetryableError(`${req.url}: ${(e as Error).message}`, { cause: e });
    }
    if (res.status === 206 && from > 0) {
      const start = rangeStart(res.headers.get('content-range'));
      if (start !== null && start !== from) {
        await discard(res);
        received = 0;
        spliced = false;
        throw new RetryableError(`${req.url}: asked for bytes from ${from}, the server sent them from ${start}`);
      }
    } else if (res.status === 200 || (res.status === 206 && from === 0)) {
      // No Range support (or a fresh request): the body is the whole shard.
      received = 0;
      spliced = false;
    } else if (res.status === 416) {
      await discard(res);
      received = 0;
      spliced = false;
      throw new RetryableError(`${req.url}: the server refused to resume at byte ${from} (HTTP 416)`);
    } else if (res.status === 404 || res.status === 410) {
      await discard(res);
      throw new ModelFormatError(
        `Shard ${req.file} is missing on the server (${req.url}: HTTP ${res.status}); the model host must upload it, or the manifest is from another version.`,
      );
    } else if (res.status >= 500 || res.status === 408 || res.status === 429) {
      await discard(res);
      throw new RetryableError(`${req.url}: HTTP ${res.status} ${res.statusText}`);
    } else {
      await discard(res);
      throw new MolmError(`Could not download shard ${req.file}: ${req.url} answered HTTP ${res.status} ${res.statusText}.`);
    }
    o.onStart?.(received);
    if (!res.body) throw new RetryableError(`${req.url}: the response has no body`);
    buf ??= assembly();
    if (received > 0) spliced = true;
    try {
      await readStreamInto(res.body, buf, received, (end) => {
        received = end;
        o.onProgress?.(end, total);
      });
    } catch (e) {
      if (e instanceof StreamOverflowError) {
        throw new ModelFormatError(
          `Shard ${req.file} on the server is larger than the ${total} bytes the manifest says; the model host must upload the manifest and shards of one conversion.`,
        );
      }
      if (signal?.aborted) throw abortError(signal);
      throw new RetryableError(`${req.url}: the connection broke after ${received} of ${total} bytes (${(e as Error).message})`, { cause: e });
    }
    if (received < total) throw new RetryableError(`${req.url}: the response ended after ${received} of ${total} bytes`);
  };

  let failures = 0;
  for (;;) {
    if (signal?.aborted) {
      await savePartial();
      throw abortError(signal);
    }
    try {
      await attempt();
    } catch (e) {
      const aborted = e instanceof AbortError || signal?.aborted;
      if (aborted || !(e instanceof RetryableError) || failures >= retries) {
        // Bytes of an interrupted download are worth keeping; those of a wrong file are not.
        if (aborted || e instanceof RetryableError) await savePartial();
        else await store.deletePartial(req.sha256).catch(() => {});
        if (aborted) throw signal ? abortError(signal) : e;
        if (e instanceof RetryableError) {
          throw new MolmError(
            `Downloading shard ${req.file} failed ${failures + 1} times (last: ${e.message}). Check the network and load the model again: the download resumes where it stopped.`,
            { cause: e },
          );
        }
        throw e;
      }
      failures++;
      try {
        await sleep(Math.min(backoff * 2 ** (failures - 1), 30_000), signal);
      } catch (abort) {
        await savePartial();
        throw abort;
      }
      continue;
    }

    const actual = await sha256Hex(buf!);
    if (actual === req.sha256) break;
    if (spliced && !freshAfterMismatch) {
      // The bytes came from two responses (or a stored partial): start once more from zero
      // before blaming the server.
      freshAfterMismatch = true;
      received = 0;
      spliced = false;
      await store.deletePartial(req.sha256).catch(() => {});
      continue;
    }
    await store.deletePartial(req.sha256).catch(() => {});
    throw new ModelFormatError(
      `Shard ${req.file} is corrupt on the server (sha256 ${actual}, the manifest says ${req.sha256}); the model host must re-upload it. Nothing was stored.`,
    );
  }
  await o.onVerified?.(buf!);
  try {
    await store.put(req.sha256, buf!);
  } catch (e) {
    throw isQuotaExceeded(e) ? quotaErrorFrom(e, `shard ${req.file} (${total} bytes)`) : e;
  }
  await store.deletePartial(req.sha256).catch(() => {});
}

export interface FetchShardsOptions extends Omit<FetchShardOptions, 'onStart' | 'onProgress' | 'onVerified' | 'buffer'> {
  /** Shards downloaded at once (default 2). */
  concurrency?: number;

  onStart?: (req: ShardRequest, from: number) => void;
  onProgress?: (req: ShardRequest, received: number, total: number) => void;
  onVerified?: (req: ShardRequest, bytes: Uint8Array) => void | Promise<void>;
}

/**
 * Downloads shards with bounded concurrency. The first failure stops the others (their bytes
 * are kept as partial shards) and is the error thrown.
 *
 * Each download slot assembles its shards in one buffer of the largest shard's size, reused
 * shard after shard, so the heap holds exactly `concurrency` shards however many are fetched.
 * Without fresh allocations the garbage collector runs rarely during a download, and Chromium
 * may then refuse Blob writes whose predecessors are not finalised yet; the store falls back to
 * a Uint8Array value for those (see `blobWriter` in src/store/shard-store.ts).
 */
export async function fetchShards(reqs: readonly ShardRequest[], o: FetchShardsOptions): Promise<void> {
  const inner = new AbortController();
  const outer = o.signal;
  const forward = () => inner.abort(outer!.reason);
  if (outer?.aborted) throw abortError(outer);
  outer?.addEventListener('abort', forward, { once: true });
  let next = 0;
  let failure: { error: unknown } | null = null;
  const largest = Math.max(0, ...reqs.map((r) => r.bytes));
  const worker = async () => {
    let buffer: Uint8Array | undefined;
    while (!failure && next < reqs.length) {
      const req = reqs[next++];
      buffer ??= new Uint8Array(largest);
      try {
        await fetchShard(req, {
          ...o,
          buffer,
          signal: inner.signal,
          onStart: (from) => o.onStart?.(req, from),
          onProgress: (r, t) => o.onProgress?.(req, r, t),
          onVerified: (bytes) => o.onVerified?.(req, bytes),
        });
      } catch (e) {
        if (!failure) {
          failure = { error: outer?.aborted ? abortError(outer) : e };
          inner.abort(e);
        }
      }
    }
  };
  try {
    const n = Math.max(1, Math.min(o.concurrency ?? 2, reqs.length));
    await Promise.all(Array.from({ length: n }, worker));
  } finally {
    outer?.removeEventListener('abort', forward);
  }
  if (failure) throw (failure as { error: unknown }).error;
}
