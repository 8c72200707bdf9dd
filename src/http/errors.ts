import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from '../logger.ts';

// The one place where failures become HTTP answers: `{ error: { code, message, path? } }`.

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

interface BodyParserError {
  type?: string;
  status?: number;
  expose?: boolean;
  limit?: number;
}

function fromBodyParser(err: BodyParserError & Error): HttpError | undefined {
  switch (err.type) {
    case 'entity.too.large':
      return new HttpError(413, 'payload_too_large', `request body exceeds the limit of ${err.limit ?? '?'} bytes`);
    case 'entity.parse.failed':
      return new HttpError(400, 'malformed_json', `request body is not valid JSON: ${err.message}`);
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpError(415, 'unsupported_encoding', err.message);
    case 'request.aborted':
      return new HttpError(400, 'request_aborted', 'the client aborted the request');
    default:
      // a client error from Express's own middleware (a malformed path, a refused static file):
      // the client's fault, answered as such, never an error log line
      return typeof err.status === 'number' && err.status >= 400 && err.status < 500
        ? new HttpError(err.status, err.status === 404 ? 'not_found' : 'bad_request', err.expose === false ? 'bad request' : err.message)
        : undefined;
  }
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new HttpError(404, 'not_found', `no route for ${req.method} ${req.path}`));
};

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const known = err instanceof HttpError ? err : err instanceof Error ? fromBodyParser(err) : undefined;
    if (known) {
      res.status(known.status).json({ error: { code: known.code, message: known.message, ...known.details } });
      return;
    }
    (req.log ?? logger).error({ err }, 'unhandled error');
    res.status(500).json({ error: { code: 'internal_error', message: 'internal error; see the service log' } });
  };
}
