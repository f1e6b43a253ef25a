import { ModelFormatError } from '../errors.ts';
import { LIMITS, describeValue } from '../limits.ts';
import { PACK_FORMAT, PACK_VERSION, type PackAdds, type PackInfo, type PackManifest } from '../manifest.ts';
import { checkFile, validateTensorTable } from '../shards/manifest-source.ts';
import { STORAGE_TYPES, type StorageType } from '../storage-types.ts';

export { PACK_FORMAT, PACK_VERSION, type PackAdds, type PackInfo, type PackManifest };

// An expert pack's manifest (docs/format.md, "Expert packs"): the added experts and router rows
// of every layer, in the same shard format as a model, naming the base it extends by the base's
// weights hash. This module checks the file alone; src/packs/pack-shapes.ts checks it against a base.

/** Largest additions one pack may make to a layer (the merged config is checked against CONFIG_BOUNDS as well). */
const MAX_ADDED = 256;
/** Bytes of a pack's "training" object, as JSON. */
const MAX_TRAINING_JSON = 64 << 10;
const MAX_TEXT = 1000;

type Json = Record<string, unknown>;
const isObject = (x: unknown): x is Json => x !== null && typeof x === 'object' && !Array.isArray(x);

/**
 * Checks the descriptive part of a pack (name, domain, base, adds, training): shared by a
 * converted pack's manifest and a source folder's pack.json.
 */
export function validatePackInfo(m: Json, fail: (what: string) => never): PackInfo {
  const text = (key: string, required: boolean): string => {
    const v = m[key];
    if (v === undefined && !required) return '';
    if (typeof v !== 'string' || v.length === 0 || v.length > MAX_TEXT)
      fail(`"${key}" must be a string of 1 to ${MAX_TEXT} characters, got ${describeValue(v)}`);
    return v as string;
  };
  const name = text('name', true);
  const domain = text('domain', true);
  const description = text('description', false);
  if (!isObject(m.base)) return fail('"base" must be an object { name, weightsSha256 } naming the model the pack extends');
  const base = m.base;
  if (typeof base.weightsSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(base.weightsSha256)) {
    fail(`"base.weightsSha256" must be 64 lower-case hex digits (the base model's weights hash), got ${describeValue(base.weightsSha256)}`);
  }
  const baseName = base.name === undefined ? '' : base.name;
  if (typeof baseName !== 'string' || baseName.length > MAX_TEXT) fail(`"base.name" must be a string, got ${describeValue(base.name)}`);
  if (!isObject(m.adds)) return fail('"adds" must be an object { attExperts, mlpExperts, routerUnits }');
  const count = (key: keyof PackAdds): number => {
    const v = (m.adds as Json)[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > MAX_ADDED)
      fail(`"adds.${key}" must be an integer from 0 to ${MAX_ADDED}, got ${describeValue(v)}`);
    return v as number;
  };
  const adds: PackAdds = { attExperts: count('attExperts'), mlpExperts: count('mlpExperts'), routerUnits: count('routerUnits') };
  if (adds.attExperts + adds.mlpExperts === 0) fail('"adds" adds no expert');
  const training = m.training === undefined ? {} : m.training;
  if (!isObject(training)) return fail(`"training" must be an object, got ${describeValue(m.training)}`);
  if (JSON.stringify(training).length > MAX_TRAINING_JSON) fail(`"training" takes more than ${MAX_TRAINING_JSON} bytes as JSON`);
  return { name, domain, description, base: { name: baseName as string, weightsSha256: base.weightsSha256 as string }, adds, training };
}

/**
 * Checks a parsed pack manifest: its description, storage type, shards and tensor table (the
 * tensors' shapes are checked against a base by checkPackAgainstBase). Reads no file.
 */
export function validatePackManifest(json: unknown, where: string): PackManifest {
  const fail = (what: string): never => {
    throw new ModelFormatError(`${where}: ${what}; re-run \`molm convert\` on the pack's source folder, or download the pack again.`);
  };
  if (!isObject(json)) return fail('is not a JSON object');
  if (json.format !== PACK_FORMAT) {
    fail(`"format" is ${describeValue(json.format)}, not "${PACK_FORMAT}": this is not a molm-web expert pack (a model's manifest says "molm-web-shards")`);
  }
  if (json.version !== PACK_VERSION) fail(`"version" is ${describeValue(json.version)}; this molm-web reads pack version ${PACK_VERSION}`);
  const info = validatePackInfo(json, fail);
  if (!STORAGE_TYPES.includes(json.dtype as StorageType)) fail(`"dtype" is ${describeValue(json.dtype)}; expected one of ${STORAGE_TYPES.join(', ')}`);
  if (!Array.isArray(json.shards)) return fail('"shards" must be an array');
  const files = new Set<string>();
  const shards = json.shards.map((s, i) => {
    const shard = checkFile(s, `shard ${i}`, LIMITS.packBytes, fail);
    if (files.has(shard.file)) fail(`file ${shard.file} is listed twice`);
    files.add(shard.file);
    return shard;
  });
  if (shards.reduce((a, s) => a + s.bytes, 0) > LIMITS.packBytes) fail(`its shards hold more than the ${LIMITS.packBytes} bytes a pack may have`);
  const tensors = validateTensorTable(json.tensors, shards, fail);
  return { format: PACK_FORMAT, version: PACK_VERSION, ...info, dtype: json.dtype as StorageType, tensors: [...tensors.values()], shards };
}
