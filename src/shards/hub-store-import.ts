import { DEFAULT_HUB_URL, type HubRepo, hubFileSource, hubResolveUrl, parseHubRepo, parseHubUrl } from '../checkpoint/hub.ts';
import { openCheckpoint } from '../checkpoint/hf-folder.ts';
import { MolmError, UsageError } from '../errors.ts';
import { MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest, type ManifestFile } from '../manifest.ts';
import { defaultShardStore, isQuotaExceeded, quotaErrorFrom, type ModelRecord, type ShardStore } from '../store/shard-store.ts';
import { tensorEncoder } from './encode.ts';
import { abortError } from './fetcher.ts';
import { checkQuota } from './load-model.ts';
import { readFolderTokenizer } from './load-tokenizer.ts';
import { sha256Hex } from './manifest-source.ts';
import { CONVERT_DTYPES, type ConvertDtype, DEFAULT_SHARD_BYTES, planShards, shardFileName, tensorsToPlace } from './plan.ts';

// A model of the Hugging Face hub, converted into the shard cache where the engine runs (the
// browser's IndexedDB; memory in Node unless a store is given): config.json, tokenizer.json and
// the weights, in whatever form the repo has, read with Range requests tensor by tensor,
// converted (default q4) and stored shard by shard. The result is an ordinary cached model whose
// manifest lives in the cache only, under a key made from the repo (importKey): the next load is
// the cached path, offline.
//   hub ─► one tensor (Range reads) ─► storage bytes ─► the shard being filled ─► sha256 ─► store
// The JS heap holds the shard being filled and the tensor being converted (its source bytes
// and its storage bytes). A stopped import resumes: the record lists the shards already stored,
// and their tensors are not read again.

export interface HubStoreImportOptions {
  repo: string | HubRepo;
  /** Default https://huggingface.co. */
  hubUrl?: string;
  /** The converted copy's storage type (default q4). */
  dtype?: ConvertDtype;
  store?: ShardStore;
  /** Largest shard, in bytes (default 32 MiB). */
  shardBytes?: number;
  fetch?: typeof fetch;
  signal?: AbortSignal;
  onProgress?: (p: ImportProgress) => void;
}

/** An import's progress: bytes read from the hub, bytes stored, and the time left at the rate so far. */
export interface ImportProgress {
  type: 'import';
  repo: string;
  /** Bytes of weights read from the hub so far (this session). */
  readBytes: number;
  /** Converted bytes stored, of `totalBytes`, including shards stored by an earlier, stopped import. */
  writtenBytes: number;
  totalBytes: number;
  /** Bytes an earlier import had stored already. */
  resumedBytes: number;
  /** Seconds left at this session's rate so far; null until there is a rate. */
  secondsLeft: number | null;
  tensor: string;
}

export const DEFAULT_IMPORT_DTYPE: ConvertDtype = 'q4';

/**
 * The cache key of an imported model: a manifest URL under the repo's resolve URL that the hub
 * does not serve, so it never collides with a real file and names host, repo, revision and dtype.
 */
export function importKey(repo: HubRepo, hubUrl: string, dtype: ConvertDtype): string {
  return `${hubResolveUrl(repo, parseHubUrl(hubUrl))}molm-web-import/${dtype}/manifest.json`;
}

async function putRecord(store: ShardStore, record: ModelRecord): Promise<void> {
  try {
    await store.putModel(record);
  } catch (e) {
    throw isQuotaExceeded(e) ? quotaErrorFrom(e, 'the model record') : e;
  }
}

/**
 * Imports a hub model into the shard cache, unless it is there; resolves to its cache key, which
 * loadModel / loadWasmModelFromUrl / createEngine load like a URL (from the cache only).
 */
export async function importHubModelToStore(o: HubStoreImportOptions): Promise<string> {
  const repo = typeof o.repo === 'string' ? parseHubRepo(o.repo) : o.repo;
  const hubUrl = parseHubUrl(o.hubUrl ?? DEFAULT_HUB_URL);
  const dtype = o.dtype ?? DEFAULT_IMPORT_DTYPE;
  if (!CONVERT_DTYPES.includes(dtype)) throw new UsageError(`dtype must be one of ${CONVERT_DTYPES.join(', ')}, got ${JSON.stringify(dtype)}.`);
  const store = o.store ?? defaultShardStore();
  const key = importKey(repo, hubUrl, dtype);
  const checkAbort = () => {
    if (o.signal?.aborted) throw abortError(o.signal);
  };
  const prior = await store.getModel(key).catch(() => undefined);
  if (prior?.complete && (await allStored(store, prior))) return key;

  checkAbort();
  const get = o.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, { ...init, signal: o.signal }));
  const source = hubFileSource(repo, { hubUrl, fetch: get });
  const { config, rawConfig, tensors } = await openCheckpoint(source);
  try {
    const plan = planShards(tensorsToPlace(config, dtype), o.shardBytes ?? DEFAULT_SHARD_BYTES);
    const tokenizerText = await readFolderTokenizer(source, null);
    const origin = { repo: repo.id, revision: repo.revision, hub: hubUrl, dtype, shardBytes: o.shardBytes ?? DEFAULT_SHARD_BYTES };

    // What an earlier import of the same plan stored: its shards are kept, in order.
    const done: ManifestFile[] = [];
    if (
      prior?.imported &&
      JSON.stringify(prior.imported) === JSON.stringify(origin) &&
      JSON.stringify(prior.manifest.tensors) === JSON.stringify(plan.tensors)
    ) {
      for (const s of prior.manifest.shards) {
        if (!(await store.has(s.sha256))) break;
        done.push(s);
      }
    }
    const resumedBytes = done.reduce((a, s) => a + s.bytes, 0);
    if (store.persistent) await checkQuota(plan.totalBytes - resumedBytes);

    let tokenizer: ManifestFile | null = null;
    let tokenizerKey: string | undefined;
    if (tokenizerText !== null) {
      const bytes = new TextEncoder().encode(tokenizerText);
      tokenizerKey = await sha256Hex(bytes);
      tokenizer = { file: 'tokenizer.json', bytes: bytes.byteLength, sha256: tokenizerKey };
      if (!(await store.has(tokenizerKey)))
        await store.put(tokenizerKey, bytes).catch((e) => Promise.reject(isQuotaExceeded(e) ? quotaErrorFrom(e, 'tokenizer.json') : e));
    }
    const manifestOf = (shards: ManifestFile[]): Manifest => ({
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      config: rawConfig,
      tokenizer,
      dtype,
      tensors: plan.tensors,
      shards,
    });
    const record = (shards: ManifestFile[], complete: boolean): ModelRecord => ({
      url: key,
      manifest: manifestOf(shards),
      shards: shards.map((s) => s.sha256),
      totalBytes: plan.totalBytes,
      complete,
      lastUsed: Date.now(),
      imported: origin,
      ...(tokenizerKey && { tokenizer: tokenizerKey }),
    });
    await putRecord(store, record(done, false));

    const started = Date.now();
    let readBytes = 0;
    let writtenBytes = resumedBytes;
    const emit = (tensor: string) => {
      const seconds = (Date.now() - started) / 1000;
      const rate = (writtenBytes - resumedBytes) / Math.max(seconds, 1e-3);
      const secondsLeft = writtenBytes === plan.totalBytes ? 0 : writtenBytes > resumedBytes && seconds > 0.5 ? (plan.totalBytes - writtenBytes) / rate : null;
      o.onProgress?.({ type: 'import', repo: repo.id, readBytes, writtenBytes, totalBytes: plan.totalBytes, resumedBytes, secondsLeft, tensor });
    };

    const shards = [...done];
    let shard: { index: number; bytes: Uint8Array; at: number } | null = null;
    const closeShard = async () => {
      if (!shard) return;
      const bytes = shard.bytes.subarray(0, shard.at);
      const sha256 = await sha256Hex(bytes);
      try {
        if (!(await store.has(sha256))) await store.put(sha256, bytes);
      } catch (e) {
        throw isQuotaExceeded(e) ? quotaErrorFrom(e, shardFileName(shard.index)) : e;
      }
      shards.push({ file: shardFileName(shard.index), bytes: bytes.byteLength, sha256 });
      // The record follows each stored shard: an import stopped here resumes after it.
      await putRecord(store, record(shards, false));
      shard = null;
    };
    for (const t of plan.tensors) {
      checkAbort();
      // Tensors whose every piece is in a stored shard are not read again.
      if (t.pieces.every((p) => p.shard < done.length)) continue;
      const info = tensors.tensors.get(t.name);
      if (!info) throw new MolmError(`${repo.id} has no tensor "${t.name}".`);
      const raw = await tensors.read(t.name);
      readBytes += raw.byteLength;
      const encoder = tensorEncoder(raw, info.dtype, t.shape, t.storage);
      let at = 0;
      for (const p of t.pieces) {
        if (p.shard >= done.length) {
          if (shard && shard.index !== p.shard) await closeShard();
          shard ??= { index: p.shard, bytes: new Uint8Array(plan.shardBytes[p.shard]), at: 0 };
          shard.bytes.set(encoder.range(at, at + p.bytes), p.offset);
          shard.at = Math.max(shard.at, p.offset + p.bytes);
          writtenBytes += p.bytes;
        }
        at += p.bytes;
      }
      emit(t.name);
    }
    await closeShard();
    checkAbort();
    if (shards.length !== plan.shardBytes.length) throw new Error(`import of ${repo.id}: ${shards.length} shards stored, ${plan.shardBytes.length} planned`);
    await putRecord(store, record(shards, true));
    return key;
  } finally {
    await tensors.close();
  }
}

async function allStored(store: ShardStore, r: ModelRecord): Promise<boolean> {
  for (const h of r.shards) if (!(await store.has(h))) return false;
  return true;
}
