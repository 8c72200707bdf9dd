import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import express, { Router, type Request, type Response } from 'express';
import type { ApiTokens, Caller } from '../auth/caller.ts';
import { bearerSecret } from '../auth/tokens.ts';
import type { Database } from '../db/database.ts';
import type { Readiness } from '../http/health.ts';
import { collectStatus } from './status.data.ts';
import { renderFragment, renderLogin, renderPage } from './status.page.ts';

// The status page at `/`. It shows person data (emails in collisions, ids), so it is protected by
// an API token (any scope): a login form sets an HttpOnly, SameSite=Strict cookie that holds the
// token's id and an HMAC of it (not the secret: a copied cookie does not open the API; a revoked
// token ends its sessions), or scripts send `Authorization: Bearer <token>`. No token in URLs, so
// none in access logs or browser history.

export interface StatusPageOptions {
  db: Database;
  readiness: () => Promise<Readiness>;
  tokens: ApiTokens;
  /** signs session cookies; shared by the replicas (see ensureSessionKey) */
  sessionKey: string;
  /** cookie lifetime; default 12 h */
  sessionSeconds?: number;
}

const COOKIE = 'mds_status';

export function createStatusPage(options: StatusPageOptions): Router {
  const router = Router();
  const sign = (tokenId: string) => createHmac('sha256', options.sessionKey).update(`status-page-session-v2:${tokenId}`).digest('base64url');
  const session = (caller: Caller) => `${caller.tokenId}.${sign(caller.tokenId)}`;
  const maxAge = options.sessionSeconds ?? 12 * 3600;

  function cookieValue(req: Request): string | undefined {
    for (const part of (req.get('cookie') ?? '').split(';')) {
      const [name, ...rest] = part.trim().split('=');
      if (name === COOKIE) return rest.join('=');
    }
    return undefined;
  }
  async function authenticated(req: Request): Promise<boolean> {
    if (req.get('authorization')) return (await options.tokens.authenticate(bearerSecret(req.get('authorization')))) !== null;
    const [tokenId = '', mac = ''] = (cookieValue(req) ?? '').split('.');
    const given = Buffer.from(mac);
    const expected = Buffer.from(sign(tokenId));
    return given.length === expected.length && timingSafeEqual(given, expected) && (await options.tokens.byId(tokenId)) !== null;
  }
  function noStore(res: Response): void {
    res.setHeader('cache-control', 'no-store');
  }
  function page(res: Response, status: number, html: string, nonce?: string): void {
    noStore(res);
    res.setHeader(
      'content-security-policy',
      `default-src 'none'; style-src 'unsafe-inline'; ${nonce ? `script-src 'nonce-${nonce}'; ` : ''}connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'`,
    );
    res.status(status).type('html').send(html);
  }
  const read = () => collectStatus(options.db, options.readiness);

  router.get('/', async (req, res) => {
    if (!(await authenticated(req))) {
      page(res, 401, renderLogin());
      return;
    }
    const nonce = randomBytes(16).toString('base64');
    page(res, 200, renderPage(await read(), nonce), nonce);
  });
  router.get('/status/fragment', async (req, res) => {
    if (!(await authenticated(req))) {
      noStore(res);
      res.status(401).type('text').send('sign in again');
      return;
    }
    page(res, 200, renderFragment(await read()));
  });
  router.get('/status.json', async (req, res) => {
    noStore(res);
    if (!(await authenticated(req))) {
      res.status(401).json({ error: { code: 'unauthorized', message: 'send Authorization: Bearer <GRAPHQL_API_TOKEN> or sign in at /' } });
      return;
    }
    res.json(await read());
  });
  router.post('/login', express.urlencoded({ extended: false, limit: '4kb' }), async (req, res) => {
    const token = typeof (req.body as Record<string, unknown> | undefined)?.['token'] === 'string' ? String((req.body as Record<string, unknown>)['token']).trim() : '';
    const caller = await options.tokens.authenticate(token);
    if (!caller) {
      page(res, 401, renderLogin('That is not the API token.'));
      return;
    }
    const secure = req.secure ? '; Secure' : '';
    res.setHeader('set-cookie', `${COOKIE}=${session(caller)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${secure}`);
    noStore(res);
    res.redirect(303, '/');
  });
  router.post('/logout', (_req, res) => {
    res.setHeader('set-cookie', `${COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`);
    res.redirect(303, '/');
  });
  return router;
}
