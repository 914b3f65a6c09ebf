import type { Command } from 'commander';
import type { CliContext } from '../context.js';

// Placeholder: the keys commands are registered here.
export function register(_program: Command, _ctx: CliContext): void {}
