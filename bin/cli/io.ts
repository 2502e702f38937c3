import { visible } from './visible';

/**
 * Where the CLI writes and what it reads from its environment. Commands never touch
 * process.stdout or process.env directly, so tests run them in-process and capture the output.
 * runCli hands commands a guarded io (guardIo): what they write with out and err reaches the
 * terminal with its control characters made visible, whatever text it carries.
 */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /**
   * The CLI's own cursor control (the progress redraw), written to stdout as is: the one raw path,
   * and it takes CSI sequences only. An io without it (a test's capture) gets them through out.
   */
  terminalControl?(sequence: string): void;
  /** Redraw progress in place only on a terminal; pipes and logs get appended lines. */
  isTTY: boolean;
  /** Terminal width, to know how many rows a wrapped line takes when redrawing. */
  columns?: number | undefined;
  env: Readonly<Record<string, string | undefined>>;
  /** The folder relative paths (--registration, init's target, the app's package.json) start from; default process.cwd(). */
  cwd?: string;
  /** How long --watch waits between polls; tests shorten it. */
  pollIntervalMs?: number;
}

let pipeHandled = false;

export function processIo(): CliIo {
  if (!pipeHandled) {
    pipeHandled = true;
    // `coremachine events ID | head` closes the pipe early: that is the reader being done, not a crash.
    process.stdout.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw error;
    });
  }
  return {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    terminalControl: (sequence) => process.stdout.write(sequence),
    isTTY: process.stdout.isTTY === true,
    columns: process.stdout.columns,
    env: process.env,
  };
}

/** One or more CSI sequences with numeric parameters (cursor movement, erase), nothing else. */
// eslint-disable-next-line no-control-regex -- ESC is what a CSI sequence starts with
const CSI_ONLY = /^(?:\x1b\[[0-9;]*[A-Za-z])+$/;
const guarded = new WeakSet<CliIo>();

/**
 * The io commands write through: out and err make every control character but "\n" visible
 * (see visible.ts), so no command can print text from a server, a handler or a file raw, however
 * it builds its lines; terminalControl passes the CLI's own cursor sequences and refuses anything
 * else. Guarding a guarded io returns it unchanged.
 */
export function guardIo(io: CliIo): CliIo {
  if (guarded.has(io)) return io;
  const safe: CliIo = {
    ...io,
    out: (text) => io.out(visible(text)),
    err: (text) => io.err(visible(text)),
    terminalControl: (sequence) => {
      if (!CSI_ONLY.test(sequence)) throw new Error(`terminalControl takes CSI sequences only, not ${JSON.stringify(visible(sequence))}`);
      if (io.terminalControl) io.terminalControl(sequence);
      else io.out(sequence);
    },
  };
  guarded.add(safe);
  return safe;
}

/** A wrong invocation (unknown flag, missing argument): exit code 2 with the usage text. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
