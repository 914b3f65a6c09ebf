import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CliError, type CliContext } from '../context.js';

/**
 * `prospector prospects submit|list|show|approve|edit|reject`, the
 * suppression list (`prospector suppress add|remove|list`), the global pause
 * switch (`prospector pause|resume`) and the rest of the screening policy
 * (`prospector screening`). Everything goes through the HTTP API, with its
 * keys, scopes and audit trail (PROSPECTOR_API_URL / PROSPECTOR_API_KEY, or the
 * dev stack's key file).
 */

const print = (text: string): void => void process.stdout.write(`${text}\n`);
const json = (value: unknown): void => print(JSON.stringify(value, null, 2));
const path = (id: string, action?: string) => `/v1/prospects/${encodeURIComponent(id)}${action ? `/${action}` : ''}`;

function positiveInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new CliError(`${name} must be a whole number ≥ 1, got "${value}"`);
    return n;
  };
}

function nonNegativeInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new CliError(`${name} must be a whole number ≥ 0, got "${value}"`);
    return n;
  };
}

function readText(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

interface Summary {
  id: string;
  email: string;
  stage: string;
  approvalState: string;
  draftVersion: number;
  subject: string | null;
  reason: string | null;
  updatedAt: string;
}

function table(items: Summary[]): string {
  const rows = items.map((p) => [p.stage, p.approvalState, p.draftVersion ? `v${p.draftVersion}` : '-', p.email, (p.subject ?? p.reason ?? '').slice(0, 50), p.updatedAt.slice(0, 19).replace('T', ' ')]);
  const head = ['STAGE', 'APPROVAL', 'DRAFT', 'EMAIL', 'SUBJECT / REASON', 'UPDATED (UTC)'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

interface Submitted {
  id: string;
  submissionId: string;
  status: 'queued' | 'attached';
  email: string;
  statusUrl: string;
}

function waitSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new CliError(`--wait must be a number of seconds > 0, got "${value}"`);
  return n;
}

/** Polls the prospect until its read model names a run (the dispatcher started or joined it); undefined at the deadline. */
async function waitForRun(ctx: CliContext, id: string, seconds: number): Promise<string | undefined> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const p = await ctx.api<{ runId: string | null }>('GET', path(id));
    if (p.runId) return p.runId;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface IssuedToken {
  id: string;
  action: string;
  approver: string;
  token: string;
  expiresAt: string;
  command: string;
}

/** The token alone on stdout (for scripts), the ready command on stderr for a person. */
function printToken(t: IssuedToken, asJson?: boolean): void {
  if (asJson) return json(t);
  print(t.token);
  process.stderr.write(`Signed for ${t.action} of ${t.id} by ${t.approver}, valid until ${t.expiresAt}. Send it from any Temporal client:\n  ${t.command}\n`);
}

/** What a signal did, when the API waited for it; refusals are errors (exit 1). */
function outcome(result: { outcome: string | null; reason: string | null; requestId: string; id: string }, done: string): void {
  if (result.outcome === null) return print(`Sent; the workflow has not applied it yet (request ${result.requestId}). Check: prospector prospects show ${result.id}`);
  if (result.outcome === 'refused') throw new CliError(`refused by the workflow: ${result.reason ?? 'no reason given'}`);
  print(done);
}

export function register(program: Command, ctx: CliContext): void {
  const prospects = program.command('prospects').description('prospect intakes: submit leads, review and decide drafts');

  prospects
    .command('submit <email>')
    .description('submit a lead: stored at once; its intake starts shortly (or it joins the one running for that person)')
    .option('--name <name>', "the lead's name")
    .option('--company <company>', 'company')
    .option('--title <title>', 'job title')
    .option('--phone <phone>', 'phone')
    .option('--time-zone <zone>', 'IANA time zone, e.g. Europe/Berlin')
    .option('--notes <text>', 'free text from the lead (treated as data)')
    .option('--notes-file <file>', 'read the notes from a file (- for stdin)')
    .option('--source <source>', 'where the lead came from', 'cli')
    .option('--mode <mode>', 'draft_only or send_on_approval (default: the server setting)')
    .option('--approval-timeout <duration>', 'how long the draft waits for a decision, e.g. 72h')
    .option('--wait [seconds]', 'wait until the intake runs in Temporal and print its run (default 30 s)')
    .option('--json', 'print JSON')
    .action(async (email: string, o: Record<string, string | boolean | undefined>) => {
      const body = {
        email,
        name: o.name,
        company: o.company,
        title: o.title,
        phone: o.phone,
        timeZone: o.timeZone,
        notes: (o.notes as string | undefined) ?? readText(o.notesFile as string | undefined),
        source: o.source,
        mode: o.mode,
        approvalTimeout: o.approvalTimeout,
      };
      const result = await ctx.api<Submitted>('POST', '/v1/prospects', body);
      const run = o.wait === undefined ? undefined : await waitForRun(ctx, result.id, o.wait === true ? 30 : waitSeconds(o.wait as string));
      if (o.json) return json(run === undefined ? result : { ...result, runId: run });
      print(`${result.status === 'attached' ? 'Joined the intake for this person' : 'Queued the intake'} ${result.id} (submission ${result.submissionId}).`);
      if (run) print(`Running: run ${run}.`);
      else if (o.wait !== undefined) print('Not started yet: the workflow service may be down; the lead is kept and starts when it is back.');
      print(`Follow it: prospector prospects show ${result.id}`);
    });

  prospects
    .command('list')
    .description('list prospects, newest activity first')
    .option('--stage <stages>', 'filter by stage(s), comma-separated, e.g. AWAITING_APPROVAL')
    .option('--approval <state>', 'filter by approval state (NONE, AWAITING_APPROVAL, APPROVED, REJECTED, EXPIRED)')
    .option('--domain <domain>', 'filter by the prospect\'s domain')
    .option('--limit <n>', 'page size', positiveInt('--limit'), 50)
    .option('--cursor <cursor>', 'the next page (printed after a full page)')
    .option('--json', 'print JSON')
    .action(async (o: { stage?: string; approval?: string; domain?: string; limit: number; cursor?: string; json?: boolean }) => {
      const q = new URLSearchParams({ limit: String(o.limit) });
      if (o.stage) q.set('stage', o.stage.toUpperCase());
      if (o.approval) q.set('approvalState', o.approval.toUpperCase());
      if (o.domain) q.set('domain', o.domain);
      if (o.cursor) q.set('cursor', o.cursor);
      const page = await ctx.api<{ items: Summary[]; nextCursor: string | null }>('GET', `/v1/prospects?${q}`);
      if (o.json) return json(page);
      if (page.items.length === 0) return print('No prospects match.');
      print(table(page.items));
      if (page.nextCursor) print(`\nMore: prospector prospects list --cursor ${page.nextCursor}${o.stage ? ` --stage ${o.stage}` : ''}`);
    });

  prospects
    .command('show <id>')
    .description('one prospect: stage, the draft to review, slots, grounding facts, decisions and its audit trail (id or email)')
    .option('--json', 'print JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const p = await ctx.api<any>('GET', path(id));
      if (o.json) return json(p);
      print(`${p.id}  ${p.stage}  (approval ${p.approvalState}, mode ${p.mode})`);
      print(`Lead: ${[p.name, `<${p.email}>`, p.company && `at ${p.company}`].filter(Boolean).join(' ')}${p.owner ? `; owner ${p.owner}` : ''}`);
      if (p.reason) print(`Reason: ${p.reason}`);
      if (p.draft) {
        print(`\nDraft v${p.draft.version}${p.draft.replying ? ' (reply in thread)' : ''}: ${p.draft.subject}`);
        print(String(p.draft.body ?? '').split('\n').map((l: string) => `  | ${l}`).join('\n'));
        const used = (p.facts as { id: string; text: string }[]).filter((f) => (p.draft.factsUsed ?? []).includes(f.id));
        if (used.length) print(`Grounded on:\n${used.map((f) => `  - ${f.text}`).join('\n')}`);
      }
      const rejections = (p.grounding?.rejections ?? []) as { sentence: number; text: string; reason: string }[];
      if (rejections.length) {
        print(`\nRejected sentences (draft attempt ${p.grounding.attempts}):`);
        for (const r of rejections) print(`  ${r.sentence > 0 ? `${r.sentence}. ` : ''}“${r.text}”\n     ${r.reason}`);
      }
      if (p.slots?.length) print(`Slots: ${p.slots.map((s: { label: string }) => s.label).join('; ')}`);
      for (const r of p.refusals ?? []) print(`Refused ${r.signal} v${r.version ?? '?'} by ${r.by}: ${r.reason}`);
      if (p.decision) print(`Decision: ${p.decision.outcome}${p.decision.by ? ` by ${p.decision.by}` : ''}${p.decision.version ? ` (v${p.decision.version})` : ''}`);
      print(`\nAudit trail:`);
      for (const a of p.audit as { at: string; action: string; outcome: string; actor: string }[]) print(`  ${a.at.slice(0, 19).replace('T', ' ')}  ${a.action.padEnd(15)} ${a.outcome.padEnd(16)} ${a.actor}`);
      if (p.stage === 'AWAITING_APPROVAL') {
        print(`\nDecide: prospector prospects approve ${p.id} --draft-version ${p.draftVersion}   (or reject ${p.id} --reason "...")`);
      }
      print(`Temporal: ${p.links?.temporal ?? ''}`);
    });

  prospects
    .command('approve <id>')
    .description('approve the draft version you reviewed, as your API key\'s identity; with --subject/--body-file it is edit-then-approve')
    .requiredOption('--draft-version <n>', 'the draft version you reviewed (see `prospects show`)', positiveInt('--draft-version'))
    .option('--reason <text>', 'why (kept in the audit trail)')
    .option('--subject <subject>', 'edited subject')
    .option('--body-file <file>', 'edited body from a file (- for stdin)')
    .option('--token-only', 'print a signed approval token and the `temporal` command that sends it, instead of deciding now')
    .option('--no-wait', 'return once the signal is delivered')
    .option('--json', 'print JSON')
    .action(async (id: string, o: { draftVersion: number; reason?: string; subject?: string; bodyFile?: string; tokenOnly?: boolean; wait: boolean; json?: boolean }) => {
      const body = { version: o.draftVersion, reason: o.reason, subject: o.subject, body: readText(o.bodyFile) };
      if (o.tokenOnly) return printToken(await ctx.api<IssuedToken>('POST', path(id, 'approval-token'), { action: 'approve', ...body }), o.json);
      const result = await ctx.api<any>('POST', `${path(id, 'approve')}${o.wait ? '?wait=true' : ''}`, body);
      if (o.json) return json(result);
      outcome(result, `Approved ${id}.`);
    });

  prospects
    .command('edit <id>')
    .description('edit the draft version you reviewed; the Gmail draft is updated and becomes the next version')
    .requiredOption('--draft-version <n>', 'the draft version you reviewed', positiveInt('--draft-version'))
    .option('--subject <subject>', 'new subject')
    .option('--body-file <file>', 'new body from a file (- for stdin)')
    .option('--token-only', 'print a signed token and the `temporal` command for this edit, instead of editing now')
    .option('--no-wait', 'return once the signal is delivered')
    .option('--json', 'print JSON')
    .action(async (id: string, o: { draftVersion: number; subject?: string; bodyFile?: string; tokenOnly?: boolean; wait: boolean; json?: boolean }) => {
      if (o.subject === undefined && o.bodyFile === undefined) throw new CliError('nothing to edit: give --subject and/or --body-file');
      const body = { version: o.draftVersion, subject: o.subject, body: readText(o.bodyFile) };
      if (o.tokenOnly) return printToken(await ctx.api<IssuedToken>('POST', path(id, 'approval-token'), { action: 'edit', ...body }), o.json);
      const result = await ctx.api<any>('POST', `${path(id, 'edit')}${o.wait ? '?wait=true' : ''}`, body);
      if (o.json) return json(result);
      outcome(result, `Edit applied: the draft is now version ${o.draftVersion + 1}.`);
    });

  prospects
    .command('reject <id>')
    .description('reject the draft: the intake ends REJECTED and the Gmail draft is deleted')
    .requiredOption('--reason <text>', 'why (kept in the audit trail and the HubSpot note)')
    .option('--token-only', 'print a signed token and the `temporal` command for this rejection, instead of rejecting now')
    .option('--no-wait', 'return once the signal is delivered')
    .option('--json', 'print JSON')
    .action(async (id: string, o: { reason: string; tokenOnly?: boolean; wait: boolean; json?: boolean }) => {
      if (o.tokenOnly) return printToken(await ctx.api<IssuedToken>('POST', path(id, 'approval-token'), { action: 'reject', reason: o.reason }), o.json);
      const result = await ctx.api<any>('POST', `${path(id, 'reject')}${o.wait ? '?wait=true' : ''}`, { reason: o.reason });
      if (o.json) return json(result);
      outcome(result, `Rejected ${id}.`);
    });

  // ---- screening policy -------------------------------------------------------------

  const suppress = program.command('suppress').description('the suppression list: addresses and *@domain patterns that are never written to');
  suppress
    .command('add <pattern>')
    .description('add name@domain or *@domain')
    .option('--reason <text>', 'why')
    .action(async (pattern: string, o: { reason?: string }) => {
      const s = await ctx.api<{ pattern: string; kind: string }>('POST', '/v1/suppressions', { pattern, reason: o.reason });
      print(`Suppressed ${s.pattern} (${s.kind}).`);
    });
  suppress
    .command('remove <pattern>')
    .description('take a pattern off the list')
    .action(async (pattern: string) => {
      await ctx.api('DELETE', `/v1/suppressions/${encodeURIComponent(pattern)}`);
      print(`Removed ${pattern}.`);
    });
  suppress
    .command('list')
    .description('show the list')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const items: { pattern: string; kind: string; reason: string | null; createdAt: string }[] = [];
      let after: string | null = null;
      do {
        const page: { items: typeof items; nextAfter: string | null } = await ctx.api('GET', `/v1/suppressions?limit=500${after ? `&after=${encodeURIComponent(after)}` : ''}`);
        items.push(...page.items);
        after = page.nextAfter;
      } while (after);
      if (o.json) return json(items);
      if (items.length === 0) return print('The suppression list is empty.');
      for (const s of items) print(`${s.pattern.padEnd(40)} ${s.kind.padEnd(8)} ${s.reason ?? ''}`.trimEnd());
    });

  program
    .command('pause')
    .description('global pause switch: every new lead is SKIPPED until `prospector resume`')
    .option('--reason <text>', 'why (shown in each skipped intake)')
    .action(async (o: { reason?: string }) => {
      await ctx.api('PATCH', '/v1/screening', { paused: true, pausedReason: o.reason ?? null });
      print(`Intake paused${o.reason ? ` (${o.reason})` : ''}: new leads end SKIPPED until \`prospector resume\`.`);
    });
  program
    .command('resume')
    .description('turn the global pause switch off')
    .action(async () => {
      await ctx.api('PATCH', '/v1/screening', { paused: false, pausedReason: null });
      print('Intake resumed.');
    });

  program
    .command('screening')
    .description('show the screening policy, or change it with the options')
    .option('--recontact-days <n>', 're-contact window in days (0 = off)', nonNegativeInt('--recontact-days'))
    .option('--domain-cap <n>', 'intakes per prospect domain per day', nonNegativeInt('--domain-cap'))
    .option('--sender-cap <n>', 'intakes per sender per day', nonNegativeInt('--sender-cap'))
    .option('--sender-pitch <text>', 'what the sender sells, at most 1000 characters ("" clears it): the writer\'s only evidence about our product')
    .option('--json', 'print JSON')
    .action(async (o: { recontactDays?: number; domainCap?: number; senderCap?: number; senderPitch?: string; json?: boolean }) => {
      const patch = { recontactWindowDays: o.recontactDays, domainDailyCap: o.domainCap, senderDailyCap: o.senderCap, senderPitch: o.senderPitch };
      const changing = Object.values(patch).some((v) => v !== undefined);
      const s = await ctx.api<any>(changing ? 'PATCH' : 'GET', '/v1/screening', changing ? patch : undefined);
      if (o.json) return json(s);
      print(`Paused:            ${s.paused ? `yes${s.pausedReason ? ` (${s.pausedReason})` : ''}` : 'no'}`);
      print(`Re-contact window: ${s.recontactWindowDays} days`);
      print(`Daily caps:        ${s.domainDailyCap} per domain, ${s.senderDailyCap} per sender`);
      print(`Sender:            ${s.senderCompany}, ${s.workingHoursStart}–${s.workingHoursEnd} ${s.senderTimeZone}`);
      print(`Sender pitch:      ${s.senderPitch ?? '(none)'}`);
    });
}
