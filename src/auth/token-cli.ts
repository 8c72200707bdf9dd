import { parseArgs } from 'node:util';
import type { PrismaClient } from '../db/generated/client.ts';
import { CLI_ACTOR, recordAudit } from './audit.ts';
import { createApiTokens, type TokenInfo } from './tokens.ts';

// `npm run token -- create --scope read --name grafana [--expires-in-days 90] | list [--all] | revoke <id>`: token
// management from a shell, on the database the service uses (same DATABASE_URL / DATA_DIR). The
// secret of a new token is printed once, on stdout, and nowhere else. Changes are audited as "cli".

export const TOKEN_USAGE = `usage:
  npm run token -- create --scope read|operate|admin --name <who or what uses it> [--expires-in-days N]
  npm run token -- list [--all]          (--all: revoked and expired tokens too)
  npm run token -- revoke <token id>`;

export interface TokenCommandResult {
  /** 0 done, 1 refused (unknown token), 2 bad usage */
  code: number;
  output: string;
}

const row = (t: TokenInfo) =>
  [
    t.tokenId,
    t.scope.padEnd(7),
    t.createdAt.toISOString(),
    t.lastUsedAt?.toISOString() ?? 'never'.padEnd(24),
    t.revokedAt ? `revoked ${t.revokedAt.toISOString()}` : t.expiresAt ? `${t.expiresAt <= new Date() ? 'expired' : 'expires'} ${t.expiresAt.toISOString()}` : 'valid',
    t.name,
  ].join('  ');

export async function runTokenCommand(prisma: PrismaClient, argv: string[]): Promise<TokenCommandResult> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { scope: { type: 'string' }, name: { type: 'string' }, 'expires-in-days': { type: 'string' }, all: { type: 'boolean', default: false } },
    });
  } catch (error) {
    return { code: 2, output: `${error instanceof Error ? error.message : String(error)}\n${TOKEN_USAGE}` };
  }
  const [command, ...rest] = parsed.positionals;
  const tokens = createApiTokens(prisma);
  switch (command) {
    case 'create': {
      const scope = parsed.values.scope;
      const name = parsed.values.name ?? '';
      if (scope !== 'read' && scope !== 'operate' && scope !== 'admin') return { code: 2, output: `--scope must be read, operate or admin\n${TOKEN_USAGE}` };
      const days = parsed.values['expires-in-days'];
      if (days !== undefined && !/^\d{1,4}$/.test(days.trim())) return { code: 2, output: `--expires-in-days must be a whole number of days\n${TOKEN_USAGE}` };
      const expiresAt = days === undefined ? null : new Date(Date.now() + Number(days.trim()) * 86_400_000);
      let created;
      try {
        created = await tokens.create({ name, scope, expiresAt });
      } catch (error) {
        return { code: 2, output: `${error instanceof Error ? error.message : String(error)}\n${TOKEN_USAGE}` };
      }
      await recordAudit(prisma, { action: 'token.create', actor: CLI_ACTOR, outcome: 'OK', detail: { args: { name: created.token.name, scope, expiresAt: expiresAt?.toISOString() ?? null }, result: { tokenId: created.token.tokenId } } });
      return {
        code: 0,
        output: `created ${scope} token "${created.token.name}" (id ${created.token.tokenId}). Its secret, shown this once:\n${created.secret}\n`,
      };
    }
    case 'list': {
      const list = await tokens.list({ includeRevoked: parsed.values.all });
      if (list.length === 0) return { code: 0, output: 'no tokens\n' };
      const header = ['id'.padEnd(36), 'scope  ', 'created'.padEnd(24), 'last used'.padEnd(24), 'state', 'name'].join('  ');
      return { code: 0, output: `${[header, ...list.map(row)].join('\n')}\n` };
    }
    case 'revoke': {
      const id = rest[0];
      if (!id) return { code: 2, output: `revoke needs a token id (see list)\n${TOKEN_USAGE}` };
      const revoked = await tokens.revoke(id);
      await recordAudit(prisma, { action: 'token.revoke', actor: CLI_ACTOR, outcome: revoked ? 'OK' : 'REFUSED', detail: { args: { id }, ...(revoked ? {} : { error: 'no such valid token' }) } });
      return revoked ? { code: 0, output: `revoked ${id}: its secret stops working now\n` } : { code: 1, output: `no valid token ${id} (see list --all)\n` };
    }
    default:
      return { code: 2, output: `${TOKEN_USAGE}\n` };
  }
}
