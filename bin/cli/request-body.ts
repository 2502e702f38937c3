import type http from 'node:http';
import { HttpRefusal } from './http-refusal';

function tooLarge(limit: number, what: string): HttpRefusal {
  return new HttpRefusal(413, 'PayloadTooLargeError', `request body ${what}; the limit is ${limit} bytes (${limit / 1024} KB)`);
}

/** True when the request announces a body (a length above zero, or chunked transfer). */
export function hasBody(req: http.IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

/** Refuses on the declared Content-Length before a single byte is read. */
export function checkDeclaredLength(req: http.IncomingMessage, limit: number): void {
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit, `is ${declared} bytes`);
}

/**
 * Reads the body while counting, and stops at the first chunk past the limit: a chunked upload
 * of any size costs at most `limit` bytes of memory. The request is paused, not destroyed, so the
 * 413 still reaches the client; the caller closes the connection after answering.
 */
export function readBodyWithLimit(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(tooLarge(limit, `is more than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(new HttpRefusal(400, 'BadRequestError', `the request body could not be read: ${error.message}`));
    };
    // The client went away before the body ended: nobody is left to answer, but the promise must settle.
    const onClose = () => {
      cleanup();
      reject(new HttpRefusal(400, 'BadRequestError', 'the client closed the connection before the body ended'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}
