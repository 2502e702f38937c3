import { TASK_LOG_LEVELS, TASK_LOG_LIMITS, type RemoteTaskLogLine, type TaskLogLevel } from '../../models';
import { MAX_JSON_DEPTH, storableJson, storableText, unstorableJsonIssues } from '../../models/storable';
import type { TaskLogBatch, TaskLogEntry } from '../state/task-logs-store';
import type { TaskOutcome } from '../state/tasks-store';

/**
 * The lines one attempt logs, held in memory until its outcome is committed with them. Bounded as
 * they arrive: past the attempt's line or byte cap the oldest go, and are counted. Whatever a
 * handler passes becomes a storable line: `log` is called from user code, and must neither throw
 * nor fail the task, so what cannot be kept is left out and the line says what and why.
 */
export class TaskLogBuffer {
  private readonly lines: TaskLogEntry[] = [];
  private bytes = 0;
  private dropped = 0;

  /** Adds a line, dropping the oldest ones over the caps; returns the line as kept. */
  add(level: unknown, message: unknown, fields: unknown, loggedAt: Date = new Date()): TaskLogEntry {
    const line = boundedLogLine(level, message, fields, loggedAt);
    this.lines.push(line);
    this.bytes += line.bytes;
    // One line is far below the byte cap, so the line just added always stays.
    while (this.lines.length > TASK_LOG_LIMITS.linesPerAttempt || this.bytes > TASK_LOG_LIMITS.bytesPerAttempt) {
      const oldest = this.lines.shift();
      if (!oldest) break;
      this.bytes -= oldest.bytes;
      this.dropped++;
    }
    return line;
  }

  /** Lines dropped before they reached this buffer (a remote worker's own count). */
  countDropped(lines: number): void {
    this.dropped += lines;
  }

  /** What to write with the outcome, or undefined when nothing was logged. */
  batch(): TaskLogBatch | undefined {
    return this.lines.length > 0 || this.dropped > 0 ? { lines: [...this.lines], dropped: this.dropped } : undefined;
  }
}

const encoder = new TextEncoder();

/**
 * A line that fits the caps and the database: a known level, a message as storable text of at most
 * TASK_LOG_LIMITS.messageBytes, fields as a JSON object of at most fieldsBytes (or none). What had to
 * be changed is said at the end of the message, in brackets.
 */
export function boundedLogLine(level: unknown, message: unknown, fields: unknown, loggedAt: Date): TaskLogEntry {
  const notes: string[] = [];
  const knownLevel = (TASK_LOG_LEVELS as readonly unknown[]).includes(level) ? (level as TaskLogLevel) : undefined;
  if (!knownLevel) notes.push(`level is not one of ${TASK_LOG_LEVELS.join(', ')}: logged as info`);
  const fieldsJson = fields === undefined || fields === null ? null : boundedFieldsJson(fields, notes);
  const suffix = notes.length > 0 ? ` [${notes.join('; ')}]` : '';
  const text = boundedText(asText(message), TASK_LOG_LIMITS.messageBytes - utf8Bytes(suffix)) + suffix;
  return {
    level: knownLevel ?? 'info',
    message: text,
    fieldsJson,
    loggedAt,
    bytes: utf8Bytes(text) + (fieldsJson === null ? 0 : utf8Bytes(fieldsJson)),
  };
}

/** A message's text: strings as they are, anything else as String() makes it (which may itself throw). */
function asText(message: unknown): string {
  if (typeof message === 'string') return message;
  try {
    return String(message);
  } catch (error) {
    // An object without a working toString (Object.create(null), a throwing one): the line still says something.
    return `[message could not be turned into text: ${error instanceof Error ? error.message.slice(0, 200) : 'it threw'}]`;
  }
}

/** The fields as storable JSON of an object within the cap, or null with the reason in `notes`. */
function boundedFieldsJson(fields: unknown, notes: string[]): string | null {
  let json: string | undefined;
  try {
    json = JSON.stringify(fields);
  } catch (error) {
    // A BigInt, a cycle, a throwing toJSON: the fields are left out, the line is kept.
    notes.push(`fields left out: ${storableText(error instanceof Error ? error.message : 'JSON.stringify threw').slice(0, 200)}`);
    return null;
  }
  if (json === undefined || !json.startsWith('{')) {
    notes.push('fields left out: they are not a JSON object');
    return null;
  }
  const bytes = utf8Bytes(json);
  if (bytes > TASK_LOG_LIMITS.fieldsBytes) {
    notes.push(`fields left out: ${bytes} bytes of JSON, over the ${TASK_LOG_LIMITS.fieldsBytes}-byte limit`);
    return null;
  }
  // JSON.stringify writes NUL and lone surrogates as \u escapes: only then is there anything to make storable.
  if (json.includes('\\u')) json = JSON.stringify(storableJson(JSON.parse(json) as unknown));
  // A document this short cannot nest deeper than half its length: only a longer one is walked.
  if (json.length > 2 * MAX_JSON_DEPTH && unstorableJsonIssues(JSON.parse(json) as unknown, MAX_JSON_DEPTH).length > 0) {
    notes.push(`fields left out: nested deeper than ${MAX_JSON_DEPTH} levels`);
    return null;
  }
  return json;
}

const utf8Bytes = (text: string): number => Buffer.byteLength(text, 'utf8');

/**
 * The text made storable (NUL written as `\\u0000`, a lone surrogate as U+FFFD) and cut to at most
 * `maxBytes` of UTF-8, never inside a character, marked where it was cut. A huge text is sliced
 * first, so a 10 MB message costs no more than a short one past that slice.
 */
function boundedText(text: string, maxBytes: number): string {
  // A slice may end in half a surrogate pair: storableText makes that half U+FFFD (storable, and past the cut anyway).
  const sliced = text.length > maxBytes ? text.slice(0, maxBytes) : text;
  const storable = storableText(sliced);
  if (sliced === text && (storable.length * 3 <= maxBytes || utf8Bytes(storable) <= maxBytes)) return storable;
  const marker = ` … [cut from ${text.length} characters]`;
  // encodeInto writes whole characters only, so the kept prefix never ends in half a surrogate pair.
  const { read } = encoder.encodeInto(storable, new Uint8Array(Math.max(0, maxBytes - utf8Bytes(marker))));
  return storable.slice(0, read) + marker;
}

/**
 * The outcome with the lines a remote worker reported with it (`logs`, `logsDropped`), already
 * validated against RemoteTaskLogLine, bounded as an in-process attempt's are.
 */
export function withReportedLogs(
  outcome: TaskOutcome,
  report: { logs?: readonly RemoteTaskLogLine[] | undefined; logsDropped?: number | undefined },
): TaskOutcome {
  if (!report.logs?.length && !report.logsDropped) return outcome;
  const buffer = new TaskLogBuffer();
  const now = new Date();
  for (const line of report.logs ?? []) buffer.add(line.level, line.message, line.fields, line.at ? new Date(line.at) : now);
  buffer.countDropped(report.logsDropped ?? 0);
  const logs = buffer.batch();
  if (logs) outcome.logs = logs;
  return outcome;
}
