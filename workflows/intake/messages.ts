import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { ApprovePayload, EditPayload, IntakeStatus, RejectPayload } from '../../lib/domain/prospect.js';

/**
 * The intake's messages, defined once: the workflow handles them, and the
 * API, the CLI, the harvest workflow and the tests send them by these names.
 * Payloads are JSON (docs/intake.md), so any Temporal client can send them too.
 */

export const INTAKE_WORKFLOW = 'prospectIntake';

export const approveSignal = defineSignal<[ApprovePayload]>('approve');
export const rejectSignal = defineSignal<[RejectPayload]>('reject');
export const editSignal = defineSignal<[EditPayload]>('edit');
export const statusQuery = defineQuery<IntakeStatus>('status');

/** The decision signals by action name. */
export const decisionSignals = { approve: approveSignal, reject: rejectSignal, edit: editSignal } as const;
