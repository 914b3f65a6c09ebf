import { Command, CommanderError } from 'commander';
import { ConfigError } from '../lib/config/config.js';
import { CliContext, CliError } from './context.js';
import * as approvers from './commands/approvers.js';
import * as data from './commands/data.js';
import * as doctor from './commands/doctor.js';
import * as harvest from './commands/harvest.js';
import * as keys from './commands/keys.js';
import * as prospects from './commands/prospects.js';
import * as signals from './commands/signals.js';

/** `prospector`: the operator's command line. Commands live in cli/commands/. */
export function buildProgram(ctx: CliContext): Command {
  const program = new Command('prospector')
    .description('Prospector: leads and buying signals turned into human-approved sales emails')
    .version(process.env.npm_package_version ?? '0.1.0')
    .showHelpAfterError()
    .exitOverride();
  for (const mod of [doctor, prospects, approvers, harvest, signals, data, keys]) mod.register(program, ctx);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const ctx = new CliContext();
  try {
    await buildProgram(ctx).parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof CliError) {
      process.stderr.write(`error: ${err.message}\n`);
      return err.exitCode;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 78;
    }
    process.stderr.write(`error: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await ctx.close().catch(() => undefined);
  }
}
