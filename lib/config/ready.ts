/** Tells a supervising parent (the dev stack) that this process is ready; a no-op when run by hand. */
export function reportReady(details: Record<string, unknown> = {}): void {
  process.send?.({ type: 'ready', ...details });
}
