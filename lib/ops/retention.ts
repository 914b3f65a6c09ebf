/**
 * Retention over snapshots: which to keep, which to delete, and why.
 *
 * These are pure planning functions (a list of snapshots, a clock and a policy
 * in; a plan out) so the rules are tested with a fixed clock and an operator
 * can read the plan before anything is deleted. Deleting is the executor's job
 * (`applyRetention` in lib/ops/snapshots.ts), and only when forced.
 *
 * Semantics follow the signal harvester seed:
 * - prune:  keep the N newest.
 * - quota:  delete oldest first while over max bytes and/or max files, never
 *           below keep_min; when keep_min stops it short, the plan is "blocked".
 * - retain: keep the union of the keep-age window, the newest snapshot of each
 *           of the last H hourly / D daily / W weekly / M monthly / Y yearly
 *           buckets that hold a snapshot (UTC; ISO weeks), and the keep_min newest.
 */

export interface SnapshotRef {
  id: string;
  created_at: Date | string;
  /** Size on disk, all of the snapshot's files together. */
  bytes: number;
  /** Files on disk (manifest, ndjson.gz, csv.gz): what `quota --max-files` counts. */
  files?: number;
}

export interface PlannedSnapshot {
  id: string;
  created_at: string;
  bytes: number;
  files: number;
  /** Why it is kept; empty for a snapshot to delete. */
  reasons: string[];
}

export interface RetentionPlan {
  policy: 'prune' | 'quota' | 'retain';
  /** The settings the plan was made with, as given. */
  settings: Record<string, unknown>;
  now: string;
  /** Newest first. */
  keep: PlannedSnapshot[];
  /** Newest first. */
  delete: PlannedSnapshot[];
  totals: { before: Totals; after: Totals };
  /** Set when the policy cannot be met without going below keep_min (quota only). */
  blocked?: { reason: string };
}

export interface Totals {
  snapshots: number;
  bytes: number;
  files: number;
}

export class RetentionPolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RetentionPolicyError';
  }
}

// ---------------------------------------------------------------------------
// prune

export interface PrunePolicy {
  keep: number;
}

export function planPrune(snapshots: SnapshotRef[], policy: PrunePolicy, now: Date = new Date()): RetentionPlan {
  requireCount('keep', policy.keep);
  const sorted = newestFirst(snapshots);
  const reasons = sorted.map((_, i) => (i < policy.keep ? [`newest ${policy.keep}`] : []));
  return buildPlan('prune', { keep: policy.keep }, now, sorted, reasons);
}

// ---------------------------------------------------------------------------
// quota

export interface QuotaPolicy {
  maxBytes?: number;
  maxFiles?: number;
  keepMin: number;
}

export function planQuota(snapshots: SnapshotRef[], policy: QuotaPolicy, now: Date = new Date()): RetentionPlan {
  if (policy.maxBytes === undefined && policy.maxFiles === undefined) {
    throw new RetentionPolicyError('quota needs a limit: max bytes and/or max files');
  }
  if (policy.maxBytes !== undefined) requireCount('max bytes', policy.maxBytes);
  if (policy.maxFiles !== undefined) requireCount('max files', policy.maxFiles);
  requireCount('keep_min', policy.keepMin);

  const sorted = newestFirst(snapshots);
  const over = (t: Totals) =>
    (policy.maxBytes !== undefined && t.bytes > policy.maxBytes) || (policy.maxFiles !== undefined && t.files > policy.maxFiles);

  // Keep the longest run of newest snapshots that fits; delete the older rest,
  // oldest first, but never go below keep_min.
  let fit = 0;
  let sum = totalsOf([]);
  while (fit < sorted.length && !over(add(sum, sorted[fit]))) sum = add(sum, sorted[fit++]);
  const kept = Math.max(fit, Math.min(policy.keepMin, sorted.length));
  const left = totalsOf(sorted.slice(0, kept));
  const reasons = sorted.map((_, i) => (i < fit ? ['within quota'] : i < kept ? ['keep_min'] : []));
  const plan = buildPlan('quota', { max_bytes: policy.maxBytes ?? null, max_files: policy.maxFiles ?? null, keep_min: policy.keepMin }, now, sorted, reasons);
  if (over(left)) plan.blocked = { reason: blockedReason(left, policy) };
  return plan;
}

function blockedReason(left: Totals, policy: QuotaPolicy): string {
  const parts: string[] = [];
  if (policy.maxBytes !== undefined && left.bytes > policy.maxBytes) parts.push(`${left.bytes} bytes > max ${policy.maxBytes}`);
  if (policy.maxFiles !== undefined && left.files > policy.maxFiles) parts.push(`${left.files} files > max ${policy.maxFiles}`);
  return `quota cannot be met without going below keep_min=${policy.keepMin}: after deleting, ${left.snapshots} snapshot(s) remain with ${parts.join(' and ')}`;
}

// ---------------------------------------------------------------------------
// retain

export type BucketKind = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';
export const BUCKET_KINDS: BucketKind[] = ['hourly', 'daily', 'weekly', 'monthly', 'yearly'];

export interface RetainPolicy {
  /** Keep everything created within this many milliseconds before `now`. */
  keepAgeMs?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  keepMin: number;
}

export function planRetain(snapshots: SnapshotRef[], policy: RetainPolicy, now: Date = new Date()): RetentionPlan {
  if (policy.keepAgeMs !== undefined && !(Number.isFinite(policy.keepAgeMs) && policy.keepAgeMs >= 0)) {
    throw new RetentionPolicyError(`keep-age must be a positive duration, got ${policy.keepAgeMs}`);
  }
  for (const kind of BUCKET_KINDS) if (policy[kind] !== undefined) requireCount(kind, policy[kind]!);
  requireCount('keep_min', policy.keepMin);
  if (policy.keepAgeMs === undefined && BUCKET_KINDS.every((k) => !policy[k])) {
    throw new RetentionPolicyError('retain needs a keep-age window and/or at least one of hourly, daily, weekly, monthly, yearly');
  }

  const sorted = newestFirst(snapshots);
  const reasons: string[][] = sorted.map(() => []);
  const nowMs = now.getTime();

  sorted.forEach((s, i) => {
    const t = new Date(s.created_at).getTime();
    if (t > nowMs) reasons[i].push('future-dated');
    else if (policy.keepAgeMs !== undefined && nowMs - t <= policy.keepAgeMs) reasons[i].push('keep-age window');
  });

  // Newest first, so the first snapshot seen in a bucket is that bucket's newest.
  for (const kind of BUCKET_KINDS) {
    const wanted = policy[kind] ?? 0;
    const seen = new Set<string>();
    for (let i = 0; i < sorted.length && seen.size < wanted; i++) {
      const key = bucketKey(kind, new Date(sorted[i].created_at));
      if (seen.has(key)) continue;
      seen.add(key);
      reasons[i].push(`${kind} ${key}`);
    }
  }

  for (let i = 0; i < Math.min(policy.keepMin, sorted.length); i++) if (reasons[i].length === 0) reasons[i].push('keep_min');

  const settings = {
    keep_age_ms: policy.keepAgeMs ?? null,
    ...Object.fromEntries(BUCKET_KINDS.map((k) => [k, policy[k] ?? 0])),
    keep_min: policy.keepMin,
  };
  return buildPlan('retain', settings, now, sorted, reasons);
}

/** The calendar bucket a moment falls in, in UTC: 2025-03-07T14, 2025-03-07, 2025-W10, 2025-03, 2025. */
export function bucketKey(kind: BucketKind, at: Date): string {
  const iso = at.toISOString();
  switch (kind) {
    case 'hourly':
      return iso.slice(0, 13);
    case 'daily':
      return iso.slice(0, 10);
    case 'weekly': {
      const { year, week } = isoWeek(at);
      return `${year}-W${String(week).padStart(2, '0')}`;
    }
    case 'monthly':
      return iso.slice(0, 7);
    case 'yearly':
      return iso.slice(0, 4);
  }
}

/** ISO 8601 week (weeks start on Monday; week 1 holds the year's first Thursday). */
export function isoWeek(at: Date): { year: number; week: number } {
  const d = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate()));
  const dayOfWeek = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - dayOfWeek); // the Thursday of this week decides the year
  const year = d.getUTCFullYear();
  const week = Math.ceil(((d.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return { year, week };
}

// ---------------------------------------------------------------------------
// input parsing shared by the CLI and the API

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  ki: 2 ** 10, kib: 2 ** 10, mi: 2 ** 20, mib: 2 ** 20, gi: 2 ** 30, gib: 2 ** 30, ti: 2 ** 40, tib: 2 ** 40,
};

/** "500MB" (decimal), "1.5GiB" (binary) or plain bytes. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new RetentionPolicyError(`invalid size "${text}": expected bytes or a number with a unit such as 500MB, 2GiB, 10k`);
  }
  return Math.floor(Number(m[1]) * unit);
}

const DURATION_UNITS: Record<string, number> = { s: 1e3, m: 60e3, h: 3_600e3, d: 86_400e3, w: 7 * 86_400e3, y: 365 * 86_400e3 };

/** "7d", "36h", "2w", "1d12h". */
export function parseDuration(text: string): number {
  const parts = [...text.trim().matchAll(/(\d+(?:\.\d+)?)([smhdwy])/gi)];
  const rebuilt = parts.map((p) => p[0]).join('');
  if (parts.length === 0 || rebuilt.toLowerCase() !== text.trim().toLowerCase()) {
    throw new RetentionPolicyError(`invalid duration "${text}": expected a number with a unit (s, m, h, d, w, y) such as 7d, 36h or 1d12h`);
  }
  return parts.reduce((sum, p) => sum + Number(p[1]) * DURATION_UNITS[p[2].toLowerCase()], 0);
}

// ---------------------------------------------------------------------------
// shared

function requireCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RetentionPolicyError(`${name} must be a whole number of 0 or more, got ${value}`);
  }
}

function newestFirst(snapshots: SnapshotRef[]): SnapshotRef[] {
  return [...snapshots].sort((a, b) => {
    const d = new Date(b.created_at).getTime() - new Date(a.created_at).getTime();
    return d !== 0 ? d : b.id.localeCompare(a.id);
  });
}

function filesOf(s: SnapshotRef): number {
  return s.files ?? 1;
}

function totalsOf(list: SnapshotRef[]): Totals {
  return list.reduce<Totals>(add, { snapshots: 0, bytes: 0, files: 0 });
}

function add(t: Totals, s: SnapshotRef): Totals {
  return { snapshots: t.snapshots + 1, bytes: t.bytes + s.bytes, files: t.files + filesOf(s) };
}

function buildPlan(
  policy: RetentionPlan['policy'],
  settings: Record<string, unknown>,
  now: Date,
  sorted: SnapshotRef[],
  reasons: string[][],
): RetentionPlan {
  const items: PlannedSnapshot[] = sorted.map((s, i) => ({
    id: s.id,
    created_at: new Date(s.created_at).toISOString(),
    bytes: s.bytes,
    files: filesOf(s),
    reasons: reasons[i],
  }));
  const keep = items.filter((s) => s.reasons.length > 0);
  const del = items.filter((s) => s.reasons.length === 0);
  return {
    policy,
    settings,
    now: now.toISOString(),
    keep,
    delete: del,
    totals: { before: totalsOf(items), after: totalsOf(keep) },
  };
}
