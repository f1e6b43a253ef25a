// Task texts for the pruning study (docs/experts.md), from the Brown corpus by category, split
// as the built-in model's training split (tools/train/brown-text.mjs):
//
//   node tools/experts/brown-texts.mjs OUT_DIR
//
//   press-train.txt      the training documents of the press categories (news, editorial,
//                        reviews): the "task" text the experts are profiled on
//   press-profile.txt    every 10th of those: a sample of the task across its three categories,
//                        small enough for `molm profile` on a CPU adapter in minutes
//   press-heldout.txt    the held-out press documents (the task's unseen text)
//   fiction-heldout.txt  the held-out fiction documents (adventure, fiction, humor, mystery,
//                        romance, science fiction): the "other" text
// Each document is followed by <|endoftext|>, as in tools/train/data/heldout.txt. Each text's
// token ids go beside it as NAME.u32 (little-endian uint32, for pytorch_eval.py --ids).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { join } from 'node:path';
import { categories, corpusDir, documentNames, isHeldOut, readDoc } from '../train/brown-text.mjs';

export const PRESS = ['news', 'editorial', 'reviews'];
export const FICTION = ['adventure', 'fiction', 'humor', 'mystery', 'romance', 'science_fiction'];

const out = process.argv[2];
if (!out) throw new Error('usage: node tools/experts/brown-texts.mjs OUT_DIR');
mkdirSync(out, { recursive: true });
/** @type {Record<string, string[]>} */
const texts = { 'press-train.txt': [], 'press-profile.txt': [], 'press-heldout.txt': [], 'fiction-heldout.txt': [] };
for (const [i, name] of documentNames.entries()) {
  const cat = categories.get(name);
  if (cat === undefined) continue;
  const file = PRESS.includes(cat)
    ? isHeldOut(i)
      ? 'press-heldout.txt'
      : 'press-train.txt'
    : FICTION.includes(cat) && isHeldOut(i)
      ? 'fiction-heldout.txt'
      : null;
  if (!file) continue;
  const doc = readDoc(join(corpusDir, name)) + '<|endoftext|>';
  texts[file].push(doc);
  if (file === 'press-train.txt' && texts[file].length % 10 === 1) texts['press-profile.txt'].push(doc);
}
const tokenizer = new Tokenizer(JSON.parse(readFileSync(new URL('../../tests/fixtures/tokenizer/tokenizer.json', import.meta.url), 'utf8')), {});
for (const [file, docs] of Object.entries(texts)) {
  const text = docs.join('');
  const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
  writeFileSync(join(out, file), text);
  writeFileSync(join(out, file.replace(/\.txt$/, '.u32')), Buffer.from(new Uint32Array(ids).buffer));
  console.log(`${file}: ${docs.length} documents, ${ids.length} tokens`);
}
