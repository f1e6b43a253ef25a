import { describe, expect, it } from 'vitest';
import { ExpertResidency, type EvictionPolicy } from '../../src/experts/residency.ts';

// The expert cache's bookkeeping against a plain list-based simulation of the same policies.

/** A deliberately naive cache: an array of resident experts with their last use and use count. */
function naive(experts: number, slots: number, policy: EvictionPolicy, picks: number[][]): { hits: number; misses: number } {
  const resident = Array.from({ length: slots }, (_, s) => s);
  const last = new Array(experts).fill(0);
  const count = new Array(experts).fill(0);
  let hits = 0;
  let misses = 0;
  picks.forEach((need, t) => {
    const set = [...new Set(need)];
    for (const e of set) {
      count[e]++;
      last[e] = t + 1;
      if (resident.includes(e)) {
        hits++;
        continue;
      }
      misses++;
      const candidates = resident.filter((r) => !set.includes(r));
      const score = (r: number) => (policy === 'lru' ? [last[r], 0] : [count[r], last[r]]);
      candidates.sort((a, b) => score(a)[0] - score(b)[0] || score(a)[1] - score(b)[1] || resident.indexOf(a) - resident.indexOf(b));
      resident[resident.indexOf(candidates[0])] = e;
    }
  });
  return { hits, misses };
}

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
}

describe('ExpertResidency', () => {
  it('LRU and LFU count the same hits and misses as a naive simulation, and keep every pick resident', () => {
    for (const policy of ['lru', 'lfu'] as const) {
      for (const [experts, slots, k] of [
        [8, 2, 2],
        [8, 4, 2],
        [16, 5, 2],
        [32, 8, 4],
      ]) {
        const rnd = random(experts * 31 + slots);
        // Skewed picks, as real routers make: low ids more often.
        const picks = Array.from({ length: 400 }, () => Array.from({ length: k }, () => Math.floor(experts * rnd() ** 2)));
        const cache = new ExpertResidency(experts, slots, policy);
        for (const need of picks) {
          const loads = cache.admit(need);
          for (const e of need) expect(cache.slotOf(e)).toBeGreaterThanOrEqual(0);
          for (const { expert, slot } of loads) expect(cache.slotOf(expert)).toBe(slot);
          const slotsInUse = Array.from({ length: experts }, (_, e) => cache.slotOf(e)).filter((s) => s >= 0);
          expect(new Set(slotsInUse).size).toBe(slotsInUse.length);
          expect(slotsInUse.length).toBe(slots);
        }
        const want = naive(experts, slots, policy, picks);
        expect({ hits: cache.hits, misses: cache.misses }, `${policy} ${experts}/${slots}`).toEqual(want);
      }
    }
  });

  it('evicts by recency (LRU) or by frequency (LFU)', () => {
    const lru = new ExpertResidency(4, 2, 'lru'); // holds 0, 1
    lru.admit([0]);
    lru.admit([0]);
    lru.admit([1]);
    expect(lru.admit([2])).toEqual([{ expert: 2, slot: 0 }]); // 0 was used longest ago
    const lfu = new ExpertResidency(4, 2, 'lfu');
    lfu.admit([0]);
    lfu.admit([0]);
    lfu.admit([1]);
    expect(lfu.admit([2])).toEqual([{ expert: 2, slot: 1 }]); // 1 was used least often
    expect(() => lfu.admit([0, 1, 2])).toThrow(/3 experts are needed at once, but the cache has 2 slots/);
  });
});
