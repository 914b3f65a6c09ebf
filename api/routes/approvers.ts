import { z } from 'zod';
import { DECISION_ACTIONS } from '../../lib/domain/approval-token.js';
import { approverInputSchema, identitySchema, listApprovers, putApprover, removeApprover } from '../../lib/store/approvers.js';
import type { ApiDeps } from '../deps.js';
import { problems } from '../problem.js';
import { defineRoute, type AnyRoute, type Caller } from '../route.js';

/**
 * The approver registry: who may approve, edit or reject drafts, optionally
 * only for some HubSpot owners or prospect domains. Admin scope; every change
 * is audited with the key that made it.
 */

const timestamp = z.iso.datetime({ offset: true });

const ApproverView = z
  .object({
    identity: z.string().describe('The approver\'s email address: API keys with this identity decide as them'),
    name: z.string().nullable(),
    actions: z.array(z.enum(DECISION_ACTIONS)),
    owners: z.array(z.string()).nullable().describe('HubSpot owner emails or ids whose prospects they may decide on; null: any'),
    domains: z.array(z.string()).nullable().describe('Prospect domains (and subdomains) they may decide on; null: any'),
    createdBy: z.string(),
    createdAt: timestamp,
    updatedAt: timestamp,
  })
  .meta({ id: 'Approver' });

const IdentityParams = z.object({ identity: identitySchema });
const PutBody = approverInputSchema.omit({ identity: true }).meta({ id: 'ApproverRequest' });

const actor = (caller: Caller | undefined) => (caller ? `key:${caller.keyId}` : 'api');

export function approverRoutes(deps: ApiDeps): AnyRoute[] {
  return [
    defineRoute({
      method: 'get',
      path: '/approvers',
      operationId: 'listApprovers',
      summary: 'The approver registry',
      tags: ['approvers'],
      auth: { scope: 'admin' },
      responses: { 200: { description: 'Every approver, by identity', schema: z.object({ items: z.array(ApproverView) }) } },
      async handler() {
        return { body: { items: await listApprovers(deps.pool) } };
      },
    }),
    defineRoute({
      method: 'put',
      path: '/approvers/:identity',
      operationId: 'putApprover',
      summary: 'Register an approver, or change what they may decide',
      tags: ['approvers'],
      auth: { scope: 'admin' },
      params: IdentityParams,
      body: PutBody,
      responses: { 200: { description: 'Updated', schema: ApproverView }, 201: { description: 'Registered', schema: ApproverView } },
      async handler({ params, body, caller }) {
        const { approver, created } = await putApprover(deps.pool, { ...body, identity: params.identity }, actor(caller));
        return { status: created ? 201 : 200, body: approver };
      },
    }),
    defineRoute({
      method: 'delete',
      path: '/approvers/:identity',
      operationId: 'removeApprover',
      summary: 'Remove an approver: their keys can no longer decide, and tokens issued to them are refused',
      tags: ['approvers'],
      auth: { scope: 'admin' },
      params: IdentityParams,
      responses: { 204: { description: 'Removed' }, 404: { description: 'No such approver' } },
      async handler({ params, caller }) {
        if (!(await removeApprover(deps.pool, params.identity, actor(caller)))) throw problems.notFound(`No approver ${params.identity}`);
        return { status: 204 };
      },
    }),
  ];
}
