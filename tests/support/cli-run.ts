import { runCli, type CliOptions } from '../../bin/cli/run-cli';
import type { CliIo } from '../../bin/cli/io';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI in-process with its output captured. `done` resolves with the exit code and the
 * output; `stdout()` reads what was printed so far (for watching a running command).
 */
export function startCli(args: string[], io: Omit<CliIo, 'out' | 'err'>, options?: CliOptions): { done: Promise<CliRun>; stdout: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  const captured: CliIo = { ...io, out: (text) => out.push(text), err: (text) => err.push(text) };
  const done = runCli(args, captured, options).then((code): CliRun => ({ code, stdout: out.join(''), stderr: err.join('') }));
  return { done, stdout: () => out.join('') };
}

export const runCliCaptured = (args: string[], io: Omit<CliIo, 'out' | 'err'>, options?: CliOptions): Promise<CliRun> => startCli(args, io, options).done;
