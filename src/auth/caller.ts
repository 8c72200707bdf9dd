// Who is calling the API and what they may do. Shared by the GraphQL API and the operator console:
// both authenticate a bearer secret (or a console session that names a token) to a Caller, and
// every mutation or console action asks `canOperate` first. A `read` token sees everything the
// API shows and changes nothing; `operate` runs the sync (replays, mappings, sweeps); only `admin`
// mints and revokes tokens and erases people (or lifts an erasure), the actions that hand out
// access or destroy data for good.

export type TokenScope = 'read' | 'operate' | 'admin';

export interface Caller {
  /** stable id of the token (sessions and audit entries hold this, never the secret) */
  tokenId: string;
  /** the name an operator gave the token, shown in audit entries */
  name: string;
  scope: TokenScope;
}

export interface ApiTokens {
  /** the caller a bearer secret belongs to; null for an unknown or revoked secret */
  authenticate(secret: string): Promise<Caller | null>;
  /** the caller of a token id that is still valid; null once it is revoked (ends its sessions) */
  byId(tokenId: string): Promise<Caller | null>;
}

export const canOperate = (caller: Caller): boolean => caller.scope === 'operate' || caller.scope === 'admin';
export const canAdminister = (caller: Caller): boolean => caller.scope === 'admin';
