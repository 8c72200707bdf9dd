import { randomUUID } from 'node:crypto';
import express, { type Express, type RequestHandler, type Router } from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import { redactUrl, type Logger } from '../logger.ts';
import { errorHandler, HttpError, notFound } from './errors.ts';
import type { Health } from './health.ts';

export interface AppDeps {
  logger: Logger;
  health: Health;
  bodyLimitBytes: number;
  /** true once shutdown began: intake answers 503 so senders that retry (Dataverse) come back */
  draining: () => boolean;
  webhooks?: { marketo: Router; dynamics: Router };
  graphql?: RequestHandler;
  /**
   * true when this Authorization header carries a valid API token: /readyz shows its details, and
   * /metrics (when served here) answers, only to such callers
   */
  authorizeOps: (authorization: string | undefined) => Promise<boolean>;
  /** GET /metrics (with a token; `separateListener`: not here, METRICS_PORT serves it) and the webhook intake counter */
  metrics?: { handler: RequestHandler; intakeMiddleware: RequestHandler; separateListener?: boolean };
  /** the operator console at / (sign-in, shell, static modules) */
  console?: Router;
  /** Express "trust proxy" (TRUST_PROXY): behind a TLS proxy, req.secure and req.ip are the client's */
  trustProxy?: boolean | number | string;
}

/** GET /metrics alone, for a listener of its own (METRICS_PORT): keep that port on the internal network. */
export function createMetricsApp(handler: RequestHandler, logger: Logger): Express {
  const app = express();
  app.disable('x-powered-by');
  app.get('/metrics', handler);
  app.use(notFound);
  app.use(errorHandler(logger));
  return app;
}

/** Builds the HTTP app without listening, so tests drive it with supertest. */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', deps.trustProxy ?? false);

  app.use(
    pinoHttp({
      logger: deps.logger,
      genReqId: (req, res) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
        res.setHeader('x-request-id', id);
        return id;
      },
      serializers: {
        req: (req: { id: unknown; method: string; url: string }) => ({ id: req.id, method: req.method, url: redactUrl(req.url) }),
      },
      autoLogging: { ignore: (req) => ['/healthz', '/readyz', '/metrics'].includes(req.url ?? '') },
      customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info'),
    }),
  );

  // Security headers (helmet): nosniff, frame DENY, no-referrer, HSTS, a same-origin CSP, COOP/CORP.
  // The GraphiQL page (GET /graphql outside production) sets a CSP of its own (graphql/handler.ts:
  // its inline scripts by hash), so helmet's stays off it; everything else we serve is JSON or
  // same-origin HTML.
  const headerOptions = { frameguard: { action: 'deny' as const }, referrerPolicy: { policy: 'no-referrer' as const } };
  const securityHeaders = helmet(headerOptions);
  const graphiqlHeaders = helmet({ ...headerOptions, contentSecurityPolicy: false });
  app.use((req, res, next) => (req.method === 'GET' && req.path === '/graphql' ? graphiqlHeaders : securityHeaders)(req, res, next));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  // the status for anyone (load balancers); what is wrong (database, vendor error text) with a token
  app.get('/readyz', async (req, res) => {
    const [readiness, detailed] = await Promise.all([deps.health.readiness(), deps.authorizeOps(req.headers.authorization)]);
    res.status(readiness.status === 'unavailable' ? 503 : 200).json(detailed ? readiness : { status: readiness.status });
  });

  if (deps.metrics) {
    const { handler } = deps.metrics;
    // a scrape reads the shared database: not for anonymous callers
    if (!deps.metrics.separateListener) {
      app.get('/metrics', (req, res, next) => {
        deps.authorizeOps(req.headers.authorization).then((ok) => {
          if (ok) handler(req, res, next);
          else {
            res.setHeader('www-authenticate', 'Bearer realm="metrics"');
            next(new HttpError(401, 'unauthorized', 'GET /metrics needs Authorization: Bearer <API token> (or serve it on METRICS_PORT)'));
          }
        }, next);
      });
    }
    app.use('/webhooks', deps.metrics.intakeMiddleware);
  }

  app.use('/webhooks', (_req, res, next) => {
    if (deps.draining()) {
      res.setHeader('retry-after', '5');
      res.setHeader('connection', 'close');
      next(new HttpError(503, 'shutting_down', 'this replica is shutting down; retry shortly'));
      return;
    }
    next();
  });
  // yoga reads its own request bodies (with its own limits), so it comes before the JSON parser;
  // so do the webhooks, which check their secret before they parse a body (webhooks/auth.ts)
  if (deps.graphql) app.use('/graphql', deps.graphql);
  if (deps.webhooks) {
    app.use('/webhooks/marketo', deps.webhooks.marketo);
    app.use('/webhooks/dynamics', deps.webhooks.dynamics);
  }
  app.use(express.json({ limit: deps.bodyLimitBytes, type: ['application/json', 'application/*+json'] }));

  if (deps.console) app.use(deps.console);

  app.use(notFound);
  app.use(errorHandler(deps.logger));
  return app;
}
