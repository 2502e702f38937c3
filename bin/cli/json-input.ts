import { readFileSync } from 'node:fs';
import { UsageError } from './io';

/**
 * A JSON document given inline (`--params`, `--data`) or from a file (`--file`): exactly one of
 * the two, and valid JSON, else a usage error (exit 2) before anything is sent.
 */
export function jsonFromFlags(inline: { flag: string; value: string | undefined }, file: string | undefined): unknown {
  if ((inline.value === undefined) === (file === undefined)) throw new UsageError(`give the JSON with exactly one of --${inline.flag} JSON or --file F`);
  let text: string;
  try {
    text = inline.value ?? readFileSync(file ?? '', 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read --file ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new UsageError(
      `${inline.value === undefined ? `--file ${file}` : `--${inline.flag}`} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}
