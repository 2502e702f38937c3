/**
 * A request the dev server turns away before any route sees it (bad path, foreign Host,
 * cross-site origin, wrong content type, body too large, missing or wrong key). It becomes the
 * API's usual `{error:{type, message}}` with its 4xx status.
 */
export class HttpRefusal extends Error {
  override readonly name = 'HttpRefusal';
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}
