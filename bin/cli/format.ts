import type { ErrorShape } from '../../models';
import { oneLine } from './visible';

/**
 * Aligned columns, two spaces apart; the last column is not padded so long errors do not wrap early.
 * A cell is one line as printed (oneLine): a value with a newline cannot fake a row, and the widths
 * count the escapes a control character is printed as.
 */
export function table(header: readonly string[], data: ReadonlyArray<readonly string[]>): string {
  const rows = data.map((row) => row.map(oneLine));
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** UTC to the second: the same in every operator's terminal and easy to grep. */
export function formatTime(iso: string | null): string {
  return iso ? `${iso.slice(0, 10)} ${iso.slice(11, 19)}Z` : '—';
}

export function formatDuration(startIso: string | null, endIso: string | null, now = Date.now()): string {
  if (!startIso) return '—';
  const ms = (endIso ? Date.parse(endIso) : now) - Date.parse(startIso);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

/** One line for a table cell: type and message, newlines folded, control characters visible. */
export function errorCell(error: ErrorShape | null): string {
  return error ? oneLine(`${error.type}: ${error.message}`) : '';
}

/** A task id is the job id plus -s{stage}-t{index}; within one job only the suffix says anything. */
export function shortTaskId(jobId: string, taskId: string | null): string {
  if (!taskId) return '';
  return taskId.startsWith(`${jobId}-`) ? taskId.slice(jobId.length + 1) : taskId;
}

/**
 * How an API error reads on stderr: type, HTTP status, message, then zod issues one per line.
 * Each part is folded to one line: the server's text (which may quote a submitted value) cannot
 * add lines of its own.
 */
export function describeError(error: ErrorShape, status: number): string {
  const lines = [`error: ${oneLine(String(error.type))}${status ? ` (HTTP ${status})` : ''}: ${oneLine(String(error.message))}`];
  for (const issue of error.issues ?? []) {
    if (typeof issue === 'object' && issue !== null && 'message' in issue) {
      const { path, message } = issue as { path?: unknown; message: unknown };
      const where = Array.isArray(path) && path.length > 0 ? path.map(String).join('.') : '(root)';
      lines.push(`  ${oneLine(where)}: ${oneLine(String(message))}`);
    }
  }
  if (error.cause) lines.push(`  caused by ${oneLine(String(error.cause.type))}: ${oneLine(String(error.cause.message))}`);
  return lines.join('\n');
}
