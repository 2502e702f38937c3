import type { Readable } from 'node:stream';
import type { ContainerClient } from '@azure/storage-blob';
import type { PayloadStore, StoredPayload } from './payload-store';

export interface AzureBlobSettings {
  /** `https://<account>.blob.core.windows.net`: the app's managed identity (DefaultAzureCredential) signs in. */
  accountUrl?: string | undefined;
  /** A connection string (Azurite: `UseDevelopmentStorage=true`, or one with the account key). */
  connectionString?: string | undefined;
  container: string;
}

/* eslint-disable @typescript-eslint/no-require-imports -- deferred on purpose: a host without a store never loads the SDK */
const storageBlob = () => require('@azure/storage-blob') as typeof import('@azure/storage-blob');
const identity = () => require('@azure/identity') as typeof import('@azure/identity');
/* eslint-enable @typescript-eslint/no-require-imports */

/** Deletes in flight at once: one per request, the way the SDK's batch API is not available on Azurite. */
const DELETE_CONCURRENCY = 16;

/**
 * The payload store in Azure Blob Storage (and Azurite): one block blob per value in a container
 * of its own. The SDK is loaded on first use, so a host without a store never parses it.
 */
export class AzureBlobPayloadStore implements PayloadStore {
  readonly kind = 'azure-blob';
  private client: ContainerClient | undefined;
  private created: Promise<void> | undefined;

  constructor(private readonly settings: AzureBlobSettings) {
    if (!settings.accountUrl && !settings.connectionString) throw new Error('an Azure Blob payload store needs an account URL or a connection string');
  }

  async put(key: string, body: Buffer): Promise<void> {
    const container = await this.container();
    // The container is created once per process if missing (Azurite, a fresh account); Bicep creates it in Azure.
    this.created ??= container.createIfNotExists().then(
      () => undefined,
      (error: unknown) => {
        this.created = undefined;
        throw error;
      },
    );
    await this.created;
    await container.getBlockBlobClient(key).uploadData(body, { blobHTTPHeaders: { blobContentType: 'application/json' } });
  }

  async get(key: string): Promise<Buffer | undefined> {
    const container = await this.container();
    try {
      return await container.getBlockBlobClient(key).downloadToBuffer();
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async open(key: string): Promise<Readable | undefined> {
    const container = await this.container();
    try {
      const response = await container.getBlockBlobClient(key).download();
      return response.readableStreamBody as Readable | undefined;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    const container = await this.container();
    const pending = [...keys];
    const worker = async () => {
      for (let key = pending.pop(); key !== undefined; key = pending.pop()) await container.getBlockBlobClient(key).deleteIfExists();
    };
    await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, pending.length) }, worker));
  }

  async list(page: { continuation?: string | undefined; maxResults: number }): Promise<{ items: StoredPayload[]; continuation?: string }> {
    const container = await this.container();
    try {
      for await (const response of container
        .listBlobsFlat()
        .byPage({ maxPageSize: page.maxResults, ...(page.continuation ? { continuationToken: page.continuation } : {}) })) {
        const items = response.segment.blobItems.map((item) => ({ key: item.name, lastModified: item.properties.lastModified }));
        return response.continuationToken ? { items, continuation: response.continuationToken } : { items };
      }
    } catch (error) {
      if (isNotFound(error)) return { items: [] };
      throw error;
    }
    return { items: [] };
  }

  private container(): Promise<ContainerClient> {
    if (!this.client) {
      const { BlobServiceClient } = storageBlob();
      const { accountUrl, connectionString, container } = this.settings;
      this.client = connectionString
        ? BlobServiceClient.fromConnectionString(connectionString).getContainerClient(container)
        : new BlobServiceClient(accountUrl ?? '', new (identity().DefaultAzureCredential)()).getContainerClient(container);
    }
    return Promise.resolve(this.client);
  }
}

function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { statusCode?: unknown }).statusCode === 404;
}
