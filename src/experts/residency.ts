import { UsageError } from '../errors.ts';

/**
 * Which expert to evict when a slot is needed: 'lru' the one picked longest ago, 'lfu' the one
 * picked least often so far (ties: longest ago).
 */
export type EvictionPolicy = 'lru' | 'lfu';

export const EVICTION_POLICIES: readonly EvictionPolicy[] = ['lru', 'lfu'];

/** An expert to copy into a slot before the step that needs it runs. */
export interface ExpertLoad {
  expert: number;
  slot: number;
}

/**
 * The residency of one router's experts in S GPU slots (S ≥ k): which expert each slot holds,
 * and what to load when a token's picks are not all resident. Bookkeeping only: the caller
 * copies the experts' bytes into the slots it is told to. The experts a call needs are never
 * evicted by that same call, so all k picks of a token are resident together.
 */
export class ExpertResidency {
  private readonly slotOfExpert: Int32Array;
  private readonly expertInSlot: Int32Array;
  private readonly lastUse: Float64Array;
  private readonly uses: Float64Array;
  private clock = 0;
  hits = 0;
  misses = 0;

  constructor(
    readonly experts: number,
    readonly slots: number,
    readonly policy: EvictionPolicy,
  ) {
    if (!Number.isInteger(slots) || slots < 1 || slots > experts) throw new UsageError(`An expert cache needs 1 to ${experts} slots, got ${slots}.`);
    if (!EVICTION_POLICIES.includes(policy)) throw new UsageError(`The eviction policy must be one of ${EVICTION_POLICIES.join(', ')}, got ${String(policy)}.`);
    this.slotOfExpert = new Int32Array(experts).fill(-1);
    this.expertInSlot = new Int32Array(slots).fill(-1);
    this.lastUse = new Float64Array(experts);
    this.uses = new Float64Array(experts);
    // Slots start filled with the first experts, as the loader uploads them.
    for (let s = 0; s < slots; s++) this.place(s, s);
  }

  /** The slot holding `expert`, or -1. */
  slotOf(expert: number): number {
    return this.slotOfExpert[expert];
  }

  /**
   * Makes the experts of one token's picks resident (duplicates allowed) and returns the loads
   * that takes; `slotOf` then maps each of them.
   */
  admit(needed: ArrayLike<number>): ExpertLoad[] {
    const tick = ++this.clock;
    const pinned = new Set<number>();
    for (let i = 0; i < needed.length; i++) pinned.add(needed[i]);
    if (pinned.size > this.slots) throw new UsageError(`${pinned.size} experts are needed at once, but the cache has ${this.slots} slots.`);
    const loads: ExpertLoad[] = [];
    for (const e of pinned) {
      if (e < 0 || e >= this.experts) throw new UsageError(`Expert ${e} is outside [0, ${this.experts}).`);
      this.uses[e]++;
      this.lastUse[e] = tick;
      if (this.slotOfExpert[e] >= 0) {
        this.hits++;
        continue;
      }
      this.misses++;
      const slot = this.victim(pinned);
      this.place(slot, e);
      loads.push({ expert: e, slot });
    }
    return loads;
  }

  /** The slot to reuse: an empty one, else the policy's choice among experts not pinned. */
  private victim(pinned: Set<number>): number {
    let best = -1;
    let bestKey: [number, number] = [Infinity, Infinity];
    for (let s = 0; s < this.slots; s++) {
      const e = this.expertInSlot[s];
      if (e < 0) return s;
      if (pinned.has(e)) continue;
      const key: [number, number] = this.policy === 'lru' ? [this.lastUse[e], 0] : [this.uses[e], this.lastUse[e]];
      if (key[0] < bestKey[0] || (key[0] === bestKey[0] && key[1] < bestKey[1])) {
        best = s;
        bestKey = key;
      }
    }
    return best;
  }

  private place(slot: number, expert: number): void {
    const old = this.expertInSlot[slot];
    if (old >= 0) this.slotOfExpert[old] = -1;
    this.expertInSlot[slot] = expert;
    this.slotOfExpert[expert] = slot;
  }
}
