import type { Command } from 'commander';
import { CliError, type CliContext } from '../context.js';

/**
 * `prospector approvers add|list|remove`: the registry of people whose
 * decisions on drafts count. Through the API (admin scope), so each change is
 * audited with the key that made it.
 */

const print = (text: string): void => void process.stdout.write(`${text}\n`);
const list = (value: string) => value.split(',').map((v) => v.trim()).filter(Boolean);
const path = (identity: string) => `/v1/approvers/${encodeURIComponent(identity)}`;

interface Approver {
  identity: string;
  name: string | null;
  actions: string[];
  owners: string[] | null;
  domains: string[] | null;
}

export function register(program: Command, ctx: CliContext): void {
  const approvers = program.command('approvers').description('who may approve, edit and reject drafts (the approver registry)');

  approvers
    .command('add <email>')
    .description('register an approver, or change what they may decide')
    .option('--name <name>', 'their name')
    .option('--actions <actions>', 'comma-separated: approve, edit, reject', 'approve,edit,reject')
    .option('--owners <owners>', 'only prospects of these HubSpot owners (emails or ids, comma-separated)')
    .option('--domains <domains>', 'only prospects at these domains and their subdomains (comma-separated)')
    .option('--json', 'print JSON')
    .action(async (email: string, o: { name?: string; actions: string; owners?: string; domains?: string; json?: boolean }) => {
      const body = { name: o.name, actions: list(o.actions), owners: o.owners ? list(o.owners) : undefined, domains: o.domains ? list(o.domains) : undefined };
      const a = await ctx.api<Approver>('PUT', path(email), body);
      if (o.json) return print(JSON.stringify(a, null, 2));
      print(`${a.identity} may ${a.actions.join(', ')}${a.owners ? ` for owners ${a.owners.join(', ')}` : ''}${a.domains ? ` at ${a.domains.join(', ')}` : ''}.`);
      print(`Give them a key: prospector keys create --name "${a.name ?? a.identity}" --identity ${a.identity} --scopes prospects:read,approvals:write`);
    });

  approvers
    .command('list')
    .description('show the registry')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const { items } = await ctx.api<{ items: Approver[] }>('GET', '/v1/approvers');
      if (o.json) return print(JSON.stringify(items, null, 2));
      if (!items.length) return print('No approvers yet: prospector approvers add <email>');
      for (const a of items) {
        const limits = [a.owners && `owners ${a.owners.join(',')}`, a.domains && `domains ${a.domains.join(',')}`].filter(Boolean).join('; ');
        print(`${a.identity.padEnd(36)} ${a.actions.join(',').padEnd(20)} ${a.name ?? ''}${limits ? `  (${limits})` : ''}`.trimEnd());
      }
    });

  approvers
    .command('remove <email>')
    .description('remove an approver: their keys and tokens can no longer decide')
    .action(async (email: string) => {
      try {
        await ctx.api('DELETE', path(email));
      } catch (err) {
        if (err instanceof CliError && err.message.startsWith('404')) throw new CliError(`no approver ${email}`, 4);
        throw err;
      }
      print(`Removed ${email}.`);
    });
}
