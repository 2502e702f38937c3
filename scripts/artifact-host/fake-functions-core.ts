/**
 * A preload (`node -r fake-functions-core.js`) standing in for the Azure Functions Node worker.
 * The worker makes `require('@azure/functions-core')` answer with its core API by wrapping
 * Module.prototype.require in a Proxy (setupCoreModule.ts in azure-functions-nodejs-worker); this
 * does the same, and records what the app registers instead of reporting it to a host. Like the
 * worker, it refuses a function id registered twice and any registration after startup.
 *
 * scripts/artifact-check.ts bundles it with esbuild into a folder outside the repository.
 */
import Module from 'node:module';
import { FAKE_HOST_KEY, type FakeHost, type HostRecord, type RecordedFunction } from './host-protocol';

class Disposable {
  constructor(private readonly callback: () => void = () => undefined) {}
  dispose(): void {
    this.callback();
  }
}

const record: HostRecord = { functions: [], hooks: [], logs: [], errors: [] };
let locked = false;

function refuse(message: string): never {
  record.errors.push(message);
  throw new Error(message);
}

const coreApi = {
  version: '3.0.0-fake',
  hostVersion: '4.0.0-fake',
  Disposable,
  registerFunction(metadata: RecordedFunction, _callback: unknown): Disposable {
    if (locked) refuse(`function "${metadata.name}" registered after startup: a function can only be registered during app startup`);
    const id = metadata.functionId ?? metadata.name;
    if (record.functions.some((fn) => (fn.functionId ?? fn.name) === id)) refuse(`a function with id "${id}" has already been registered`);
    // A copy through JSON: what the worker sends the host is JSON too (rawBindings).
    record.functions.push(JSON.parse(JSON.stringify(metadata)) as RecordedFunction);
    return new Disposable();
  },
  registerHook(hookName: string, _callback: unknown): Disposable {
    record.hooks.push(hookName);
    return new Disposable();
  },
  setProgrammingModel(model: { name: string; version: string }): void {
    record.programmingModel = { name: model.name, version: model.version };
  },
  getProgrammingModel(): unknown {
    return record.programmingModel;
  },
  log(level: string, category: string, message: string): void {
    record.logs.push({ level, category, message });
  },
};

// eslint-disable-next-line @typescript-eslint/unbound-method -- the Proxy calls it with its receiver (Reflect.apply)
Module.prototype.require = new Proxy(Module.prototype.require, {
  apply(target, thisArg, args: [string]): unknown {
    return args[0] === '@azure/functions-core' ? coreApi : Reflect.apply(target, thisArg, args);
  },
});

const host: FakeHost = {
  record,
  lock: () => {
    locked = true;
  },
};
(globalThis as Record<symbol, unknown>)[FAKE_HOST_KEY] = host;
