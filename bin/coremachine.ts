#!/usr/bin/env node
import { runCli } from './cli/run-cli';
import { visible } from './cli/visible';

/**
 * The exit code is the command's, on every path. Commands stop what they started before they
 * return; should some handle still hold the event loop open (a stuck socket, a library's timer),
 * the process exits anyway instead of hanging after its work is done.
 */
function finish(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2_000).unref();
}

runCli(process.argv.slice(2)).then(finish, (error: unknown) => {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  // An unexpected error may quote a server's or a handler's text: never raw to the terminal.
  process.stderr.write(`coremachine: ${visible(message)}\n`);
  finish(1);
});
