import type { FileSource } from '../checkpoint/types.ts';
import { ModelFormatError, MolmError } from '../errors.ts';
import { LIMITS, fileUrlInside } from '../limits.ts';
import { manifestUrlOf } from '../store/model-cache.ts';
import { defaultShardStore, type ShardStore } from '../store/shard-store.ts';
import { abortError } from './fetcher.ts';
import { readManifestJson, sha256Hex, validateManifest } from './manifest-source.ts';
import { MANIFEST_FILE, type Manifest, type ManifestFile } from '../manifest.ts';

export interface LoadTokenizerOptions {
  store?: ShardStore;
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

/**
 * The tokenizer.json of a converted model loaded with loadModel, as text. It is kept in the
 * shard store next to the shards (keyed by its sha256, listed in the model record), so a model
 * that loads offline also tokenizes offline. Call after loadModel: the model record must exist.
 */
export async function loadTokenizerJson(url: string, options: LoadTokenizerOptions = {}): Promise<string> {
  const store = options.store ?? defaultShardStore();
  const manifestUrl = manifestUrlOf(url);
  const record = await store.getModel(manifestUrl);
  if (!record) throw new MolmError(`${manifestUrl} is not in the model cache: load the model (loadModel) before its tokenizer.`);
  const entry = 'tokenizer' in record.manifest ? record.manifest.tokenizer : null;
  if (!entry) {
    throw new ModelFormatError(
      `The model at ${manifestUrl} has no tokenizer.json: convert it from a folder that has one (\`molm convert\` copies it), or pass a tokenizer to createEngine.`,
    );
  }
  if (record.tokenizer === entry.sha256) {
    const cached = await store.get(entry.sha256);
    if (cached && (await sha256Hex(cached)) === entry.sha256) return tokenizerText(cached, manifestUrl);
  }
  const tokenizerUrl = fileUrlInside(manifestUrl, entry.file, `${manifestUrl}: "tokenizer"`, 're-run `molm convert`');
  const get = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  let res: Response;
  try {
    res = await get(tokenizerUrl, { signal: options.signal });
  } catch (e) {
    if (options.signal?.aborted) throw abortError(options.signal);
    throw new MolmError(`Could not fetch ${tokenizerUrl} (${(e as Error).message}); check the network and load again.`, { cause: e });
  }
  if (!res.ok) throw new ModelFormatError(`${tokenizerUrl} answered HTTP ${res.status}: the model's folder must hold its tokenizer.json.`);
  const declared = Number(res.headers.get('content-length') ?? entry.bytes);
  if (declared > entry.bytes) {
    await res.body?.cancel().catch(() => {});
    throw damaged(tokenizerUrl, `${declared} bytes where ${MANIFEST_FILE} says ${entry.bytes}`);
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  checkTokenizer(bytes, entry, tokenizerUrl, await sha256Hex(bytes));
  try {
    await store.put(entry.sha256, bytes);
    await store.putModel({ ...record, tokenizer: entry.sha256 });
  } catch {
    // Not cached: the model still works now; the next load fetches the tokenizer again.
  }
  return tokenizerText(bytes, tokenizerUrl);
}

const damaged = (where: string, what: string) =>
  new ModelFormatError(`${where} is damaged or from another conversion (${what}); re-download the model (or re-run \`molm convert\`).`);

function checkTokenizer(bytes: Uint8Array, entry: ManifestFile, where: string, hash: string): void {
  if (bytes.byteLength !== entry.bytes) throw damaged(where, `${bytes.byteLength} bytes where ${MANIFEST_FILE} says ${entry.bytes}`);
  if (hash !== entry.sha256) throw damaged(where, `its sha256 is ${hash}, ${MANIFEST_FILE} says ${entry.sha256}`);
}

function tokenizerText(bytes: Uint8Array, where: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ModelFormatError(`${where}: tokenizer.json is not UTF-8 text; re-download the model's tokenizer.json.`);
  }
}

/**
 * tokenizer.json from a local folder (Node, or files the user picked). A converted model's is
 * checked against its manifest entry (size and sha256) like a shard; a Hugging Face folder's
 * only against the size bound. `manifest`: the folder's, when the caller has read it already
 * (null: a Hugging Face folder). Resolves to null when the folder has no tokenizer.
 */
export async function readFolderTokenizer(files: FileSource, manifest?: Manifest | null): Promise<string | null> {
  if (manifest === undefined) {
    const json = await readManifestJson(files);
    manifest = json === null ? null : validateManifest(json, `${files.location}/${MANIFEST_FILE}`).manifest;
  }
  const entry = manifest ? manifest.tokenizer : { file: 'tokenizer.json', bytes: -1, sha256: '' };
  if (entry === null) return null;
  const where = `${files.location}/${entry.file}`;
  const source = await files.open(entry.file);
  if (source === null) {
    if (manifest)
      throw new ModelFormatError(`${files.location} lacks ${entry.file}, which ${MANIFEST_FILE} lists; re-download the model (or re-run \`molm convert\`).`);
    return null;
  }
  let bytes: Uint8Array;
  try {
    if (source.size > LIMITS.tokenizerBytes) {
      throw new ModelFormatError(
        `${where} is ${source.size} bytes, more than the ${LIMITS.tokenizerBytes} a tokenizer.json may have; use the model's own tokenizer.json.`,
      );
    }
    if (manifest && source.size !== entry.bytes) throw damaged(where, `${source.size} bytes where ${MANIFEST_FILE} says ${entry.bytes}`);
    bytes = await source.read(0, source.size);
  } finally {
    await source.close?.();
  }
  if (manifest) checkTokenizer(bytes, entry, where, await sha256Hex(bytes));
  return tokenizerText(bytes, where);
}
