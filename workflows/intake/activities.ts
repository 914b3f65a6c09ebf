import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';

/**
 * The intake's activities, grouped by how they are retried. The policy
 * belongs to the kind of step, so every step of a kind is retried alike.
 */

/** Database-only steps: retried until PostgreSQL answers (it may be restarting), within half an hour. */
export const store = proxyActivities<Activities>({
  startToCloseTimeout: '20 seconds',
  scheduleToCloseTimeout: '30 minutes',
  retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '10 seconds' },
});

/** What must be recorded once an email went out: retried for as long as PostgreSQL is away. */
export const durableStore = proxyActivities<Activities>({
  startToCloseTimeout: '20 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

/** Provider steps: heartbeating, so a dead worker is noticed in seconds; bounded retries, 429 delays honoured. */
export const providers = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '500 ms', backoffCoefficient: 2, maximumInterval: '20 seconds', maximumAttempts: 15 },
});

/** The send: retried until it is settled one way or the other; the step itself gives up, saying why, when it must. */
export const sender = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

/** The LLM: slower calls, fewer attempts (a bad draft is judged, not retried). */
export const writer = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 8 },
});
