/**
 * Matches a path against a Functions route template (`jobs/{jobId}/events`,
 * `{action:regex(^(cancel|pause)$)}`), the way the host does for the routes CoreMachine uses.
 */
export function matchRoute(template: string, path: string): Record<string, string> | undefined {
  const want = template.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return undefined;
  const params: Record<string, string> = {};
  for (const [index, part] of want.entries()) {
    const segment = decodeURIComponent(got[index] ?? '');
    const param = /^\{([A-Za-z_][A-Za-z0-9_]*)(?::regex\((.*)\))?\}$/.exec(part);
    if (!param) {
      if (part.toLowerCase() !== segment.toLowerCase()) return undefined;
      continue;
    }
    const [, name, pattern] = param;
    if (!name || segment === '') return undefined;
    if (pattern && !new RegExp(pattern).test(segment)) return undefined;
    params[name] = segment;
  }
  return params;
}

/** Literal segments beat parameters, as in ASP.NET routing: `jobs/{id}/events` before `jobs/{id}/{action}`. */
export function routeSpecificity(template: string): number {
  return template.split('/').filter((part) => !part.startsWith('{')).length;
}
