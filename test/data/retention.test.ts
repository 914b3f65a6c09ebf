import { describe, expect, it } from 'vitest';
import {
  bucketKey,
  isoWeek,
  parseDuration,
  parseSize,
  planPrune,
  planQuota,
  planRetain,
  RetentionPolicyError,
  type RetentionPlan,
  type SnapshotRef,
} from '../../lib/ops/retention.js';

/** The fixed clock: Friday 2025-03-07 12:00 UTC (ISO week 2025-W10). */
const NOW = new Date('2025-03-07T12:00:00Z');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function snap(id: string, createdAt: string | Date, bytes = 100, files = 3): SnapshotRef {
  return { id, created_at: createdAt instanceof Date ? createdAt.toISOString() : createdAt, bytes, files };
}
const ago = (ms: number) => new Date(NOW.getTime() - ms);
const ids = (list: { id: string }[]) => list.map((s) => s.id);
const reasonsOf = (plan: RetentionPlan) => Object.fromEntries(plan.keep.map((s) => [s.id, s.reasons]));

describe('prune', () => {
  const set = [snap('s3', ago(3 * HOUR)), snap('s1', ago(1 * HOUR)), snap('s5', ago(5 * HOUR)), snap('s2', ago(2 * HOUR)), snap('s4', ago(4 * HOUR))];

  it('keeps the N newest whatever the input order and deletes the rest, newest first', () => {
    const plan = planPrune(set, { keep: 2 }, NOW);
    expect(ids(plan.keep)).toEqual(['s1', 's2']);
    expect(ids(plan.delete)).toEqual(['s3', 's4', 's5']);
    expect(plan.keep[0].reasons).toEqual(['newest 2']);
    expect(plan.totals).toEqual({ before: { snapshots: 5, bytes: 500, files: 15 }, after: { snapshots: 2, bytes: 200, files: 6 } });
  });

  it('keep 0 plans to delete everything; keep above the count deletes nothing', () => {
    expect(planPrune(set, { keep: 0 }, NOW).keep).toEqual([]);
    expect(planPrune(set, { keep: 10 }, NOW).delete).toEqual([]);
  });

  it('refuses a negative or fractional keep, naming it', () => {
    expect(() => planPrune(set, { keep: -1 }, NOW)).toThrow(new RetentionPolicyError('keep must be a whole number of 0 or more, got -1'));
    expect(() => planPrune(set, { keep: 1.5 }, NOW)).toThrow(/keep must be a whole number/);
  });
});

describe('quota', () => {
  // Newest first: n1 .. n4, 100 bytes and 3 files each.
  const four = [snap('n4', ago(4 * HOUR)), snap('n3', ago(3 * HOUR)), snap('n2', ago(2 * HOUR)), snap('n1', ago(1 * HOUR))];

  it('by bytes: deletes oldest first until the total fits', () => {
    const plan = planQuota(four, { maxBytes: 250, keepMin: 1 }, NOW);
    expect(ids(plan.keep)).toEqual(['n1', 'n2']);
    expect(ids(plan.delete)).toEqual(['n3', 'n4']);
    expect(plan.totals.after.bytes).toBe(200);
    expect(plan.blocked).toBeUndefined();
    expect(plan.keep.every((s) => s.reasons[0] === 'within quota')).toBe(true);
  });

  it('by files: counts every file of every snapshot', () => {
    const plan = planQuota(four, { maxFiles: 7, keepMin: 0 }, NOW);
    expect(ids(plan.keep)).toEqual(['n1', 'n2']);
    expect(plan.totals.after.files).toBe(6);
  });

  it('with both limits, the stricter one decides', () => {
    expect(ids(planQuota(four, { maxBytes: 1_000, maxFiles: 4, keepMin: 0 }, NOW).keep)).toEqual(['n1']);
    expect(ids(planQuota(four, { maxBytes: 300, maxFiles: 100, keepMin: 0 }, NOW).keep)).toEqual(['n1', 'n2', 'n3']);
  });

  it('deletes from the oldest end only: an older small snapshot does not jump the queue', () => {
    const set = [snap('small-old', ago(3 * HOUR), 10), snap('big', ago(2 * HOUR), 500), snap('new', ago(HOUR), 100)];
    const plan = planQuota(set, { maxBytes: 150, keepMin: 0 }, NOW);
    expect(ids(plan.keep)).toEqual(['new']);
    expect(ids(plan.delete)).toEqual(['big', 'small-old']);
  });

  it('already within quota: deletes nothing', () => {
    const plan = planQuota(four, { maxBytes: 400, maxFiles: 12, keepMin: 1 }, NOW);
    expect(plan.delete).toEqual([]);
    expect(plan.blocked).toBeUndefined();
  });

  it('never goes below keep_min, and reports "blocked" when that leaves it over quota', () => {
    const set = [snap('old', ago(3 * HOUR), 500), snap('mid', ago(2 * HOUR), 500), snap('new', ago(HOUR), 500)];
    const plan = planQuota(set, { maxBytes: 600, keepMin: 2 }, NOW);
    expect(ids(plan.keep)).toEqual(['new', 'mid']);
    expect(reasonsOf(plan)).toEqual({ new: ['within quota'], mid: ['keep_min'] });
    expect(ids(plan.delete)).toEqual(['old']);
    expect(plan.blocked?.reason).toBe(
      'quota cannot be met without going below keep_min=2: after deleting, 2 snapshot(s) remain with 1000 bytes > max 600',
    );
  });

  it('blocked by files as well, and when keep_min exceeds the count nothing is deleted', () => {
    const plan = planQuota(four, { maxFiles: 2, keepMin: 10 }, NOW);
    expect(plan.delete).toEqual([]);
    expect(plan.blocked?.reason).toMatch(/keep_min=10.*12 files > max 2/);
  });

  it('needs a limit and sane numbers', () => {
    expect(() => planQuota(four, { keepMin: 1 }, NOW)).toThrow(/quota needs a limit/);
    expect(() => planQuota(four, { maxBytes: -5, keepMin: 1 }, NOW)).toThrow(/max bytes must be a whole number of 0 or more, got -5/);
    expect(() => planQuota(four, { maxFiles: 3, keepMin: -1 }, NOW)).toThrow(/keep_min must be/);
  });
});

describe('retain', () => {
  it('keep-age: keeps everything inside the window (inclusive), deletes what is older', () => {
    const set = [snap('h1', ago(HOUR)), snap('d2', ago(2 * DAY)), snap('edge', ago(7 * DAY)), snap('d8', ago(8 * DAY))];
    const plan = planRetain(set, { keepAgeMs: 7 * DAY, keepMin: 0 }, NOW);
    expect(ids(plan.keep)).toEqual(['h1', 'd2', 'edge']);
    expect(ids(plan.delete)).toEqual(['d8']);
    expect(plan.keep[0].reasons).toEqual(['keep-age window']);
  });

  it('hourly: the newest snapshot of each of the last H hours that hold one', () => {
    const set = [
      snap('11:50', '2025-03-07T11:50:00Z'),
      snap('11:10', '2025-03-07T11:10:00Z'),
      snap('10:30', '2025-03-07T10:30:00Z'),
      snap('10:05', '2025-03-07T10:05:00Z'),
      snap('08:00', '2025-03-07T08:00:00Z'), // nothing at 09: the third bucket is 08
      snap('07:00', '2025-03-07T07:00:00Z'),
    ];
    const plan = planRetain(set, { hourly: 3, keepMin: 0 }, NOW);
    expect(reasonsOf(plan)).toEqual({ '11:50': ['hourly 2025-03-07T11'], '10:30': ['hourly 2025-03-07T10'], '08:00': ['hourly 2025-03-07T08'] });
    expect(ids(plan.delete)).toEqual(['11:10', '10:05', '07:00']);
  });

  it('daily', () => {
    const set = [
      snap('7th-10h', '2025-03-07T10:00:00Z'),
      snap('7th-08h', '2025-03-07T08:00:00Z'),
      snap('6th-23h', '2025-03-06T23:00:00Z'),
      snap('6th-01h', '2025-03-06T01:00:00Z'),
      snap('4th', '2025-03-04T12:00:00Z'),
    ];
    const plan = planRetain(set, { daily: 2, keepMin: 0 }, NOW);
    expect(reasonsOf(plan)).toEqual({ '7th-10h': ['daily 2025-03-07'], '6th-23h': ['daily 2025-03-06'] });
  });

  it('weekly: ISO weeks starting on Monday', () => {
    const set = [
      snap('fri-w10', '2025-03-07T09:00:00Z'),
      snap('mon-w10', '2025-03-03T00:00:00Z'),
      snap('sun-w09', '2025-03-02T23:59:59Z'),
      snap('mon-w09', '2025-02-24T00:00:00Z'),
      snap('w08', '2025-02-20T00:00:00Z'),
    ];
    const plan = planRetain(set, { weekly: 2, keepMin: 0 }, NOW);
    expect(reasonsOf(plan)).toEqual({ 'fri-w10': ['weekly 2025-W10'], 'sun-w09': ['weekly 2025-W09'] });
    expect(isoWeek(new Date('2024-12-30T00:00:00Z'))).toEqual({ year: 2025, week: 1 });
    expect(isoWeek(new Date('2021-01-01T00:00:00Z'))).toEqual({ year: 2020, week: 53 });
  });

  it('monthly and yearly', () => {
    const set = [
      snap('2025-03', '2025-03-05T00:00:00Z'),
      snap('2025-02-late', '2025-02-28T00:00:00Z'),
      snap('2025-02-early', '2025-02-01T00:00:00Z'),
      snap('2025-01', '2025-01-15T00:00:00Z'),
      snap('2024-12', '2024-12-31T00:00:00Z'),
      snap('2024-06', '2024-06-01T00:00:00Z'),
      snap('2023', '2023-05-05T00:00:00Z'),
    ];
    expect(reasonsOf(planRetain(set, { monthly: 2, keepMin: 0 }, NOW))).toEqual({ '2025-03': ['monthly 2025-03'], '2025-02-late': ['monthly 2025-02'] });
    expect(reasonsOf(planRetain(set, { yearly: 2, keepMin: 0 }, NOW))).toEqual({ '2025-03': ['yearly 2025'], '2024-12': ['yearly 2024'] });
  });

  it('keeps the union of every rule, with every reason a snapshot is kept', () => {
    // A snapshot every 7 hours for 400 days.
    const set = Array.from({ length: Math.floor((400 * 24) / 7) }, (_, i) => snap(`s${i}`, ago(i * 7 * HOUR + 60_000)));
    const policy = { keepAgeMs: 2 * DAY, hourly: 5, daily: 10, weekly: 6, monthly: 4, yearly: 2, keepMin: 3 };
    const plan = planRetain(set, policy, NOW);
    const alone = [
      planRetain(set, { keepAgeMs: policy.keepAgeMs, keepMin: 0 }, NOW),
      planRetain(set, { hourly: 5, keepMin: 0 }, NOW),
      planRetain(set, { daily: 10, keepMin: 0 }, NOW),
      planRetain(set, { weekly: 6, keepMin: 0 }, NOW),
      planRetain(set, { monthly: 4, keepMin: 0 }, NOW),
      planRetain(set, { yearly: 2, keepMin: 0 }, NOW),
      planPrune(set, { keep: 3 }, NOW),
    ];
    const union = new Set(alone.flatMap((p) => ids(p.keep)));
    expect(new Set(ids(plan.keep))).toEqual(union);
    expect(plan.keep.length + plan.delete.length).toBe(set.length);
    // The newest is kept for several reasons at once.
    expect(plan.keep[0].reasons).toEqual(['keep-age window', `hourly ${bucketKey('hourly', ago(60_000))}`, 'daily 2025-03-07', 'weekly 2025-W10', 'monthly 2025-03', 'yearly 2025']);
    // Exactly 10 distinct days have their newest kept for "daily".
    expect(plan.keep.filter((s) => s.reasons.some((r) => r.startsWith('daily '))).length).toBe(10);
  });

  it('keep_min tops up the newest when the rules keep too few', () => {
    const set = [snap('a', ago(10 * DAY)), snap('b', ago(11 * DAY)), snap('c', ago(12 * DAY))];
    const plan = planRetain(set, { keepAgeMs: HOUR, keepMin: 2 }, NOW);
    expect(reasonsOf(plan)).toEqual({ a: ['keep_min'], b: ['keep_min'] });
    expect(ids(plan.delete)).toEqual(['c']);
  });

  it('never deletes a snapshot dated after now', () => {
    const plan = planRetain([snap('future', new Date(NOW.getTime() + DAY)), snap('old', ago(30 * DAY))], { keepAgeMs: DAY, keepMin: 0 }, NOW);
    expect(reasonsOf(plan)).toEqual({ future: ['future-dated'] });
  });

  it('needs at least one rule and sane numbers', () => {
    expect(() => planRetain([], { keepMin: 1 }, NOW)).toThrow(/retain needs a keep-age window and\/or at least one of hourly/);
    expect(() => planRetain([], { daily: -1, keepMin: 1 }, NOW)).toThrow(/daily must be a whole number of 0 or more, got -1/);
    expect(() => planRetain([], { keepAgeMs: -5, keepMin: 1 }, NOW)).toThrow(/keep-age/);
  });
});

describe('parsing sizes and durations', () => {
  it('reads decimal and binary sizes', () => {
    expect(parseSize('1500')).toBe(1500);
    expect(parseSize('10k')).toBe(10_000);
    expect(parseSize('500MB')).toBe(500_000_000);
    expect(parseSize('1.5GiB')).toBe(1.5 * 2 ** 30);
    expect(() => parseSize('-1')).toThrow(/invalid size "-1"/);
    expect(() => parseSize('12 parsecs')).toThrow(/invalid size/);
  });

  it('reads durations', () => {
    expect(parseDuration('7d')).toBe(7 * DAY);
    expect(parseDuration('1d12h')).toBe(36 * HOUR);
    expect(parseDuration('2w')).toBe(14 * DAY);
    expect(() => parseDuration('7 days')).toThrow(/invalid duration "7 days"/);
    expect(() => parseDuration('')).toThrow(/invalid duration/);
  });
});
