import type { ApiTokens, Caller } from '../../src/auth/caller.ts';

/** A tiny in-memory ApiTokens: an operate token, a read token, and revocation. */
export function memoryTokens() {
  const tokens = new Map<string, Caller & { secret: string }>([
    ['tok-operate', { tokenId: 'tok-operate', name: 'ops on call', scope: 'operate', secret: 'operate-secret-0123456789' }],
    ['tok-read', { tokenId: 'tok-read', name: 'auditor', scope: 'read', secret: 'read-secret-0123456789' }],
  ]);
  const revoked = new Set<string>();
  const caller = (t: Caller & { secret: string } | undefined): Caller | null => (t && !revoked.has(t.tokenId) ? { tokenId: t.tokenId, name: t.name, scope: t.scope } : null);
  const api: ApiTokens = {
    authenticate: (secret) => Promise.resolve(caller([...tokens.values()].find((t) => t.secret === secret))),
    byId: (id) => Promise.resolve(caller(tokens.get(id))),
  };
  return { api, operateSecret: 'operate-secret-0123456789', readSecret: 'read-secret-0123456789', revoke: (id: string) => revoked.add(id) };
}
