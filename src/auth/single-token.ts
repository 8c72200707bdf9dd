import { createHash } from 'node:crypto';
import { bearerMatches } from '../graphql/auth.ts';
import type { ApiTokens, Caller } from './caller.ts';

// Today's one API token (GRAPHQL_API_TOKEN, or the one stored at first start) behind the ApiTokens
// contract: one caller with the operate scope. Its id is derived from the secret, so replacing the
// token changes the id and ends every console session signed for the old one.

export function singleTokenAdapter(secret: string): ApiTokens {
  const caller: Caller = {
    tokenId: `single-${createHash('sha256').update(secret, 'utf8').digest('base64url').slice(0, 16)}`,
    name: 'GRAPHQL_API_TOKEN',
    scope: 'operate',
  };
  return {
    authenticate: (given) => Promise.resolve(bearerMatches(secret, `Bearer ${given}`) ? caller : null),
    byId: (tokenId) => Promise.resolve(tokenId === caller.tokenId ? caller : null),
  };
}
