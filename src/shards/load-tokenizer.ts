import { ModelFormatError, MolmError } from '../errors.ts';
import { manifestUrlOf } from '../store/model-cache.ts';
import { defaultShardStore, type ShardStore } from '../store/shard-store.ts';
import { abortError } from './fetcher.ts';
import { sha256Hex } from './manifest-source.ts';

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
  const file = record.manifest.tokenizer;
  if (!file) {
    throw new ModelFormatError(
      `The model at ${manifestUrl} has no tokenizer.json: convert it from a folder that has one (\`molm convert\` copies it), or pass a tokenizer to createEngine.`,
    );
  }
  if (record.tokenizer) {
    const cached = await store.get(record.tokenizer);
    if (cached && (await sha256Hex(cached)) === record.tokenizer) return new TextDecoder().decode(cached);
  }
  const tokenizerUrl = new URL(file, manifestUrl).toString();
  const get = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  let res: Response;
  try {
    res = await get(tokenizerUrl, { signal: options.signal });
  } catch (e) {
    if (options.signal?.aborted) throw abortError(options.signal);
    throw new MolmError(`Could not fetch ${tokenizerUrl} (${(e as Error).message}); check the network and load again.`, { cause: e });
  }
  if (!res.ok) throw new ModelFormatError(`${tokenizerUrl} answered HTTP ${res.status}: the model's folder must hold its tokenizer.json.`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const hash = await sha256Hex(bytes);
  try {
    await store.put(hash, bytes);
    await store.putModel({ ...record, tokenizer: hash });
  } catch {
    // Not cached: the model still works now; the next load fetches the tokenizer again.
  }
  return new TextDecoder().decode(bytes);
}
