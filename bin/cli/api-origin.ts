import { UsageError } from './io';
import { isLoopbackAddress } from './request-guard';

/** The flag that lets the CLI speak plain http to another machine; its name says what it costs. */
export const INSECURE_HTTP_FLAG = '--insecure-http';

/**
 * Checks the API's base URL before anything is sent: http(s) only, and plain http only to this
 * machine (localhost, 127.0.0.0/8, ::1) unless --insecure-http says otherwise, because the
 * function key and the job data would cross the network readable by anyone on the path.
 *
 * Only the flag allows it, never an environment variable: a variable set once in a profile or a CI
 * job would switch the check off silently for every later command, against every later URL.
 * `source` names where the URL came from (--url, COREMACHINE_URL or the default), so the message
 * points at what to change.
 */
export function checkApiUrl(baseUrl: string, source: string, insecureHttp: boolean): URL {
  if (!URL.canParse(baseUrl)) throw new UsageError(`${source} "${baseUrl}" is not a URL`);
  const url = new URL(baseUrl);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new UsageError(`${source} "${baseUrl}" must be an https:// (or, to this machine, http://) URL, not ${url.protocol}`);
  }
  if (url.protocol === 'http:' && !isLoopbackAddress(url.hostname) && !insecureHttp) {
    const https = new URL(baseUrl);
    https.protocol = 'https:';
    throw new UsageError(
      `${source} "${baseUrl}" is plain http to ${url.hostname}, which is not this machine: the function key and the job data ` +
        `would cross the network unencrypted. Use https (${https.href.replace(/\/$/, '')}), or add ${INSECURE_HTTP_FLAG} if you accept that risk`,
    );
  }
  return url;
}
