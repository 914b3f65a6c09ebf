import type { SendMode } from './prospect.js';

/**
 * Whether Prospector may send email at all is the deployment's decision
 * (SEND_MODE; in production only with ALLOW_SEND_ON_APPROVAL=true), never a
 * caller's: whoever starts an intake, by API, CLI or a raw Temporal client,
 * can only narrow it to draft_only. The screening step resolves the intake's
 * mode with this, and the send step checks it again before calling Gmail.
 */

/** The deployment's SEND_MODE (lib/config/config.ts loads it). */
export interface OutreachSettings {
  outreach: { sendMode: SendMode };
}

/** True when this deployment sends approved drafts itself. */
export function deploymentSends(config: OutreachSettings): boolean {
  return config.outreach.sendMode === 'send_on_approval';
}

/** The mode an intake runs in: the deployment's, or draft_only when the start asks for that. */
export function effectiveSendMode(config: OutreachSettings, requested: unknown): { mode: SendMode; narrowed: boolean } {
  if (!deploymentSends(config)) return { mode: 'draft_only', narrowed: requested === 'send_on_approval' };
  return requested === 'draft_only' ? { mode: 'draft_only', narrowed: false } : { mode: 'send_on_approval', narrowed: false };
}

/** Why a send must not happen on this deployment, or undefined when it may. */
export function sendRefusal(config: OutreachSettings): string | undefined {
  return deploymentSends(config) ? undefined : 'this deployment does not send email (SEND_MODE=draft_only): the approved draft stays in Gmail for a person to send';
}
