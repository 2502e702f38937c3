/** `--name value` from argv, or undefined. */
export function flagValue(args: readonly string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
}

export function hasFlag(args: readonly string[], name: string): boolean {
  return args.includes(name);
}
