/**
 * Structured JSON logs, one line per event, carrying jobId/taskId/stage where known.
 * Written to stderr so CLI output on stdout stays clean.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

/**
 * JSON.stringify escapes C0 controls but writes DEL (U+007F) and C1 (U+0080–U+009F) as they are,
 * and some terminals act on C1 (U+009B is a one-byte CSI). A logged error message or parameter
 * comes from outside, so those are escaped too: \u009b is still JSON for the same string.
 */
const DEL_AND_C1 = /[\u007f-\u009f]/;
const DEL_AND_C1_ALL = /[\u007f-\u009f]/g;

/** One log record as a JSON line no terminal interprets; JSON.parse gives back every string as it was. */
function jsonLine(record: LogFields): string {
  const line = JSON.stringify(record);
  return DEL_AND_C1.test(line) ? line.replace(DEL_AND_C1_ALL, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`) : line;
}

export function createLogger(level: LogLevel, base: LogFields = {}, write: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Logger {
  const log = (at: LogLevel, message: string, fields?: LogFields): void => {
    if (ORDER[at] < ORDER[level]) return;
    write(jsonLine({ time: new Date().toISOString(), level: at, message, ...base, ...fields }));
  };
  return {
    debug: (message, fields) => log('debug', message, fields),
    info: (message, fields) => log('info', message, fields),
    warn: (message, fields) => log('warn', message, fields),
    error: (message, fields) => log('error', message, fields),
    child: (fields) => createLogger(level, { ...base, ...fields }, write),
  };
}
