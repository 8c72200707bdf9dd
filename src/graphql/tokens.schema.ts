
import type { TokenInfo } from '../auth/tokens.ts';
import { MAX_TOKEN_DAYS, tokenNameProblem } from '../auth/tokens.ts';
import type { AuditEntry } from '../db/generated/client.ts';
import type { Builder } from './builder.ts';
import { addConnection, decodeCursor, pageSize, toConnection } from './connection.ts';
import type { Refs } from './refs.ts';

// API tokens and the audit log over GraphQL. Tokens are listed without their secret (only its
// digest is stored); createApiToken shows the new secret once. The mutations are audited and
// refused to read tokens by guard.ts, like every mutation.

type CreatePayload = { ok: boolean; error: string | null; token: TokenInfo | null; secret: string | null };
type RevokePayload = { ok: boolean; error: string | null; token: TokenInfo | null };

export function addTokenSchema(builder: Builder, refs: Refs) {
  const TokenScopeEnum = builder.enumType('TokenScope', {
    description: 'What a token may do.',
    values: {
      READ: { description: 'every query; no mutation' },
      OPERATE: { description: 'every query and every mutation except token management and erasure' },
      ADMIN: { description: 'everything: also creates and revokes tokens, erases people and lifts erasures' },
    } as const,
  });
  const scopeOf = (t: TokenInfo) => (t.scope === 'admin' ? 'ADMIN' : t.scope === 'operate' ? 'OPERATE' : 'READ');
  const scopeFrom = (scope: 'READ' | 'OPERATE' | 'ADMIN') => (scope === 'ADMIN' ? 'admin' : scope === 'OPERATE' ? 'operate' : 'read');

  const ApiTokenRef = builder.objectRef<TokenInfo>('ApiToken').implement({
    description: 'A bearer token of the API and the console. The secret is never shown again after creation.',
    fields: (t) => ({
      id: t.id({ resolve: (tok) => tok.tokenId }),
      name: t.exposeString('name', { description: 'who or what uses it; shown in audit entries' }),
      scope: t.field({ type: TokenScopeEnum, resolve: scopeOf }),
      createdAt: t.field({ type: 'DateTime', resolve: (tok) => tok.createdAt }),
      lastUsedAt: t.field({ type: 'DateTime', nullable: true, description: 'to the minute; null when never used', resolve: (tok) => tok.lastUsedAt }),
      revokedAt: t.field({ type: 'DateTime', nullable: true, resolve: (tok) => tok.revokedAt }),
      expiresAt: t.field({ type: 'DateTime', nullable: true, description: 'null: never expires', resolve: (tok) => tok.expiresAt }),
    }),
  });

  const AuditOutcomeEnum = builder.enumType('AuditOutcome', {
    description: 'How an audited action ended.',
    values: {
      OK: { description: 'done' },
      REFUSED: { description: 'answered ok: false (the detail says why)' },
      FORBIDDEN: { description: 'the token\'s scope does not allow it' },
      FAILED: { description: 'an unexpected error' },
    } as const,
  });
  const AuditEntryRef = builder.objectRef<AuditEntry>('AuditEntry').implement({
    description: 'One operator action: a mutation or a token change from the CLI.',
    fields: (t) => ({
      id: t.exposeID('id'),
      at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
      action: t.exposeString('action', { description: 'the mutation (e.g. replayChangeEvent), or token.create / token.revoke from the CLI' }),
      tokenId: t.exposeID('tokenId', { nullable: true, description: 'null for the CLI' }),
      tokenName: t.exposeString('tokenName', { description: 'the token\'s name when it acted; "cli" for the command line' }),
      outcome: t.field({ type: AuditOutcomeEnum, resolve: (e) => e.outcome }),
      detail: t.field({ type: 'JSON', description: 'the arguments (except forgetPerson\'s), and the refusal or error message', resolve: (e) => e.detail }),
    }),
  });
  const AuditConnection = addConnection(builder, refs.pageInfo, 'AuditEntry', AuditEntryRef, 'A page of audit entries, newest first.');

  builder.queryFields((t) => ({
    apiTokens: t.field({
      type: [ApiTokenRef],
      description: 'API tokens, newest first: names, scopes, last use. Never a secret.',
      args: { includeRevoked: t.arg.boolean({ required: false }) },
      resolve: (_root, args, ctx) => ctx.deps.tokens.list({ includeRevoked: args.includeRevoked ?? false }),
    }),
    auditEntries: t.field({
      type: AuditConnection,
      description: 'Operator actions (mutations, token changes), newest first.',
      args: {
        action: t.arg.string({ required: false, description: 'only this action, e.g. forgetPerson' }),
        first: t.arg.int({ required: false, description: 'page size, 1-100 (default 20)' }),
        after: t.arg.string({ required: false }),
      },
      resolve: async (_root, args, ctx) => {
        const size = pageSize(args.first);
        const after = decodeCursor('audit', args.after);
        const rows = await ctx.prisma.auditEntry.findMany({
          where: args.action ? { action: args.action } : {},
          orderBy: [{ at: 'desc' }, { id: 'desc' }],
          take: size + 1,
          ...(after ? { cursor: { id: after }, skip: 1 } : {}),
        });
        return toConnection(rows, size, 'audit', (r) => r.id);
      },
    }),
  }));

  const CreatePayloadRef = builder.objectRef<CreatePayload>('CreateApiTokenPayload').implement({
    description: 'The answer to createApiToken.',
    fields: (t) => ({
      ok: t.exposeBoolean('ok'),
      error: t.exposeString('error', { nullable: true }),
      token: t.field({ type: ApiTokenRef, nullable: true, resolve: (p) => p.token }),
      secret: t.exposeString('secret', { nullable: true, description: 'the bearer secret: shown this once, only its digest is stored' }),
    }),
  });
  const RevokePayloadRef = builder.objectRef<RevokePayload>('RevokeApiTokenPayload').implement({
    description: 'The answer to revokeApiToken.',
    fields: (t) => ({
      ok: t.exposeBoolean('ok'),
      error: t.exposeString('error', { nullable: true }),
      token: t.field({ type: ApiTokenRef, nullable: true, resolve: (p) => p.token }),
    }),
  });

  builder.mutationFields((t) => ({
    createApiToken: t.field({
      type: CreatePayloadRef,
      description: 'Creates a token (admin scope). The answer carries its secret once; store it, it cannot be shown again.',
      args: {
        name: t.arg.string({ required: true }),
        scope: t.arg({ type: TokenScopeEnum, required: true }),
        expiresInDays: t.arg.int({ required: false, description: `the token stops working after this many days (1-${MAX_TOKEN_DAYS}); omitted: never` }),
      },
      extensions: { audit: { scope: 'admin', result: (p: CreatePayload) => ({ tokenId: p.token?.tokenId ?? null }) } },
      resolve: async (_root, args, ctx) => {
        const problem = tokenNameProblem(args.name);
        if (problem) return { ok: false, error: problem, token: null, secret: null };
        const days = args.expiresInDays;
        if (days !== null && days !== undefined && (days < 1 || days > MAX_TOKEN_DAYS)) {
          return { ok: false, error: `expiresInDays is a whole number from 1 to ${MAX_TOKEN_DAYS}`, token: null, secret: null };
        }
        const expiresAt = days ? new Date(Date.now() + days * 86_400_000) : null;
        const { token, secret } = await ctx.deps.tokens.create({ name: args.name, scope: scopeFrom(args.scope), expiresAt });
        return { ok: true, error: null, token, secret };
      },
    }),
    revokeApiToken: t.field({
      type: RevokePayloadRef,
      description:
        'Revokes a token at once (admin scope): its secret stops working and its console sessions end, for good (GRAPHQL_API_TOKEN too, until a new value is set). ' +
        'The last admin token cannot be revoked here.',
      args: { id: t.arg.id({ required: true }) },
      extensions: { audit: { scope: 'admin' } },
      resolve: async (_root, args, ctx) => {
        const tokens = await ctx.deps.tokens.list();
        const target = tokens.find((tok) => tok.tokenId === args.id.toLowerCase());
        if (!target) return { ok: false, error: `no valid token ${args.id}`, token: null };
        if (target.scope === 'admin' && tokens.filter((tok) => tok.scope === 'admin').length === 1) {
          return { ok: false, error: 'this is the last admin token: create another first (or use the CLI)', token: target };
        }
        const revoked = await ctx.deps.tokens.revoke(target.tokenId);
        return revoked ? { ok: true, error: null, token: { ...target, revokedAt: new Date() } } : { ok: false, error: `no valid token ${args.id}`, token: null };
      },
    }),
  }));
}


