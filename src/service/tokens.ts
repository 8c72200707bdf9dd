import { createApiTokens, ensureStartupToken, NoApiTokenError, type ApiTokenService, type StartupToken } from '../auth/tokens.ts';
import type { Config } from '../config.ts';
import type { Database } from '../db/database.ts';
import type { Logger } from '../logger.ts';
import type { SandboxDescriptor } from '../sandbox/shared.ts';

/** What the console, the API and the log say while no API token exists. */
export const FIRST_TOKEN_HINT =
  'create the first with `docker compose run --rm app token create --scope admin --name <who>` ' +
  '(outside Docker: `npm run token -- create --scope admin --name <who>`, same DATABASE_URL), or set GRAPHQL_API_TOKEN';

/** The hint while no token can authenticate; asks the database until one exists, then never again. */
function createFirstTokenHint(tokens: ApiTokenService): () => Promise<string | undefined> {
  let seen = false;
  return async () => {
    if (seen) return undefined;
    seen = (await tokens.activeCount()) > 0;
    return seen ? undefined : `No API token exists yet: ${FIRST_TOKEN_HINT}.`;
  };
}

export interface ServiceTokens {
  tokens: ApiTokenService;
  /** the operate secret this start knows (configured, shared sandbox's, or made now); see RunningService */
  graphqlToken: string | undefined;
  graphqlTokenGenerated: boolean;
  firstTokenHint: () => Promise<string | undefined>;
}

/**
 * The API tokens, and the one this start brings: production never makes or logs a token; without
 * one it stays up (webhooks are taken) and the console, the API and the log say how to create the first.
 */
export async function prepareTokens(config: Config, deps: { db: Database; shared: SandboxDescriptor | undefined; logger: Logger }): Promise<ServiceTokens> {
  const { db, logger } = deps;
  let startupToken: StartupToken | undefined;
  try {
    startupToken = await ensureStartupToken(db.prisma, { configured: config.graphql.apiToken ?? deps.shared?.apiToken, production: config.production });
  } catch (error) {
    if (!(error instanceof NoApiTokenError)) throw error;
    logger.warn(`no API token yet: ${FIRST_TOKEN_HINT}`);
  }
  const graphqlToken = startupToken?.kind === 'configured' || startupToken?.kind === 'generated' ? startupToken.secret : undefined;
  if (startupToken?.kind === 'generated') logger.info('sandbox: an API token (admin scope) was made for this start; it is printed once, never logged');
  if (startupToken !== undefined && startupToken.kind !== 'configured' && startupToken.configuredRevoked) logger.warn('GRAPHQL_API_TOKEN was revoked and stays revoked: set a new value to use it again');
  const tokens = createApiTokens(db.prisma);
  return { tokens, graphqlToken, graphqlTokenGenerated: startupToken?.kind === 'generated', firstTokenHint: createFirstTokenHint(tokens) };
}
