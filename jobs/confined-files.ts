import { constants as fsConstants, promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { TaskFailure } from 'coremachine';

/**
 * Reading files for an example job that may be left deployed: every name a caller gives is
 * relative to one root folder, and nothing outside that folder can be read — not by `..`, not by
 * an absolute path, not through a symlink, not from a FIFO or a device. The syntax is refused at
 * submission (a 400, nothing stored); where a name really leads is only known on the host, so
 * that is checked again when the task runs, on the real (symlink-free) path.
 */

/** A path below the root, checked before anything is stored. `.` is the root itself. */
export const RelativeName = z
  .string()
  .min(1)
  .max(1024)
  .refine((name) => !name.includes('\0'), 'must not contain NUL')
  .refine((name) => !path.posix.isAbsolute(name) && !path.win32.isAbsolute(name), 'must be a path relative to the root, not an absolute path')
  .refine((name) => !name.split(/[\\/]/).includes('..'), 'must not contain ".." segments');

export interface ConfinedRoot {
  /** What the caller configured (for messages). */
  readonly configured: string;
  /** The root with every symlink resolved: what paths are compared against. */
  readonly real: string;
}

function refuse(message: string, cause?: unknown): TaskFailure {
  // The same name fails the same way on every attempt: retrying cannot help.
  return new TaskFailure(message, { nonRetryable: true, ...(cause === undefined ? {} : { cause }) });
}

export async function openRoot(configured: string, label: string): Promise<ConfinedRoot> {
  try {
    return { configured, real: await fs.realpath(configured) };
  } catch (error) {
    // The folder is the host's business: the message says which setting, the cause which error.
    throw refuse(`${label}: its root folder cannot be read`, error);
  }
}

/**
 * The real path of `name` below the root, or a non-retryable failure that does not say where a
 * symlink pointed (that would leak the host's layout to whoever submitted the job).
 */
export async function resolveInside(root: ConfinedRoot, name: string, label: string): Promise<string> {
  const syntax = RelativeName.safeParse(name);
  if (!syntax.success) throw refuse(`${label}: "${name}" ${syntax.error.issues[0]?.message ?? 'is not a relative name'}`);
  let real: string;
  try {
    real = await fs.realpath(path.resolve(root.real, name));
  } catch (error) {
    throw refuse(`${label}: "${name}" does not exist below the root`, error);
  }
  if (real !== root.real && !real.startsWith(root.real + path.sep)) {
    throw refuse(`${label}: "${name}" resolves outside the root folder; only files below it can be read`);
  }
  return real;
}

/** Regular files directly in a folder below the root, as names relative to the root. Symlinks are skipped. */
export async function listRegularFiles(root: ConfinedRoot, directory: string, extension: string, limit: number, label: string): Promise<string[]> {
  const real = await resolveInside(root, directory, label);
  const stat = await fs.stat(real);
  if (!stat.isDirectory()) throw refuse(`${label}: "${directory}" is not a folder`);
  const entries = await fs.readdir(real, { withFileTypes: true });
  // Dirent types come from lstat: a symlink is not `isFile()`, so no entry can lead elsewhere.
  const files = entries
    .filter((entry) => entry.isFile() && entry.name.endsWith(extension))
    .map((entry) => path.relative(root.real, path.join(real, entry.name)))
    .sort();
  if (files.length > limit) throw refuse(`${label}: "${directory}" holds ${files.length} matching files; at most ${limit} are counted`);
  return files;
}

/**
 * Reads one regular file below the root. It is opened by its real path without following a
 * final symlink and non-blocking (a FIFO would otherwise hang the worker), then checked on the
 * open descriptor, so a file swapped after the check is not what gets read.
 */
export async function readRegularFile(root: ConfinedRoot, name: string, maxBytes: number, label: string): Promise<string> {
  const real = await resolveInside(root, name, label);
  const flags = fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0) | (fsConstants.O_NONBLOCK ?? 0);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(real, flags);
  } catch (error) {
    throw refuse(`${label}: "${name}" cannot be opened`, error);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw refuse(`${label}: "${name}" is not a regular file`);
    if (stat.size > maxBytes) throw refuse(`${label}: "${name}" is ${stat.size} bytes; at most ${maxBytes} are read`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}
