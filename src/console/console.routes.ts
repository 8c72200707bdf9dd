import { join } from 'node:path';
import express, { Router, type Request, type Response } from 'express';
import { projectRoot } from '../paths.ts';
import type { RateLimiter } from '../security/rate-limit.ts';
import { renderLogin, renderShell } from './console.page.ts';
import { SESSION_COOKIE, type ConsoleSessions } from './session.ts';

// The operator console at `/`: a sign-in form (rate limited per client address) that sets an
// HttpOnly, SameSite=Strict session cookie (a random secret whose hash names a stored session;
// never the token; Secure when the request came over TLS, see TRUST_PROXY), the console's shell, and its static ES
// modules and stylesheet. Everything the views show comes from /graphql with the session cookie
// and the CSRF header. No token in URLs, so none in access logs or browser history.

export interface ConsoleOptions {
  sessions: ConsoleSessions;
  sandbox: boolean;
  /** while no API token exists: how to create the first, shown on the sign-in page */
  firstTokenHint?: () => Promise<string | undefined>;
  /** sign-in attempts per client address (LOGIN_ATTEMPTS_PER_15MIN), counted across replicas */
  loginLimiter?: RateLimiter;
}

/** the console's modules and stylesheet, served as they are (no build step) */
export const consoleAssetsDir = () => join(projectRoot(), 'src', 'console', 'public');

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

export function createConsole(options: ConsoleOptions): Router {
  const router = Router();
  const { sessions } = options;

  function page(res: Response, status: number, html: string): void {
    res.setHeader('cache-control', 'no-store');
    res.setHeader('content-security-policy', CSP);
    res.status(status).type('html').send(html);
  }
  const cookie = (req: Request, value: string, maxAge: number) =>
    `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${req.secure ? '; Secure' : ''}`;

  router.use(
    '/console/assets',
    express.static(consoleAssetsDir(), {
      index: false,
      // a missing file or a path out of the folder (an encoded ../) falls through to the plain 404
      fallthrough: true,
      dotfiles: 'ignore',
      setHeaders: (res) => {
        res.setHeader('content-security-policy', CSP);
        res.setHeader('cache-control', 'no-cache');
      },
    }),
  );

  router.get('/', async (req, res) => {
    const session = await sessions.resolve(req.get('cookie'));
    if (!session) {
      page(res, 401, renderLogin(await options.firstTokenHint?.()));
      return;
    }
    page(res, 200, renderShell({ caller: session.caller, csrfToken: session.csrfToken, sandbox: options.sandbox }));
  });

  router.post('/login', express.urlencoded({ extended: false, limit: '4kb' }), async (req, res) => {
    // every attempt counts, right or wrong: guessing is slow and a signed-in client never needs many
    const decision = options.loginLimiter ? await options.loginLimiter.take(`login:${req.ip ?? 'unknown'}`) : undefined;
    if (decision && !decision.allowed) {
      res.setHeader('retry-after', String(decision.retryAfterSeconds));
      page(res, 429, renderLogin(`Too many sign-in attempts from this address; try again in ${Math.ceil(decision.retryAfterSeconds / 60)} minute(s).`));
      return;
    }
    const body = req.body as Record<string, unknown> | undefined;
    const secret = typeof body?.['token'] === 'string' ? body['token'].trim() : '';
    const caller = secret ? await sessions.tokens.authenticate(secret) : null;
    if (!caller) {
      page(res, 401, renderLogin('That is not a valid API token.'));
      return;
    }
    res.setHeader('set-cookie', cookie(req, await sessions.issue(caller), sessions.maxAgeSeconds));
    res.setHeader('cache-control', 'no-store');
    res.redirect(303, '/');
  });

  // signing out is an action too: it needs the session's CSRF token (a hidden form field)
  router.post('/logout', express.urlencoded({ extended: false, limit: '4kb' }), async (req, res) => {
    const session = await sessions.resolve(req.get('cookie'));
    const csrf = (req.body as Record<string, unknown> | undefined)?.['csrf'];
    if (session && !sessions.csrfMatches(session, typeof csrf === 'string' ? csrf : undefined)) {
      res.status(403).type('text').send('sign-out refused: missing CSRF token');
      return;
    }
    // the session ends on the server, not only in this browser: a copied cookie stops working too
    await sessions.end(req.get('cookie'));
    res.setHeader('set-cookie', cookie(req, '', 0));
    res.redirect(303, '/');
  });
  return router;
}
