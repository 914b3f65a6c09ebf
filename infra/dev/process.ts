import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { ROOT } from '../../lib/config/paths.js';

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  /** Resolves with the first IPC message of type "ready". */
  ready: Promise<Record<string, unknown>>;
  stop(graceMs: number): Promise<void>;
}

/**
 * Starts one of our TypeScript entry points as a child in its own process
 * group (so Ctrl-C reaches only the supervisor, which stops things in order)
 * with an IPC channel (a child shuts itself down when the channel closes, so a
 * killed supervisor leaves no orphans). `nodeArgs` go to node itself (a
 * worker's --max-old-space-size).
 */
export function startNodeProcess(
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  onLine: (name: string, line: string) => void,
  nodeArgs: string[] = [],
): ManagedProcess {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', path.join(ROOT, args[0]!), ...args.slice(1)], {
    cwd: ROOT,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  createInterface({ input: child.stdout! }).on('line', (line) => onLine(name, line));
  createInterface({ input: child.stderr! }).on('line', (line) => onLine(name, line));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : null))));
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.on('message', (m: any) => m?.type === 'ready' && resolve(m));
    void exited.then((code) => reject(new Error(`${name} exited with code ${code} before it was ready`)));
  });
  ready.catch(() => undefined);
  return {
    name,
    child,
    exited,
    ready,
    async stop(graceMs) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
