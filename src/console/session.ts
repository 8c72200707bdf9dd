import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ApiTokens, Caller } from '../auth/caller.ts';
import type { PrismaClient } from '../db/generated/client.ts';

// Console sessions, stored server-side (console_session). The cookie holds a random 256-bit secret
// and the table only its SHA-256, so no signing key exists to steal: a database dump or backup
// opens no session (as it opens no API token). A session names a token; every request resolves
// the token again with `byId`, so revoking or expiring the token ends its sessions, and revoking
// deletes their rows as well. Signing out deletes the row. Each session has its own CSRF token,
// derived from the cookie's secret: the page sends it in a header with every GraphQL request,
// which a cross-site form cannot do.

export const SESSION_COOKIE = 'mds_console';
export const CSRF_HEADER = 'x-csrf-token';
const COOKIE_VERSION = 'v2';

export interface ConsoleSession {
  caller: Caller;
  /** send back in the x-csrf-token header (or the form field `csrf`) with every action */
  csrfToken: string;
  expiresAt: Date;
}

export interface ConsoleSessions {
  tokens: ApiTokens;
  /** starts a session for the caller; answers the cookie value */
  issue(caller: Caller): Promise<string>;
  /** the session a Cookie header carries; null when absent, unknown, ended, expired or its token revoked */
  resolve(cookieHeader: string | null | undefined): Promise<ConsoleSession | null>;
  /** ends the session a Cookie header carries (sign-out); nothing when there is none */
  end(cookieHeader: string | null | undefined): Promise<void>;
  /** constant-time comparison of a CSRF token with the session's */
  csrfMatches(session: ConsoleSession, given: string | null | undefined): boolean;
  maxAgeSeconds: number;
}

export interface SessionOptions {
  prisma: PrismaClient;
  tokens: ApiTokens;
  /** default 12 h */
  maxAgeSeconds?: number;
  now?: () => number;
}

export function readCookie(header: string | null | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return rest.join('=');
  }
  return undefined;
}

function sameText(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

const digest = (purpose: string, secret: string) => createHash('sha256').update(`${purpose}\n${secret}`).digest();

/** The cookie's secret, if it has the shape of one (43 base64url characters: 32 bytes). */
function cookieSecret(cookieHeader: string | null | undefined): string | undefined {
  const value = readCookie(cookieHeader, SESSION_COOKIE);
  const match = value === undefined ? null : /^v2\.([\w-]{43})$/.exec(value);
  return match?.[1];
}

export function createConsoleSessions(options: SessionOptions): ConsoleSessions {
  const { prisma } = options;
  const maxAgeSeconds = options.maxAgeSeconds ?? 12 * 3600;
  const now = options.now ?? Date.now;
  const idOf = (secret: string) => digest('session', secret).toString('hex');

  return {
    tokens: options.tokens,
    maxAgeSeconds,
    async issue(caller) {
      const secret = randomBytes(32).toString('base64url');
      const at = now();
      // expired sessions of this token go as it signs in again: the table stays small without a job
      await prisma.consoleSession.deleteMany({ where: { tokenId: caller.tokenId, expiresAt: { lte: new Date(at) } } });
      await prisma.consoleSession.create({ data: { secretHash: idOf(secret), tokenId: caller.tokenId, createdAt: new Date(at), expiresAt: new Date(at + maxAgeSeconds * 1000) } });
      return `${COOKIE_VERSION}.${secret}`;
    },
    async resolve(cookieHeader) {
      const secret = cookieSecret(cookieHeader);
      if (!secret) return null;
      const row = await prisma.consoleSession.findUnique({ where: { secretHash: idOf(secret) } });
      if (!row || row.expiresAt.getTime() <= now()) return null;
      const caller = await options.tokens.byId(row.tokenId);
      if (!caller) return null;
      return { caller, csrfToken: digest('csrf', secret).toString('base64url'), expiresAt: row.expiresAt };
    },
    async end(cookieHeader) {
      const secret = cookieSecret(cookieHeader);
      if (secret) await prisma.consoleSession.deleteMany({ where: { secretHash: idOf(secret) } });
    },
    csrfMatches: (session, given) => typeof given === 'string' && given.length > 0 && sameText(given, session.csrfToken),
  };
}
