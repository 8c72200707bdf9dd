import type { RequestHandler } from 'express';
import type { z } from 'zod';
import { HttpError } from '../http/errors.ts';

/** Webhooks take JSON only: anything else is a 415 naming what was sent. */
export const requireJson: RequestHandler = (req, _res, next) => {
  if (!req.is(['application/json', 'application/*+json'])) {
    next(new HttpError(415, 'unsupported_media_type', `expected Content-Type application/json, got ${req.get('content-type') ?? 'none'}`));
    return;
  }
  if (req.body === undefined) {
    next(new HttpError(400, 'empty_body', 'the request has no JSON body'));
    return;
  }
  next();
};

/** The path and message of the first problem, for 422 answers. */
export function firstIssue(error: z.ZodError): { path: string; message: string } {
  const issue = error.issues[0];
  if (!issue) return { path: '$', message: 'invalid body' };
  const path = '$' + issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
  return { path, message: `${path}: ${issue.message}` };
}
