import type { Slot } from '../../lib/domain/prospect.js';
import type { Calendar } from '../providers/google.js';
import { call } from '../providers/failures.js';

/**
 * Step 4, slots: the sender's free/busy over the next business days, and three
 * 30-minute slots inside working hours, labelled in the prospect's time zone
 * when we know it (and inside the prospect's working hours too, when the two
 * days overlap), else in the sender's.
 */

export interface SlotRequest {
  senderEmail: string;
  senderTimeZone: string;
  prospectTimeZone?: string;
  /** "HH:MM" in the sender's zone (the prospect's day uses the same hours in their zone). */
  workingHours: { start: string; end: string };
  businessDays?: number;
  count?: number;
  minutes?: number;
  /** For tests: the moment to plan from. */
  now?: number;
}

interface Parts {
  year: number;
  month: number;
  day: number;
  weekday: number; // 0 = Sunday
  hour: number;
  minute: number;
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const formats = new Map<string, Intl.DateTimeFormat>();

function partsIn(ms: number, timeZone: string): Parts {
  let f = formats.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', weekday: 'short', hour: 'numeric', minute: 'numeric' });
    formats.set(timeZone, f);
  }
  const p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  return { year: +p.year!, month: +p.month!, day: +p.day!, weekday: WEEKDAYS.indexOf(p.weekday!), hour: +p.hour! % 24, minute: +p.minute! };
}

/** Offset of a zone from UTC at an instant, in ms. */
function offsetAt(ms: number, timeZone: string): number {
  const p = partsIn(ms, timeZone);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute) - Math.floor(ms / 60_000) * 60_000;
}

/** The instant a wall-clock time happens in a zone (DST-safe for whole hours). */
export function zonedInstant(year: number, month: number, day: number, hhmm: string, timeZone: string): number {
  const [h, m] = hhmm.split(':').map(Number) as [number, number];
  const wall = Date.UTC(year, month - 1, day, h, m);
  let guess = wall - offsetAt(wall, timeZone);
  guess = wall - offsetAt(guess, timeZone);
  return guess;
}

const minutesOf = (hhmm: string) => {
  const [h, m] = hhmm.split(':').map(Number) as [number, number];
  return h * 60 + m;
};

export function slotLabel(startMs: number, endMs: number, timeZone: string): string {
  const day = new Intl.DateTimeFormat('en-GB', { timeZone, weekday: 'short', day: 'numeric', month: 'short' }).format(new Date(startMs)).replace(/,/g, '');
  const time = (ms: number) => new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(new Date(ms));
  const zone = new Intl.DateTimeFormat('en-US', { timeZone, timeZoneName: 'short' }).formatToParts(new Date(startMs)).find((p) => p.type === 'timeZoneName')?.value ?? timeZone;
  return `${day}, ${time(startMs)}–${time(endMs)} ${zone}`;
}

/** The next `n` business days (Mon–Fri in the sender's zone), starting tomorrow. */
function businessDays(now: number, timeZone: string, n: number): Parts[] {
  const days: Parts[] = [];
  for (let offset = 1; days.length < n && offset < n * 3 + 7; offset++) {
    const p = partsIn(now + offset * 86_400_000, timeZone);
    if (p.weekday >= 1 && p.weekday <= 5 && !days.some((d) => d.day === p.day && d.month === p.month)) days.push(p);
  }
  return days;
}

function withinProspectDay(startMs: number, endMs: number, zone: string, hours: { start: string; end: string }): boolean {
  const s = partsIn(startMs, zone);
  const e = partsIn(endMs - 1, zone);
  if (s.weekday === 0 || s.weekday === 6 || s.day !== e.day) return false;
  return s.hour * 60 + s.minute >= minutesOf(hours.start) && e.hour * 60 + e.minute < minutesOf(hours.end);
}

export interface BusyBlock {
  start: number;
  end: number;
}

/** Pure slot choice from candidate days and busy blocks (unit-tested without a calendar). */
export function chooseSlots(req: SlotRequest, days: Parts[], busy: BusyBlock[]): Slot[] {
  const minutes = req.minutes ?? 30;
  const count = req.count ?? 3;
  const stepMs = minutes * 60_000;
  const perDay = days.map((d) => {
    const from = zonedInstant(d.year, d.month, d.day, req.workingHours.start, req.senderTimeZone);
    const to = zonedInstant(d.year, d.month, d.day, req.workingHours.end, req.senderTimeZone);
    const free: number[] = [];
    for (let t = from; t + stepMs <= to; t += stepMs) {
      if (!busy.some((b) => t < b.end && t + stepMs > b.start)) free.push(t);
    }
    return free;
  });
  const fitsProspect = (t: number) => !req.prospectTimeZone || withinProspectDay(t, t + stepMs, req.prospectTimeZone, req.workingHours);
  // Both parties' working hours when possible; the sender's alone when their days do not overlap.
  const usable = perDay.some((free) => free.some(fitsProspect)) ? perDay.map((free) => free.filter(fitsProspect)) : perDay;
  // Spread over days first (one per day, alternating morning / afternoon), then fill.
  const picked: number[] = [];
  usable.forEach((free, i) => {
    if (picked.length >= count || free.length === 0) return;
    picked.push(i % 2 === 0 ? free[0]! : free[Math.floor(free.length / 2)]!);
  });
  for (const free of usable) for (const t of free) if (picked.length < count && !picked.includes(t)) picked.push(t);
  const zone = req.prospectTimeZone ?? req.senderTimeZone;
  return picked
    .sort((a, b) => a - b)
    .map((t) => ({ start: new Date(t).toISOString(), end: new Date(t + stepMs).toISOString(), label: slotLabel(t, t + stepMs, zone), timeZone: zone }));
}

export async function proposeSlots(calendar: Calendar, req: SlotRequest): Promise<Slot[]> {
  const now = req.now ?? Date.now();
  const days = businessDays(now, req.senderTimeZone, req.businessDays ?? 5);
  if (days.length === 0) return [];
  const first = days[0]!;
  const last = days.at(-1)!;
  const timeMin = new Date(zonedInstant(first.year, first.month, first.day, '00:00', req.senderTimeZone)).toISOString();
  const timeMax = new Date(zonedInstant(last.year, last.month, last.day, '23:59', req.senderTimeZone)).toISOString();
  const res = await call('google', 'freebusy.query', () =>
    calendar.freebusy.query({ requestBody: { timeMin, timeMax, timeZone: 'UTC', items: [{ id: req.senderEmail }] } }),
  );
  const entry = res.data.calendars?.[req.senderEmail];
  if (entry?.errors?.length) throw new Error(`free/busy for ${req.senderEmail}: ${entry.errors.map((e) => e.reason).join(', ')}`);
  const busy = (entry?.busy ?? []).map((b) => ({ start: Date.parse(b.start!), end: Date.parse(b.end!) }));
  return chooseSlots(req, days, busy);
}
