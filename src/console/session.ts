import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ApiTokens, Caller } from '../auth/caller.ts';
import type { PrismaClient } from '../db/generated/client.ts';

// Console sessions. The cookie names a token (its id) and an expiry, signed with a server-side
// secret; it never holds the token's secret, so a copied cookie does not open the API to bearer
// clients, and every request resolves the token again with `byId` (revoking a token ends its
// sessions). Each session has its own CSRF token, derived from the cookie with the same secret:
// the page sends it in a header with every GraphQL request, which a cross-site form cannot do.

export const SESSION_COOKIE = 'mds_console';
export const CSRF_HEADER = 'x-csrf-token';
export const SESSION_SECRET_SETTING = 'console.sessionSecret';

export interface ConsoleSession {
  caller: Caller;
  /** send back in the x-csrf-token header (or the form field `csrf`) with every action */
  csrfToken: string;
  expiresAt: Date;
}

export interface ConsoleSessions {
  tokens: ApiTokens;
  /** a new session cookie value for the caller */
  issue(caller: Caller): string;
  /** the session a Cookie header carries; null when absent, forged, expired or its token revoked */
  resolve(cookieHeader: string | null | undefined): Promise<ConsoleSession | null>;
  /** constant-time comparison of a CSRF token with the session's */
  csrfMatches(session: ConsoleSession, given: string | null | undefined): boolean;
  maxAgeSeconds: number;
}

export interface SessionOptions {
  /** at least 32 random bytes, the same on every replica (see ensureSessionSecret) */
  secret: string;
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

export function createConsoleSessions(options: SessionOptions): ConsoleSessions {
  const maxAgeSeconds = options.maxAgeSeconds ?? 12 * 3600;
  const now = options.now ?? Date.now;
  const mac = (purpose: string, text: string) => createHmac('sha256', options.secret).update(`${purpose}\n${text}`).digest('base64url');

  return {
    tokens: options.tokens,
    maxAgeSeconds,
    issue(caller) {
      const body = ['v1', Buffer.from(caller.tokenId, 'utf8').toString('base64url'), String(Math.floor(now() / 1000) + maxAgeSeconds), randomBytes(12).toString('base64url')].join('.');
      return `${body}.${mac('session', body)}`;
    },
    async resolve(cookieHeader) {
      const value = readCookie(cookieHeader, SESSION_COOKIE);
      const parts = value?.split('.') ?? [];
      if (parts.length !== 5 || parts[0] !== 'v1') return null;
      const body = parts.slice(0, 4).join('.');
      if (!sameText(parts[4]!, mac('session', body))) return null;
      const expires = Number(parts[2]);
      if (!Number.isSafeInteger(expires) || expires * 1000 <= now()) return null;
      const caller = await options.tokens.byId(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
      if (!caller) return null;
      return { caller, csrfToken: mac('csrf', body), expiresAt: new Date(expires * 1000) };
    },
    csrfMatches: (session, given) => typeof given === 'string' && given.length > 0 && sameText(given, session.csrfToken),
  };
}

/** The signing secret stored at first start, so every replica and restart agrees (like the API token). */
export async function ensureSessionSecret(prisma: PrismaClient): Promise<string> {
  const stored = await prisma.serviceSetting.findUnique({ where: { key: SESSION_SECRET_SETTING } });
  if (stored) return stored.value;
  await prisma.serviceSetting.createMany({ data: [{ key: SESSION_SECRET_SETTING, value: randomBytes(32).toString('base64url') }], skipDuplicates: true });
  return (await prisma.serviceSetting.findUniqueOrThrow({ where: { key: SESSION_SECRET_SETTING } })).value;
}
