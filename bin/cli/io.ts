/**
 * Where the CLI writes and what it reads from its environment. Commands never touch
 * process.stdout or process.env directly, so tests run them in-process and capture the output.
 */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** Redraw progress in place only on a terminal; pipes and logs get appended lines. */
  isTTY: boolean;
  /** Terminal width, to know how many rows a wrapped line takes when redrawing. */
  columns?: number | undefined;
  env: Readonly<Record<string, string | undefined>>;
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
    isTTY: process.stdout.isTTY === true,
    columns: process.stdout.columns,
    env: process.env,
  };
}

/** A wrong invocation (unknown flag, missing argument): exit code 2 with the usage text. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
