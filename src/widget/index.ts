// The widget's entry: loading this script (a module or a classic script tag) defines
// <molm-chat>; as an ES module it also exports the class.
import { defineMolmChat } from './molm-chat.ts';

export { MolmChat, defineMolmChat, type MolmChatEventMap } from './molm-chat.ts';
defineMolmChat();
