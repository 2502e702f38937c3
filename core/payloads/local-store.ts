import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { PayloadStore, StoredPayload } from './payload-store';

/**
 * The payload store of `coremachine dev` on the embedded PostgreSQL without Azurite: one file per
 * blob under a folder (COREMACHINE_DATA_DIR/payloads), with the same names, answers and
 * last-modified times the Azure store gives, so the engine cannot tell them apart.
 */
export class LocalPayloadStore implements PayloadStore {
  readonly kind = 'local';

  constructor(private readonly root: string) {}

  async put(key: string, body: Buffer): Promise<void> {
    const file = this.file(key);
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    // Written aside and renamed: a reader never sees half a blob, a crash leaves no partial one.
    const temporary = `${file}.${randomUUID()}.tmp`;
    await fs.promises.writeFile(temporary, body);
    await fs.promises.rename(temporary, file);
  }

  async get(key: string): Promise<Buffer | undefined> {
    try {
      return await fs.promises.readFile(this.file(key));
    } catch (error) {
      if (notFound(error)) return undefined;
      throw error;
    }
  }

  async open(key: string): Promise<Readable | undefined> {
    const file = this.file(key);
    try {
      const handle = await fs.promises.open(file, 'r');
      return handle.createReadStream();
    } catch (error) {
      if (notFound(error)) return undefined;
      throw error;
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) await fs.promises.rm(this.file(key), { force: true });
  }

  /** Name order, as Azure lists; the continuation is the last name returned. */
  async list(page: { continuation?: string | undefined; maxResults: number }): Promise<{ items: StoredPayload[]; continuation?: string }> {
    const names = (await this.walk('')).sort();
    const after = page.continuation;
    const from = after === undefined ? 0 : names.findIndex((name) => name > after);
    const chosen = from < 0 ? [] : names.slice(from, from + page.maxResults);
    const items = await Promise.all(chosen.map(async (key) => ({ key, lastModified: (await fs.promises.stat(this.file(key))).mtime }) satisfies StoredPayload));
    const last = chosen[chosen.length - 1];
    return from >= 0 && from + page.maxResults < names.length && last !== undefined ? { items, continuation: last } : { items };
  }

  private async walk(relative: string): Promise<string[]> {
    let entries: fs.Dirent[];
    try {
      entries = await fs.promises.readdir(path.join(this.root, relative), { withFileTypes: true });
    } catch (error) {
      if (notFound(error)) return [];
      throw error;
    }
    const names: string[] = [];
    for (const entry of entries) {
      const name = relative === '' ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) names.push(...(await this.walk(name)));
      else if (!entry.name.endsWith('.tmp')) names.push(name);
    }
    return names;
  }

  private file(key: string): string {
    if (!/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(key) || key.split('/').some((part) => part === '.' || part === '..')) {
      throw new Error(`"${key}" is not a payload name`);
    }
    return path.join(this.root, ...key.split('/'));
  }
}

function notFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'ENOENT';
}
