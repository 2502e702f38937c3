/**
 * One Node.js major runs in Azure (functionAppConfig.runtime in the Bicep); package.json's engines
 * must admit it, and CI must run the jest suite on it as well as on the machine's own Node.
 * Azure Functions supported Node 20 until 2026-04-30, so the deployed major is 22 or later.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(__dirname, '..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

function deployedNodeMajor(): number {
  const bicep = read('infra/modules/functionapp.bicep');
  const version = /runtime:\s*\{\s*name:\s*'node'\s+version:\s*'(\d+)(?:\.\d+)*'\s*\}/.exec(bicep)?.[1];
  if (!version) throw new Error("infra/modules/functionapp.bicep has no functionAppConfig.runtime { name: 'node', version: '…' }");
  return Number(version);
}

/** The lowest major `engines.node` admits; only the `>=N` form is used, so only it is understood. */
function enginesMinimumMajor(): number {
  const engines = (JSON.parse(read('package.json')) as { engines?: { node?: string } }).engines?.node ?? '';
  const minimum = /^>=\s*(\d+)(?:\.0)*$/.exec(engines.trim())?.[1];
  if (!minimum) throw new Error(`package.json engines.node is "${engines}": write it as ">=N"`);
  return Number(minimum);
}

test('the Functions app runs on a supported Node major, which package.json engines admits', () => {
  const deployed = deployedNodeMajor();
  expect(deployed).toBeGreaterThanOrEqual(22);
  expect(deployed).toBeGreaterThanOrEqual(enginesMinimumMajor());
});

test("engines admits the machine's own Node, on which CI runs the README's npm test first", () => {
  expect(Number(process.versions.node.split('.')[0])).toBeGreaterThanOrEqual(enginesMinimumMajor());
  const ci = read('.ci/run');
  expect(ci.indexOf('\nnpm test\n')).toBeGreaterThan(0);
  expect(ci.indexOf('\nnpm test\n')).toBeLessThan(ci.indexOf('node-linux-'));
});

test('.ci/run installs the deployed Node major, pinned, for its second jest run', () => {
  const ci = read('.ci/run');
  const pinned = /node-linux-\$\{?\w+\}?@(\d+)\.(\d+)\.(\d+)/.exec(ci);
  expect(pinned).not.toBeNull();
  expect(Number(pinned?.[1])).toBe(deployedNodeMajor());
  expect(Number(pinned?.[1])).toBeGreaterThanOrEqual(enginesMinimumMajor());
  expect(ci).toMatch(/"\$node_bin"\s+node_modules\/jest\/bin\/jest\.js/);
});
