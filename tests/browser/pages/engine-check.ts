import { urlFileSource } from '../../../src/checkpoint/web-files.ts';
import { loadGpuModel } from '../../../src/model/load.ts';
import { GREEDY } from '../../../src/token-model.ts';

/** Loads a checkpoint folder over HTTP (Range requests) and runs it on the page's WebGPU. */
export async function runEngineCheck(folderUrl: string, ids: number[], newTokens: number) {
  const model = await loadGpuModel(urlFileSource(folderUrl), { maxContext: 64 });
  try {
    const logits = Array.from(await model.prefillLogits(ids));
    model.reset();
    const tokens: number[] = [];
    for await (const id of model.generate(ids, newTokens, GREEDY)) tokens.push(id);
    return { adapter: model.ctx.description, logits, tokens };
  } finally {
    model.destroy();
  }
}
