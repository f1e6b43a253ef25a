import { ModelFormatError } from '../errors.ts';
import { LIMITS, describeValue } from '../limits.ts';
import { REDOWNLOAD, dataView, readU64 } from './bytes.ts';
import type { ByteSource } from './types.ts';

// A read-only ZIP reader for the archives torch.save writes: uncompressed ("stored") entries,
// ZIP64 as soon as the archive passes 4 GiB. Only the central directory is read up front; an
// entry's data is located through its local header when it is first needed, so opening an 8 GB
// checkpoint reads a few kilobytes.

const EOCD_SIG = 0x06054b50;
const EOCD_BYTES = 22;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_LOCATOR_BYTES = 20;
const ZIP64_EOCD_SIG = 0x06064b50;
const ZIP64_EOCD_BYTES = 56;
const CENTRAL_SIG = 0x02014b50;
const CENTRAL_BYTES = 46;
const LOCAL_SIG = 0x04034b50;
const LOCAL_BYTES = 30;
const ZIP64_EXTRA_ID = 0x0001;
const MAX_COMMENT = 0xffff;

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored; anything else is compressed. */
  readonly method: number;
  readonly flags: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
}

export interface ZipArchive {
  readonly entries: ReadonlyMap<string, ZipEntry>;
  /** Where an entry's bytes lie in the file. Only stored entries have a usable range. */
  dataRange(entry: ZipEntry): Promise<{ offset: number; length: number }>;
  /**
   * Throws unless the entry is stored (not compressed, not encrypted), from the central directory
   * alone: only then does its size say how many bytes the file really holds for it, which a
   * reader needs before it trusts that size without reading the entry.
   */
  checkStored(entry: ZipEntry): void;
}

interface Directory {
  count: number;
  size: number;
  offset: number;
  /** First byte after the central directory that belongs to the end records. */
  end: number;
}

export async function openZip(source: ByteSource, fileName: string): Promise<ZipArchive> {
  const fail = (what: string) => new ModelFormatError(`${fileName}: ${what}; ${REDOWNLOAD}.`);
  const dir = await findCentralDirectory(source, fileName, fail);
  // Checked before anything is allocated or looped over: the counts come from the file.
  const tooLarge = (what: string) =>
    new ModelFormatError(
      `${fileName}: ${what}, far more than a torch.save checkpoint has; refusing to open it (re-download the checkpoint, ` + 'or convert it to safetensors).',
    );
  if (dir.count > LIMITS.zipEntries) throw tooLarge(`the zip claims ${dir.count} entries (molm-web opens at most ${LIMITS.zipEntries})`);
  if (dir.size > LIMITS.zipCentralDirectoryBytes) {
    throw tooLarge(`the zip central directory claims ${dir.size} bytes (molm-web reads at most ${LIMITS.zipCentralDirectoryBytes})`);
  }
  if (dir.count * CENTRAL_BYTES > dir.size) {
    throw fail(`the zip central directory of ${dir.size} bytes cannot hold the ${dir.count} entries it claims`);
  }
  if (dir.offset + dir.size > dir.end) {
    throw fail(`the zip central directory [${dir.offset}, ${dir.offset + dir.size}) runs into the end record at ${dir.end}`);
  }
  const entries = parseCentralDirectory(await source.read(dir.offset, dir.size), dir, fail);
  const ranges = new Map<ZipEntry, { offset: number; length: number }>();
  const checkStored = (entry: ZipEntry) => {
    const name = describeValue(entry.name);
    if (entry.flags & 1) throw fail(`entry ${name} is encrypted`);
    if (entry.method !== 0) {
      throw new ModelFormatError(
        `${fileName}: entry ${name} is compressed (zip method ${entry.method}); torch.save writes uncompressed ` +
          'entries, so this archive was repacked by another tool. Re-save it with torch.save, or convert the checkpoint ' +
          'to safetensors.',
      );
    }
    if (entry.compressedSize !== entry.size) {
      throw fail(`stored entry ${name} has compressed size ${entry.compressedSize} but size ${entry.size}`);
    }
  };

  return {
    entries,
    checkStored,
    async dataRange(entry: ZipEntry) {
      const cached = ranges.get(entry);
      if (cached) return cached;
      checkStored(entry);
      const name = describeValue(entry.name);
      const local = dataView(await source.read(entry.localHeaderOffset, LOCAL_BYTES));
      if (local.getUint32(0, true) !== LOCAL_SIG) {
        throw fail(`entry ${name} has no local header at offset ${entry.localHeaderOffset}`);
      }
      const offset = entry.localHeaderOffset + LOCAL_BYTES + local.getUint16(26, true) + local.getUint16(28, true);
      if (offset + entry.size > dir.offset) {
        throw fail(`entry ${name} data [${offset}, ${offset + entry.size}) runs into the central directory at ${dir.offset}`);
      }
      const range = { offset, length: entry.size };
      ranges.set(entry, range);
      return range;
    },
  };
}

async function findCentralDirectory(source: ByteSource, fileName: string, fail: (what: string) => ModelFormatError): Promise<Directory> {
  const size = source.size;
  const tailLength = Math.min(size, EOCD_BYTES + MAX_COMMENT + ZIP64_LOCATOR_BYTES);
  const tailStart = size - tailLength;
  const tail = await source.read(tailStart, tailLength);
  const view = dataView(tail);
  // The end record sits after an optional comment of up to 64 KiB: scan backwards for its
  // signature, accepting only a record whose comment length reaches exactly the end of file.
  let eocd = -1;
  for (let p = tailLength - EOCD_BYTES; p >= 0; p--) {
    if (view.getUint32(p, true) === EOCD_SIG && p + EOCD_BYTES + view.getUint16(p + 20, true) === tailLength) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) {
    throw fail('no zip end-of-central-directory record was found, so the file is truncated or is not a zip archive');
  }
  const disk = view.getUint16(eocd + 4, true);
  const cdDisk = view.getUint16(eocd + 6, true);
  let dir: Directory = {
    count: view.getUint16(eocd + 10, true),
    size: view.getUint32(eocd + 12, true),
    offset: view.getUint32(eocd + 16, true),
    end: tailStart + eocd,
  };
  const saturated = dir.count === 0xffff || dir.size === 0xffffffff || dir.offset === 0xffffffff;

  const locator = eocd - ZIP64_LOCATOR_BYTES;
  if (locator >= 0 && view.getUint32(locator, true) === ZIP64_LOCATOR_SIG) {
    dir = await readZip64End(
      source,
      fileName,
      readU64(view, locator + 8, () => `${fileName}: ZIP64 locator`),
      fail,
    );
  } else if (saturated) {
    throw fail('the zip end record points to ZIP64 data, but the ZIP64 locator is missing');
  } else if (disk !== 0 || cdDisk !== 0) {
    throw fail('this is one part of a multi-part zip archive');
  }
  return dir;
}

async function readZip64End(source: ByteSource, fileName: string, at: number, fail: (what: string) => ModelFormatError): Promise<Directory> {
  if (at + ZIP64_EOCD_BYTES > source.size) {
    throw fail(`the ZIP64 end record offset ${at} is past the end of the ${source.size}-byte file`);
  }
  const view = dataView(await source.read(at, ZIP64_EOCD_BYTES));
  if (view.getUint32(0, true) !== ZIP64_EOCD_SIG) throw fail(`there is no ZIP64 end record at offset ${at}`);
  if (view.getUint32(16, true) !== 0 || view.getUint32(20, true) !== 0) {
    throw fail('this is one part of a multi-part zip archive');
  }
  const what = () => `${fileName}: ZIP64 end record`;
  return { count: readU64(view, 32, what), size: readU64(view, 40, what), offset: readU64(view, 48, what), end: at };
}

function parseCentralDirectory(bytes: Uint8Array, dir: Directory, fail: (what: string) => ModelFormatError): Map<string, ZipEntry> {
  const view = dataView(bytes);
  const decoder = new TextDecoder();
  const entries = new Map<string, ZipEntry>();
  // Where each entry's local header and data lie at the least (the local extra field is not
  // known yet): entries of a real archive never share a byte, and none reaches past the start
  // of the central directory.
  const extents: { start: number; end: number; name: string }[] = [];
  let p = 0;
  for (let i = 0; i < dir.count; i++) {
    if (p + CENTRAL_BYTES > bytes.length || view.getUint32(p, true) !== CENTRAL_SIG) {
      throw fail(`zip central directory entry ${i + 1} of ${dir.count} is missing or damaged`);
    }
    const nameLength = view.getUint16(p + 28, true);
    const extraLength = view.getUint16(p + 30, true);
    const commentLength = view.getUint16(p + 32, true);
    const next = p + CENTRAL_BYTES + nameLength + extraLength + commentLength;
    if (next > bytes.length) throw fail(`zip central directory entry ${i + 1} of ${dir.count} is cut short`);
    if (nameLength > LIMITS.zipNameLength) {
      throw fail(`zip entry ${i + 1} has a name of ${nameLength} bytes; a torch.save archive's names are under 100 (molm-web accepts ${LIMITS.zipNameLength})`);
    }
    const name = decoder.decode(bytes.subarray(p + CENTRAL_BYTES, p + CENTRAL_BYTES + nameLength));
    if (entries.has(name)) throw fail(`the zip has two entries named ${describeValue(name)}`);
    const fields = {
      compressedSize: view.getUint32(p + 20, true),
      size: view.getUint32(p + 24, true),
      localHeaderOffset: view.getUint32(p + 42, true),
    };
    applyZip64Extra(view, p + CENTRAL_BYTES + nameLength, extraLength, fields, () => describeValue(name), fail);
    if (fields.localHeaderOffset + LOCAL_BYTES > dir.offset) {
      throw fail(`entry ${describeValue(name)} claims a local header at ${fields.localHeaderOffset}, past the start of the central directory`);
    }
    const end = fields.localHeaderOffset + LOCAL_BYTES + nameLength + fields.compressedSize;
    if (end > dir.offset) {
      throw fail(
        `entry ${describeValue(name)} claims ${fields.compressedSize} bytes at ${fields.localHeaderOffset}, which run past the ` +
          `start of the central directory at ${dir.offset}`,
      );
    }
    extents.push({ start: fields.localHeaderOffset, end, name });
    entries.set(name, {
      name,
      flags: view.getUint16(p + 8, true),
      method: view.getUint16(p + 10, true),
      ...fields,
    });
    p = next;
  }
  extents.sort((a, b) => a.start - b.start);
  for (let i = 1; i < extents.length; i++) {
    const [a, b] = [extents[i - 1], extents[i]];
    if (b.start < a.end) {
      throw fail(`zip entries ${describeValue(a.name)} [${a.start}, ${a.end}) and ${describeValue(b.name)} [${b.start}, ${b.end}) overlap`);
    }
  }
  return entries;
}

/**
 * Central directory fields that do not fit 32 bits are 0xFFFFFFFF, and their real values follow
 * in the ZIP64 extra field, in this order, only for the fields that overflowed.
 */
function applyZip64Extra(
  view: DataView,
  start: number,
  length: number,
  fields: { compressedSize: number; size: number; localHeaderOffset: number },
  entryName: () => string,
  fail: (what: string) => ModelFormatError,
): void {
  const order = ['size', 'compressedSize', 'localHeaderOffset'] as const;
  const needed = order.filter((k) => fields[k] === 0xffffffff);
  if (needed.length === 0) return;
  const end = start + length;
  for (let q = start; q + 4 <= end; ) {
    const id = view.getUint16(q, true);
    const size = view.getUint16(q + 2, true);
    if (id === ZIP64_EXTRA_ID) {
      if (size < needed.length * 8 || q + 4 + size > end) {
        throw fail(`entry ${entryName()} has a ZIP64 extra field too short for its ${needed.length} 64-bit values`);
      }
      needed.forEach((k, i) => {
        fields[k] = readU64(view, q + 4 + i * 8, () => `entry ${entryName()} ZIP64 ${k}`);
      });
      return;
    }
    q += 4 + size;
  }
  throw fail(`entry ${entryName()} needs a ZIP64 extra field (its sizes or offset overflow 32 bits) but has none`);
}
