import { createHash } from 'node:crypto';
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import express, { type Request as ExpressRequest, type RequestHandler, type Response as ExpressResponse } from 'express';
import { createYoga, maskError, renderGraphiQL, shouldRenderGraphiQL, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { graphiqlAssetsDir } from '../paths.ts';
import type { Caller } from '../auth/caller.ts';
import { bearerSecret } from '../auth/tokens.ts';
import { defaultLimits, type GraphQLContext, type GraphQLDeps } from './context.ts';
import { createLoaders } from './loaders.ts';
import { buildSchema } from './schema.ts';
import { callerFromConsoleSession } from './session-auth.ts';

// /graphql: graphql-yoga over the Pothos schema. The bearer secret is authenticated against the
// stored API tokens (src/auth/tokens.ts) before anything is parsed, and its Caller (token id, name,
// scope) is the context's `caller`; src/graphql/guard.ts refuses mutations to read tokens.
// graphql-armor bounds depth, cost, aliases and tokens during validation, and every error that is
// not a GraphQLError we raised on purpose reaches the caller as "Unexpected error." (and the log).

export type { GraphQLDeps } from './context.ts';

/** GraphQL operations are small; this bounds what an (authenticated or not) client can make us buffer. */
export const DEFAULT_BODY_LIMIT_BYTES = 256 * 1024;

type ServerContext = { req: ExpressRequest; res: ExpressResponse };

const callers = new WeakMap<object, Caller>();

export interface GraphQLHandler {
  /** mount with `app.use('/graphql', handler.middleware)` (the path must match deps.endpoint) */
  middleware: RequestHandler;
  yoga: YogaServerInstance<ServerContext, GraphQLContext>;
}

const unauthorizedBody = {
  errors: [{ message: 'missing, unknown or revoked bearer token: send Authorization: Bearer <API token>', extensions: { code: 'UNAUTHENTICATED' } }],
};
const unauthorizedHeaders = { 'content-type': 'application/json; charset=utf-8', 'www-authenticate': 'Bearer realm="graphql"' };

function unauthorized(fetchAPI: { Response: typeof Response }): Response {
  return new fetchAPI.Response(JSON.stringify(unauthorizedBody), { status: 401, headers: unauthorizedHeaders });
}

/** yoga's page loads GraphiQL from a CDN; the same files are served from here instead */
const CDN_ASSETS = /https:\/\/unpkg\.com\/@graphql-yoga\/graphiql@[\w.-]+\/dist\//g;

/**
 * The GraphiQL page with a Content-Security-Policy of its own: its two inline scripts by hash;
 * scripts, styles and the editor's workers only from this origin (the bundle is served under
 * `assetsPath`; the workers are fetched, then run as blob: workers); requests only to this origin.
 */
export function graphiqlPage(options: { title: string; endpoint: string; headers: string }, assetsPath: string): { html: string; csp: string } {
  const yogaPage = renderGraphiQL(options);
  if (yogaPage.search(CDN_ASSETS) < 0) throw new Error("GraphiQL page: yoga's page no longer loads @graphql-yoga/graphiql from unpkg; update graphiqlPage");
  const html = yogaPage
    .replace(CDN_ASSETS, assetsPath)
    // the favicon is the only other thing it fetches from elsewhere
    .replace(/<link rel=icon href=[^>]+>/, '');
  const inline = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => `'sha256-${createHash('sha256').update(m[1]!, 'utf8').digest('base64')}'`);
  const csp = [
    "default-src 'none'",
    `script-src ${inline.join(' ')} 'self'`,
    // GraphiQL and its editor set style attributes and inject <style> elements
    "style-src 'self' 'unsafe-inline'",
    "font-src 'self' data:",
    "img-src 'self' data:",
    "connect-src 'self'",
    'worker-src blob:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp };
}

export function createGraphQLHandler(deps: GraphQLDeps): GraphQLHandler {
  const limits = { ...defaultLimits, ...deps.limits };
  const endpoint = deps.endpoint ?? '/graphql';

  const auth: Plugin = {
    async onRequest(payload) {
      const { request, serverContext } = payload;
      // The GraphiQL page is static HTML: it executes nothing, and its own requests carry the token.
      if (graphiql && shouldRenderGraphiQL(request)) return;
      // the router below has authenticated already (bearer or console session) when mounted through it
      const req = (serverContext as Partial<ServerContext> | undefined)?.req;
      const known = req ? callers.get(req) : undefined;
      const caller = known ?? (await deps.tokens.authenticate(bearerSecret(request.headers.get('authorization'))));
      if (!caller) payload.endResponse(unauthorized(payload.fetchAPI));
      else callers.set(request, caller);
    },
  };

  const graphiqlOptions = { title: 'marketo-dynamics-sync', endpoint, headers: JSON.stringify({ Authorization: 'Bearer <GRAPHQL_API_TOKEN>' }) };
  const assetsDir = deps.graphiql ? graphiqlAssetsDir() : null;
  if (deps.graphiql && !assetsDir) deps.logger.warn('GraphiQL is off: its bundle (@graphql-yoga/graphiql, a devDependency) is not installed');
  const graphiql = assetsDir ? graphiqlPage(graphiqlOptions, `${endpoint}/graphiql/`) : undefined;
  const unauthorizedJson = async () => {
    const hint = await deps.firstTokenHint?.();
    return JSON.stringify(hint ? { errors: [{ ...unauthorizedBody.errors[0], message: `${unauthorizedBody.errors[0]!.message}. ${hint}` }] } : unauthorizedBody);
  };

  const yoga = createYoga<ServerContext, GraphQLContext>({
    schema: buildSchema(),
    graphqlEndpoint: endpoint,
    graphiql: graphiql ? graphiqlOptions : false,
    landingPage: false,
    // one operation per request, so the armor limits are per request too
    batching: false,
    logging: {
      debug: (...args: unknown[]) => deps.logger.debug({ args }, 'graphql'),
      info: (...args: unknown[]) => deps.logger.info({ args }, 'graphql'),
      warn: (...args: unknown[]) => deps.logger.warn({ args }, 'graphql'),
      error: (...args: unknown[]) => deps.logger.error({ args }, 'graphql'),
    },
    maskedErrors: {
      // details (stack traces) follow the production flag, not NODE_ENV
      isDev: deps.production === false,
      maskError(error, message, isDev) {
        // duck-typed: graphql may be loaded twice (ESM and CJS), so instanceof is not reliable here
        const isGraphQLError = (value: unknown): value is { originalError?: unknown } => value instanceof Error && value.name === 'GraphQLError';
        const original = isGraphQLError(error) ? error.originalError : error;
        if (original && !isGraphQLError(original)) deps.logger.error({ err: original }, 'GraphQL resolver failed');
        return maskError(error, message, isDev);
      },
    },
    context: ({ request, req }) => {
      const caller = (req ? callers.get(req) : undefined) ?? callers.get(request);
      // onRequest ended every request without a caller; reaching here without one is a bug
      if (!caller) throw new Error('unauthenticated request reached execution');
      return { deps, prisma: deps.prisma, loaders: createLoaders(deps.prisma), caller };
    },
    plugins: [
      auth,
      EnvelopArmorPlugin({
        maxDepth: { n: limits.maxDepth },
        costLimit: { maxCost: limits.maxCost },
        maxAliases: { n: limits.maxAliases },
        maxTokens: { n: limits.maxTokens },
        maxDirectives: { n: 10 },
        blockFieldSuggestion: { enabled: true },
      }),
    ],
  });

  // yoga has no body size limit of its own: bodies are read here, bounded, before it sees them
  // (a no-op when an outer express.json already parsed the body). Oversized -> 413 via `next`.
  const router = express.Router();
  // GraphiQL's bundle, public like the page that loads it; an unknown path falls through to the 401 below
  if (assetsDir) router.use('/graphiql', express.static(assetsDir, { index: false, dotfiles: 'ignore', redirect: false, maxAge: '1d' }));
  // Refused before the body is even read: a caller without the token learns nothing, not even
  // whether its body parses. (The yoga plugin above checks again, for mounts without this router.)
  router.use((req, res, next) => {
    if (graphiql && req.method === 'GET' && (req.headers.accept ?? '').includes('text/html')) {
      res.status(200).set({ 'content-type': 'text/html; charset=utf-8', 'content-security-policy': graphiql.csp, 'cache-control': 'no-store' }).send(graphiql.html);
      return;
    }
    const admit = (caller: Caller) => {
      callers.set(req, caller);
      next();
    };
    // no bearer: the operator console's cookie session, with its CSRF token
    if (req.headers.authorization === undefined && deps.sessions) {
      callerFromConsoleSession(deps.sessions, { cookie: req.headers.cookie, csrf: req.headers['x-csrf-token'] }).then((auth) => {
        if (auth.ok) {
          admit(auth.caller);
          return;
        }
        const hinted = auth.status === 401 ? deps.firstTokenHint?.() : undefined;
        return Promise.resolve(hinted).then((hint) => {
          const message = hint ? `${auth.message}. ${hint}` : auth.message;
          res.status(auth.status).set(unauthorizedHeaders).send(JSON.stringify({ errors: [{ message, extensions: { code: auth.status === 401 ? 'UNAUTHENTICATED' : 'FORBIDDEN' } }] }));
        });
      }).catch(next);
      return;
    }
    deps.tokens.authenticate(bearerSecret(req.headers.authorization)).then((caller) => {
      if (caller) admit(caller);
      else unauthorizedJson().then((body) => res.status(401).set(unauthorizedHeaders).send(body), next);
    }, next);
  });
  router.use(express.json({ limit: deps.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES, type: ['application/json', 'application/*+json'] }));
  router.use((req, res, next) => {
    yoga(req, res, { req, res }).catch(next);
  });
  return { middleware: router, yoga };
}
