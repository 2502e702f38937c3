import { DefaultAzureCredential } from '@azure/identity';
import type { CoreMachineConfig } from '../config';
import type { PoolOptions } from './pool';
import { TransientDatabaseError } from './transient-errors';

/** The audience Azure Database for PostgreSQL accepts Microsoft Entra access tokens for. */
export const POSTGRES_ENTRA_SCOPE = 'https://ossrdbms-aad.database.windows.net/.default';

/**
 * A cached token closer than this to its expiry is not handed to a new connection. The server
 * checks the token only when a connection logs in, so a connection outlives its token safely;
 * the margin covers clock skew and a slow login.
 */
export const REFRESH_BEFORE_EXPIRY_MS = 5 * 60_000;

export interface AccessTokenLike {
  token: string;
  expiresOnTimestamp: number;
}

/** What the provider needs of a credential: `@azure/identity`'s TokenCredential fits, and so does a test stand-in. */
export interface TokenSource {
  getToken(scopes: string | string[]): Promise<AccessTokenLike | null>;
}

/** The credential could not give a token (IMDS busy, network, throttling): try again later, with the cause. */
export class DatabaseTokenError extends TransientDatabaseError {
  constructor(cause: unknown) {
    super(cause);
    this.name = 'DatabaseTokenError';
    this.message = `could not get a Microsoft Entra access token for PostgreSQL: ${cause instanceof Error ? cause.message : String(cause)}`;
  }
}

/**
 * Gives each new pooled connection a valid access token as its password. The token is cached and
 * fetched again once it is within `refreshBeforeMs` of expiry; callers that arrive while a fetch is
 * running share it, so a pool opening ten connections at once asks the identity endpoint once.
 */
export class EntraTokenProvider {
  private cached: AccessTokenLike | undefined;
  private inFlight: Promise<string> | undefined;
  private readonly scope: string;
  private readonly refreshBeforeMs: number;
  private readonly now: () => number;

  constructor(
    private readonly credential: TokenSource,
    options: { scope?: string; refreshBeforeMs?: number; now?: () => number } = {},
  ) {
    this.scope = options.scope ?? POSTGRES_ENTRA_SCOPE;
    this.refreshBeforeMs = options.refreshBeforeMs ?? REFRESH_BEFORE_EXPIRY_MS;
    this.now = options.now ?? Date.now;
  }

  /** Bound, so it can be passed as pg's `password` function as is. */
  readonly password = (): Promise<string> => {
    if (this.cached && this.cached.expiresOnTimestamp - this.refreshBeforeMs > this.now()) return Promise.resolve(this.cached.token);
    this.inFlight ??= this.fetch().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  };

  private async fetch(): Promise<string> {
    let token: AccessTokenLike | null;
    try {
      token = await this.credential.getToken(this.scope);
    } catch (error) {
      throw new DatabaseTokenError(error);
    }
    if (!token?.token) throw new DatabaseTokenError(new Error(`the credential returned no token for ${this.scope}`));
    this.cached = token;
    return token.token;
  }
}

/**
 * Pool options for the configured authentication: nothing for password auth (the password is in
 * DATABASE_URL), a token provider for `DATABASE_AUTH=entra`. DefaultAzureCredential finds the
 * Function app's managed identity in Azure (AZURE_CLIENT_ID picks a user-assigned one) and the
 * developer's `az`/`azd` login on a workstation.
 */
export function databasePoolOptions(config: Pick<CoreMachineConfig, 'databaseAuth'>, credential?: TokenSource): Pick<PoolOptions, 'password'> {
  if (config.databaseAuth !== 'entra') return {};
  return { password: new EntraTokenProvider(credential ?? new DefaultAzureCredential()).password };
}
