import path from 'node:path';
import { z } from 'zod';
import { ConfigurationError } from '../errors';
import { AzureBlobPayloadStore } from './azure-blob-store';
import { LocalPayloadStore } from './local-store';
import type { PayloadStore } from './payload-store';
import { DEFAULT_PAYLOAD_LIMITS, Payloads, type PayloadLimits } from './payloads';

const MIB = 1024 * 1024;
/** Text that may be empty (an unset app setting in Bicep is ''): empty is unset. */
const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === '' ? undefined : value.trim()));

/**
 * The payload store's settings, read by core/config.ts with every other one (docs/configuration.md
 * lists them, docs/payloads.md explains them).
 */
export const PAYLOAD_SETTINGS = {
  // auto: Azure Blob when an account URL or connection string is set, a folder on the embedded PostgreSQL of `coremachine dev`, else none.
  COREMACHINE_PAYLOAD_STORE: z.enum(['auto', 'none', 'local', 'azure-blob']).default('auto'),
  COREMACHINE_PAYLOAD_BLOB_ACCOUNT_URL: optionalText.refine((value) => value === undefined || /^https?:\/\/[^\s/]+\/?$/.test(value), {
    message: 'an account URL such as https://<account>.blob.core.windows.net',
  }),
  COREMACHINE_PAYLOAD_BLOB_CONNECTION_STRING: optionalText,
  // Container names: 3-63 lowercase letters, digits and single hyphens (Azure's rule).
  COREMACHINE_PAYLOAD_CONTAINER: z
    .string()
    .regex(/^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/, 'a container name: 3-63 lowercase letters, digits and single hyphens')
    .default('coremachine-payloads'),
  COREMACHINE_PAYLOAD_INLINE_MAX_BYTES: z.coerce.number().int().min(0).max(MIB).default(DEFAULT_PAYLOAD_LIMITS.inlineMaxBytes),
  COREMACHINE_PAYLOAD_INLINE_CAP_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(64 * MIB)
    .default(DEFAULT_PAYLOAD_LIMITS.inlineCapBytes),
  COREMACHINE_PAYLOAD_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(512 * MIB)
    .default(DEFAULT_PAYLOAD_LIMITS.maxBytes),
  COREMACHINE_PAYLOAD_ORPHAN_GRACE_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .max(30 * 24 * 3600)
    .default(DEFAULT_PAYLOAD_LIMITS.orphanGraceMs / 1000),
};

type Parsed = { [K in keyof typeof PAYLOAD_SETTINGS]: z.output<(typeof PAYLOAD_SETTINGS)[K]> };

export interface PayloadSettings {
  store: 'auto' | 'none' | 'local' | 'azure-blob';
  accountUrl: string | undefined;
  connectionString: string | undefined;
  container: string;
  limits: PayloadLimits;
}

export function payloadSettingsFrom(e: Parsed): PayloadSettings {
  return {
    store: e.COREMACHINE_PAYLOAD_STORE,
    accountUrl: e.COREMACHINE_PAYLOAD_BLOB_ACCOUNT_URL,
    connectionString: e.COREMACHINE_PAYLOAD_BLOB_CONNECTION_STRING,
    container: e.COREMACHINE_PAYLOAD_CONTAINER,
    limits: {
      inlineMaxBytes: e.COREMACHINE_PAYLOAD_INLINE_MAX_BYTES,
      inlineCapBytes: e.COREMACHINE_PAYLOAD_INLINE_CAP_BYTES,
      maxBytes: e.COREMACHINE_PAYLOAD_MAX_BYTES,
      orphanGraceMs: e.COREMACHINE_PAYLOAD_ORPHAN_GRACE_SECONDS * 1000,
    },
  };
}

/**
 * The payload store the settings choose, for a host: `embedded` says the database is the embedded
 * PostgreSQL in `dataDir` (`coremachine dev` without DATABASE_URL), where `auto` keeps blobs in a
 * folder beside it. A Functions app with no store keeps every value inline, up to the cap.
 */
export function createPayloads(settings: PayloadSettings, host: { dataDir: string; embedded: boolean }): Payloads {
  if (settings.limits.maxBytes < settings.limits.inlineMaxBytes) {
    throw new ConfigurationError(
      `COREMACHINE_PAYLOAD_MAX_BYTES (${settings.limits.maxBytes}) is below COREMACHINE_PAYLOAD_INLINE_MAX_BYTES (${settings.limits.inlineMaxBytes})`,
    );
  }
  return new Payloads(chooseStore(settings, host), settings.limits);
}

function chooseStore(settings: PayloadSettings, host: { dataDir: string; embedded: boolean }): PayloadStore | undefined {
  const blob = settings.accountUrl !== undefined || settings.connectionString !== undefined;
  const kind = settings.store === 'auto' ? (blob ? 'azure-blob' : host.embedded ? 'local' : 'none') : settings.store;
  if (kind === 'none') return undefined;
  if (kind === 'local') return new LocalPayloadStore(path.join(host.dataDir, 'payloads'));
  if (!blob) {
    throw new ConfigurationError(
      'COREMACHINE_PAYLOAD_STORE=azure-blob needs COREMACHINE_PAYLOAD_BLOB_ACCOUNT_URL (managed identity) or COREMACHINE_PAYLOAD_BLOB_CONNECTION_STRING (Azurite, keys)',
    );
  }
  return new AzureBlobPayloadStore({ accountUrl: settings.accountUrl, connectionString: settings.connectionString, container: settings.container });
}
