/**
 * core/engine/recent-deferrals.ts: a key counts as having deferred within a window, and the map
 * stays bounded however many keys a long-lived process defers.
 */
import { RecentDeferrals } from '../core/engine/recent-deferrals';

test('a deferral is seen within its window and not after it', () => {
  const deferrals = new RecentDeferrals(60_000);
  expect(deferrals.within('k:', 2_000, 1_000)).toBe(false);
  deferrals.note('k:', 1_000);
  expect(deferrals.within('k:', 2_000, 2_999)).toBe(true);
  expect(deferrals.within('k:', 2_000, 3_000)).toBe(false);
  expect(deferrals.within('k:', 60_000, 3_000)).toBe(true);
  expect(deferrals.within('other:', 60_000, 3_000)).toBe(false);
});

test('past 10,000 keys, the entries older than the longest window are dropped and the recent ones kept', () => {
  const deferrals = new RecentDeferrals(60_000);
  for (let i = 0; i < 9_999; i++) deferrals.note(`old${i}:`, 0);
  deferrals.note('recent:', 30_000);
  // The 10,001st key: the 9,999 older than a minute go, the recent one stays.
  deferrals.note('new:', 61_000);
  expect(deferrals.within('old0:', Infinity, 61_000)).toBe(false);
  expect(deferrals.within('recent:', 60_000, 61_000)).toBe(true);
  expect(deferrals.within('new:', 1, 61_000)).toBe(true);
  expect((deferrals as unknown as { lastAt: Map<string, number> }).lastAt.size).toBe(2);
});
