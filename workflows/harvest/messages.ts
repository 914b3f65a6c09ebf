import { defineQuery } from '@temporalio/workflow';
import type { HarvestStatus } from '../../lib/domain/harvest.js';

/** The harvest's workflow names and query, defined once for the workflows, the schedule, the API and the CLI. */

export const HARVEST_WORKFLOW = 'harvest';
export const HARVEST_ANALYSIS_WORKFLOW = 'harvestAnalysis';

export const harvestStatusQuery = defineQuery<HarvestStatus>('harvestStatus');
