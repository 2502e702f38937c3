#!/usr/bin/env node
import { runCli } from './cli/run-cli';

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    process.stderr.write(`coremachine: ${message}\n`);
    process.exitCode = 1;
  },
);
