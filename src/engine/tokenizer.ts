import { Tokenizer } from '@huggingface/tokenizers';
import { ModelFormatError } from '../errors.ts';
import { LIMITS, parseJsonObject } from '../limits.ts';

/**
 * MoLM's tokenizer (GPT-2 byte-level BPE plus 38 whitespace tokens) through
 * @huggingface/tokenizers, the tokenizer library of transformers.js. MoLM adds no BOS token.
 */
export class MolmTokenizer {
  private constructor(private readonly tokenizer: Tokenizer) {}

  /** From the parsed (or raw) tokenizer.json. */
  static fromJson(json: string | Record<string, unknown>): MolmTokenizer {
    const parsed =
      typeof json === 'string'
        ? parseJsonObject(json, { what: 'tokenizer.json', maxBytes: LIMITS.tokenizerBytes, fix: "re-download the model's tokenizer.json" })
        : json;
    try {
      return new MolmTokenizer(new Tokenizer(parsed, {}));
    } catch (e) {
      throw new ModelFormatError(`tokenizer.json could not be read (${(e as Error).message}); re-download the model's tokenizer.json.`, {
        cause: e,
      });
    }
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[]): string {
    return this.tokenizer.decode([...ids], { skip_special_tokens: false });
  }

  /** A decoder for a stream of ids that never emits half a UTF-8 character. */
  streamDecoder(): StreamingDetokenizer {
    return new StreamingDetokenizer(this);
  }
}

/**
 * Turns ids into text as they arrive. Byte-level BPE can split one character over several
 * tokens; decoding such a prefix yields U+FFFD, so text is held back until the pending ids
 * decode without a trailing replacement character. Ids before the last emitted boundary are
 * dropped, so the cost per token stays constant.
 */
export class StreamingDetokenizer {
  private pending: number[] = [];

  constructor(private readonly tokenizer: Pick<MolmTokenizer, 'decode'>) {}

  /** The text this id completes ('' while a character is still incomplete). */
  push(id: number): string {
    this.pending.push(id);
    const text = this.tokenizer.decode(this.pending);
    if (text.endsWith('\uFFFD')) return '';
    this.pending = [];
    return text;
  }

  /** Whatever is still pending at the end of a stream (a truly invalid sequence shows as U+FFFD). */
  flush(): string {
    const text = this.pending.length ? this.tokenizer.decode(this.pending) : '';
    this.pending = [];
    return text;
  }
}
