import { ActivityFailure } from '@temporalio/workflow';

/** A failure in one line a person can act on, naming the step that failed. */
export function describeFailure(err: unknown): string {
  if (err instanceof ActivityFailure) {
    const cause = err.cause as { message?: string } | undefined;
    return `${err.activityType ?? 'activity'} failed: ${cause?.message ?? err.message}`.slice(0, 500);
  }
  return String((err as Error)?.message ?? err).slice(0, 500);
}
