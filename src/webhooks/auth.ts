import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type Request, type RequestHandler } from 'express';
import { HttpError } from '../http/errors.ts';

/** Constant-time comparison of a presented secret with the configured one (hashes equalise lengths). */
export function secretMatches(presented: unknown, expected: string): boolean {
  if (typeof presented !== 'string' || presented.length === 0) return false;
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * The first step of a webhook router: the secret is checked before a byte of the body is read
 * (an unauthenticated sender gets a 401 without costing a JSON parse of up to the body limit),
 * then the JSON body is parsed.
 */
export function authenticatedJson(options: { presented: (req: Request) => unknown; secret: string; refusal: string; bodyLimitBytes: number }): RequestHandler[] {
  const check: RequestHandler = (req, _res, next) => {
    if (!secretMatches(options.presented(req), options.secret)) {
      next(new HttpError(401, 'unauthorized', options.refusal));
      return;
    }
    next();
  };
  return [check, express.json({ limit: options.bodyLimitBytes, type: ['application/json', 'application/*+json'] })];
}
