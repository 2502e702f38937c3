import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * What `azd provision` would deploy, read from infra/main.bicep and infra/main.parameters.json
 * without the Bicep CLI: the parameters with their defaults and bounds, the database profiles, the
 * always-ready entries, and how azd fills each parameter from the environment. azd substitutes
 * `${NAME=default}` from the azd environment's .env first, then the process environment
 * (Environment.Getenv, https://github.com/Azure/azure-dev/blob/main/cli/azd/pkg/environment/environment.go),
 * and turns "123" into 123 for an int parameter (https://github.com/Azure/azure-dev/pull/1339);
 * its hooks see the same variables, so the preflight reads what the deployment will get.
 */

export type BicepValue = string | number | boolean;

export interface BicepParam {
  name: string;
  type: string;
  defaultValue?: BicepValue;
  minValue?: number;
  maxValue?: number;
  allowed?: BicepValue[];
}

/** How main.parameters.json fills a parameter: from an environment variable (with its default), or a literal. */
export type ParameterBinding = { variable: string; fallback: string | undefined } | { literal: unknown };

export interface InfraParameters {
  params: Record<string, BicepParam>;
  /** `var databaseProfiles = { Name: { key: value … } … }`. */
  profiles: Record<string, Record<string, BicepValue>>;
  /** `var alwaysReadyCandidates`: each Flex scale group name with the parameter that sets its count. */
  alwaysReady: Array<{ group: string; param: string }>;
  bindings: Record<string, ParameterBinding>;
}

/** A value, where it came from, and the setting an operator changes to change it. */
export interface Resolved {
  value: BicepValue | undefined;
  from: string;
  setting: string;
}

/** Bicep source without `//` and block comments; quoted strings (URLs included) are kept. */
export function stripBicepComments(source: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < source.length; i++) {
    const char = source[i] ?? '';
    if (inString) {
      out += char;
      if (char === '\\') out += source[++i] ?? '';
      else if (char === "'") inString = false;
    } else if (char === "'") {
      inString = true;
      out += char;
    } else if (source.startsWith('//', i)) {
      while (i < source.length && source[i] !== '\n') i++;
      out += '\n';
    } else if (source.startsWith('/*', i)) {
      const end = source.indexOf('*/', i + 2);
      i = end < 0 ? source.length : end + 1;
    } else {
      out += char;
    }
  }
  return out;
}

function literal(raw: string): BicepValue | undefined {
  const text = raw.trim();
  if (/^'.*'$/.test(text)) return text.slice(1, -1).replace(/\\'/g, "'");
  if (text === 'true' || text === 'false') return text === 'true';
  if (/^-?\d+$/.test(text)) return Number(text);
  return undefined;
}

function parseParams(lines: readonly string[]): Record<string, BicepParam> {
  const params: Record<string, BicepParam> = {};
  let decorators: string[] = [];
  for (const line of lines.map((text) => text.trim())) {
    if (line.startsWith('@')) decorators.push(line);
    const match = /^param (\w+) (\w+\??)(?: = (.+))?$/.exec(line);
    if (match?.[1] && match[2]) {
      const param: BicepParam = { name: match[1], type: match[2] };
      const fallback = match[3] === undefined ? undefined : literal(match[3]);
      if (fallback !== undefined) param.defaultValue = fallback;
      for (const decorator of decorators) {
        const min = /^@minValue\((-?\d+)\)$/.exec(decorator)?.[1];
        const max = /^@maxValue\((-?\d+)\)$/.exec(decorator)?.[1];
        const allowed = /^@allowed\(\[(.*)\]\)$/.exec(decorator)?.[1];
        if (min !== undefined) param.minValue = Number(min);
        if (max !== undefined) param.maxValue = Number(max);
        if (allowed !== undefined)
          param.allowed = allowed
            .split(',')
            .map((item) => literal(item))
            .filter((item): item is BicepValue => item !== undefined);
      }
      params[param.name] = param;
    }
    if (!line.startsWith('@')) decorators = [];
  }
  return params;
}

/** The body of a top-level `var <name> = {` or `[` block, up to its closing line at column 0. */
function varBody(source: string, name: string): string {
  const body = new RegExp(`^var ${name} = [[{]\\n([\\s\\S]*?)^[\\]}]`, 'm').exec(source)?.[1];
  if (body === undefined) throw new Error(`var ${name} not found in main.bicep`);
  return body;
}

function parseProfiles(source: string): Record<string, Record<string, BicepValue>> {
  const profiles: Record<string, Record<string, BicepValue>> = {};
  for (const [, name, inner] of varBody(source, 'databaseProfiles').matchAll(/^\s*(\w+):\s*\{\n([\s\S]*?)^\s*\}/gm)) {
    if (!name || inner === undefined) continue;
    const fields: Record<string, BicepValue> = {};
    for (const [, key, raw] of inner.matchAll(/^\s*(\w+):\s*(.+?)\s*$/gm)) {
      const value = raw === undefined ? undefined : literal(raw);
      if (!key || value === undefined) throw new Error(`databaseProfiles.${name}.${key ?? '?'} is not a literal: ${raw ?? ''}`);
      fields[key] = value;
    }
    profiles[name] = fields;
  }
  return profiles;
}

function parseBindings(json: string): Record<string, ParameterBinding> {
  const file = JSON.parse(json) as { parameters?: Record<string, { value?: unknown }> };
  const bindings: Record<string, ParameterBinding> = {};
  for (const [name, { value }] of Object.entries(file.parameters ?? {})) {
    const match = typeof value === 'string' ? /^\$\{(\w+)(?:=([^}]*))?\}$/.exec(value) : null;
    bindings[name] = match?.[1] ? { variable: match[1], fallback: match[2] } : { literal: value };
  }
  return bindings;
}

export function parseInfra(bicepSource: string, parametersJson: string): InfraParameters {
  const source = stripBicepComments(bicepSource);
  const alwaysReady = [...varBody(source, 'alwaysReadyCandidates').matchAll(/\{\s*name:\s*'([^']+)',?\s*instanceCount:\s*(\w+)\s*\}/g)].map(
    ([, group = '', param = '']) => ({ group, param }),
  );
  return { params: parseParams(source.split('\n')), profiles: parseProfiles(source), alwaysReady, bindings: parseBindings(parametersJson) };
}

export function readInfra(infraDir: string): InfraParameters {
  const read = (file: string) => readFileSync(path.join(infraDir, file), 'utf8');
  return parseInfra(read('main.bicep'), read('main.parameters.json'));
}

/** A parameter's value as azd would pass it: the environment variable it is bound to, its default there, or the Bicep default. */
export function resolveParameter(infra: InfraParameters, name: string, env: Readonly<Record<string, string | undefined>>): Resolved {
  const param = infra.params[name];
  if (!param) throw new Error(`main.bicep has no parameter ${name}`);
  const binding = infra.bindings[name];
  if (binding && 'variable' in binding) {
    const given = env[binding.variable];
    if (given !== undefined) return { value: given, from: `${binding.variable} (environment)`, setting: binding.variable };
    if (binding.fallback !== undefined) return { value: binding.fallback, from: "main.parameters.json's default", setting: binding.variable };
  } else if (binding) {
    const value = binding.literal;
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return { value, from: 'main.parameters.json', setting: name };
  }
  return { value: param.defaultValue, from: "main.bicep's default", setting: name };
}
