import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/**
 * Custom search attributes the Temporal Web UI filters on, e.g.
 * `ApprovalState = "AWAITING_APPROVAL"`. Imported by workflow code, so this
 * module stays free of I/O.
 */
export const ProspectStage = defineSearchAttributeKey('ProspectStage', SearchAttributeType.KEYWORD);
export const ProspectDomain = defineSearchAttributeKey('ProspectDomain', SearchAttributeType.KEYWORD);
export const ApprovalState = defineSearchAttributeKey('ApprovalState', SearchAttributeType.KEYWORD);
export const ProspectOwner = defineSearchAttributeKey('ProspectOwner', SearchAttributeType.KEYWORD);

export const SEARCH_ATTRIBUTES = [ProspectStage, ProspectDomain, ApprovalState, ProspectOwner];

/** Task queues: intake work and harvest work scale separately. */
export const TASK_QUEUES = { prospecting: 'prospecting', harvest: 'harvest' } as const;
