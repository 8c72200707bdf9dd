import { createHash, randomBytes } from 'node:crypto';
import type { PrismaClient } from '../db/generated/client.ts';
import type { ApiTokens, Caller, TokenScope } from './caller.ts';

// API tokens, stored as the SHA-256 of their secret only. A secret is 256 random bits, so a plain
// digest is enough (no password hashing: nothing to brute-force), and looking it up by digest
// leaks nothing through timing about the secret itself. Several tokens may be valid at once, so a
// token is rotated by creating the new one, moving clients, then revoking the old one. A token may
// carry an expiry; past it, it authenticates nothing and its console sessions end, as on revocation.

/** The prefix makes a leaked secret recognisable to secret scanners and in support tickets. */
export const SECRET_PREFIX = 'mds_';
/** The token GRAPHQL_API_TOKEN becomes: config is its source of truth (see ensureConfiguredToken). */
export const ENV_TOKEN_NAME = 'env';
/** Sandbox mode makes one at each start (the sandbox's data is cleared at each start too). */
export const SANDBOX_TOKEN_NAME = 'sandbox';
/** lastUsedAt is written at most this often per token and replica, not on every request. */
const LAST_USED_EVERY_MS = 60_000;

export interface TokenInfo extends Caller {
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  /** null: never expires */
  expiresAt: Date | null;
}

export interface CreatedToken {
  token: TokenInfo;
  /** shown once; only its digest is stored */
  secret: string;
}

export interface ApiTokenService extends ApiTokens {
  create(input: { name: string; scope: TokenScope; expiresAt?: Date | null }): Promise<CreatedToken>;
  /** every token, newest first; revoked and expired ones only when asked */
  list(options?: { includeRevoked?: boolean }): Promise<TokenInfo[]>;
  /** false when no such token is valid (unknown or already revoked) */
  revoke(tokenId: string): Promise<boolean>;
  /** the number of tokens that can still authenticate */
  activeCount(): Promise<number>;
}

/** The secret of an `Authorization: Bearer <secret>` header; '' when there is none. */
export function bearerSecret(authorization: string | null | undefined): string {
  return /^Bearer[ ]+(\S+)\s*$/i.exec(authorization ?? '')?.[1] ?? '';
}

export const hashSecret = (secret: string): string => createHash('sha256').update(secret, 'utf8').digest('hex');
export const newSecret = (): string => SECRET_PREFIX + randomBytes(32).toString('base64url');

type StoredScope = 'READ' | 'OPERATE' | 'ADMIN';
const toScope = (scope: StoredScope): TokenScope => (scope === 'ADMIN' ? 'admin' : scope === 'OPERATE' ? 'operate' : 'read');
const fromScope = (scope: TokenScope): StoredScope => (scope === 'admin' ? 'ADMIN' : scope === 'operate' ? 'OPERATE' : 'READ');
/** a token's expiry: at most ten years ahead, so a typo cannot make one that never ends */
export const MAX_TOKEN_DAYS = 3_650;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Row = { id: string; name: string; scope: StoredScope; createdAt: Date; lastUsedAt: Date | null; revokedAt: Date | null; expiresAt: Date | null };
const info = (row: Row): TokenInfo => ({
  tokenId: row.id,
  name: row.name,
  scope: toScope(row.scope),
  createdAt: row.createdAt,
  lastUsedAt: row.lastUsedAt,
  revokedAt: row.revokedAt,
  expiresAt: row.expiresAt,
});
const caller = (row: Pick<Row, 'id' | 'name' | 'scope'>): Caller => ({ tokenId: row.id, name: row.name, scope: toScope(row.scope) });

/** Names are for people: short, printable, no line breaks (they appear in audit entries and logs). */
export function tokenNameProblem(name: string): string | null {
  if (!name.trim()) return 'a token needs a name (who or what uses it)';
  if (name.length > 100) return 'a token name has at most 100 characters';
  if (/[\p{Cc}]/u.test(name)) return 'a token name has no control characters';
  return null;
}

export function createApiTokens(prisma: PrismaClient, options: { now?: () => Date } = {}): ApiTokenService {
  const now = options.now ?? (() => new Date());
  const lastWritten = new Map<string, number>();
  const valid = () => ({ revokedAt: null, OR: [{ expiresAt: null }, { expiresAt: { gt: now() } }] });

  function touch(id: string): void {
    const at = now();
    if (at.getTime() - (lastWritten.get(id) ?? 0) < LAST_USED_EVERY_MS) return;
    lastWritten.set(id, at.getTime());
    // best effort: a failed timestamp must not fail the request it belongs to
    prisma.apiToken.update({ where: { id }, data: { lastUsedAt: at } }).catch(() => lastWritten.delete(id));
  }

  return {
    async authenticate(secret) {
      if (!secret) return null;
      const row = await prisma.apiToken.findUnique({ where: { secretHash: hashSecret(secret) }, select: { id: true, name: true, scope: true, revokedAt: true, expiresAt: true } });
      if (!row || row.revokedAt || (row.expiresAt && row.expiresAt <= now())) return null;
      touch(row.id);
      return caller(row);
    },
    async byId(tokenId) {
      if (!UUID.test(tokenId)) return null;
      const row = await prisma.apiToken.findFirst({ where: { id: tokenId.toLowerCase(), ...valid() }, select: { id: true, name: true, scope: true } });
      return row ? caller(row) : null;
    },
    async create({ name, scope, expiresAt = null }) {
      const problem = tokenNameProblem(name);
      if (problem) throw new TypeError(problem);
      if (expiresAt && (expiresAt <= now() || expiresAt.getTime() > now().getTime() + MAX_TOKEN_DAYS * 86_400_000)) {
        throw new TypeError(`a token expires in the future, at most ${MAX_TOKEN_DAYS} days ahead`);
      }
      const secret = newSecret();
      const row = await prisma.apiToken.create({ data: { name: name.trim(), scope: fromScope(scope), secretHash: hashSecret(secret), createdAt: now(), expiresAt } });
      return { token: info(row), secret };
    },
    async list({ includeRevoked = false } = {}) {
      const rows = await prisma.apiToken.findMany({ where: includeRevoked ? {} : valid(), orderBy: [{ createdAt: 'desc' }, { id: 'asc' }] });
      return rows.map(info);
    },
    async revoke(tokenId) {
      if (!UUID.test(tokenId)) return false;
      const id = tokenId.toLowerCase();
      const [{ count }] = await prisma.$transaction([
        prisma.apiToken.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: now() } }),
        // its console sessions end with it (resolving one checks the token too)
        prisma.consoleSession.deleteMany({ where: { tokenId: id } }),
      ]);
      return count === 1;
    },
    activeCount: () => prisma.apiToken.count({ where: valid() }),
  };
}

/**
 * GRAPHQL_API_TOKEN as the `admin` token named "env" (the deployment's first token: it mints the
 * others): its digest is stored (once; replicas starting together insert the same digest and skip
 * duplicates), and an "env" token of an earlier value is revoked, so changing the variable rotates
 * it. The configured value is never stored. A revocation sticks: a secret revoked once (by an
 * operator, or an older value set again) stays revoked until the operator sets a new value.
 * Answers false when the configured secret is revoked.
 */
export async function ensureConfiguredToken(prisma: PrismaClient, secret: string): Promise<boolean> {
  const secretHash = hashSecret(secret);
  await prisma.apiToken.createMany({ data: [{ name: ENV_TOKEN_NAME, scope: 'ADMIN', secretHash }], skipDuplicates: true });
  // an "env" token stored before the admin scope existed gets it
  await prisma.apiToken.updateMany({ where: { secretHash, name: ENV_TOKEN_NAME, scope: 'OPERATE', revokedAt: null }, data: { scope: 'ADMIN' } });
  await prisma.apiToken.updateMany({ where: { name: ENV_TOKEN_NAME, revokedAt: null, NOT: { secretHash } }, data: { revokedAt: new Date() } });
  const row = await prisma.apiToken.findUnique({ where: { secretHash }, select: { revokedAt: true } });
  return row !== null && row.revokedAt === null;
}

export type StartupToken =
  | { kind: 'configured'; secret: string }
  /** sandbox mode: made at this start; print it once */
  | { kind: 'generated'; secret: string; configuredRevoked?: true }
  /** tokens made with the CLI (or over the API) exist: the service does not know their secrets */
  | { kind: 'stored'; configuredRevoked?: true };

export class NoApiTokenError extends Error {
  constructor() {
    super(
      'No API token: set GRAPHQL_API_TOKEN, or create one with `npm run token -- create --scope admin --name <who>` ' +
        '(same DATABASE_URL / DATA_DIR as the service). Outside sandbox mode the service does not make one up.',
    );
    this.name = 'NoApiTokenError';
  }
}

/**
 * The token situation at start-up. Production (NODE_ENV=production, or real credentials
 * configured) refuses to start without a configured or stored token and never generates one;
 * sandbox mode makes a fresh "sandbox" token at each start (revoking the previous one).
 */
export async function ensureStartupToken(
  prisma: PrismaClient,
  options: { configured: string | undefined; production: boolean },
): Promise<StartupToken> {
  const tokens = createApiTokens(prisma);
  const configured = options.configured?.trim();
  if (configured && (await ensureConfiguredToken(prisma, configured))) return { kind: 'configured', secret: configured };
  if (options.production) {
    if ((await tokens.activeCount()) === 0) throw new NoApiTokenError();
    // a revoked GRAPHQL_API_TOKEN stays revoked: the other tokens serve
    return configured ? { kind: 'stored', configuredRevoked: true } : { kind: 'stored' };
  }
  await prisma.apiToken.updateMany({ where: { name: SANDBOX_TOKEN_NAME, revokedAt: null }, data: { revokedAt: new Date() } });
  const { secret } = await tokens.create({ name: SANDBOX_TOKEN_NAME, scope: 'admin' });
  return configured ? { kind: 'generated', secret, configuredRevoked: true } : { kind: 'generated', secret };
}
