import type { ErrorShape } from '../../models';

/** Aligned columns, two spaces apart; the last column is not padded so long errors do not wrap early. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
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

/** One line for a table cell: type and message, newlines folded. */
export function errorCell(error: ErrorShape | null): string {
  return error ? `${error.type}: ${error.message}`.replace(/\s*\n\s*/g, ' ') : '';
}

/** A task id is the job id plus -s{stage}-t{index}; within one job only the suffix says anything. */
export function shortTaskId(jobId: string, taskId: string | null): string {
  if (!taskId) return '';
  return taskId.startsWith(`${jobId}-`) ? taskId.slice(jobId.length + 1) : taskId;
}

/** How an API error reads on stderr: type, HTTP status, message, then zod issues one per line. */
export function describeError(error: ErrorShape, status: number): string {
  const lines = [`error: ${error.type}${status ? ` (HTTP ${status})` : ''}: ${error.message}`];
  for (const issue of error.issues ?? []) {
    if (typeof issue === 'object' && issue !== null && 'message' in issue) {
      const { path, message } = issue as { path?: unknown; message: unknown };
      const where = Array.isArray(path) && path.length > 0 ? path.map(String).join('.') : '(root)';
      lines.push(`  ${where}: ${String(message)}`);
    }
  }
  if (error.cause) lines.push(`  caused by ${error.cause.type}: ${error.cause.message}`);
  return lines.join('\n');
}
