import { looksLikeHubRepo } from '../checkpoint/hub.ts';

/** A URL the engine fetches, as opposed to a local folder (Node) or a path relative to the page. */
export const isUrl = (s: string) => /^(https?|blob|data):/i.test(s);

/**
 * Whether `model` names a hub repo (ORG/NAME or ORG/NAME@REV) rather than a relative URL: no
 * scheme, no leading "." or "/", no trailing "/" and not a .json file. A relative URL to a model
 * folder is written "./org/name/" or "/models/name/".
 */
export function isHubId(model: string): boolean {
  return !isUrl(model) && !model.endsWith('/') && !model.endsWith('.json') && looksLikeHubRepo(model);
}
