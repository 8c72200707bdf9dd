// The Dataverse Web API simulator: an Express app of the token endpoint, the admin API and the Web
// API gate (authentication, injected faults, service protection) in front of the resource router.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { SimHttpError, type WriteContext } from './dataverse.types.ts';
import { ODataQueryError } from './odata-query.ts';
import { createAdmin, createAdminRouter, type DataverseSimulatorAdmin } from './dataverse.admin.ts';
import { admit, answerInjectedFault, loseAnswerIfWritten } from './dataverse.protection.ts';
import { createDataverseSimulatorState, type DataverseSimulatorOptions, type DataverseSimulatorState } from './dataverse.state.ts';
import { issueToken } from './dataverse.token.ts';
import { API_PREFIX, GUID, apiPath, isBatch, sendError } from './dataverse.wire.ts';
import { runBatch } from './api/batch.ts';
import { handleApi } from './api/router.ts';

function countCall(state: DataverseSimulatorState, endpoint: string, status: number): void {
  let c = state.counters.get(endpoint);
  if (!c) {
    c = { calls: 0, byStatus: {} };
    state.counters.set(endpoint, c);
  }
  c.calls += 1;
  c.byStatus[status] = (c.byStatus[status] ?? 0) + 1;
}

/** The user the bearer token was issued to; answers 401 and returns undefined when there is none. */
function authenticate(state: DataverseSimulatorState, req: Request, res: Response): string | undefined {
  const auth = req.get('authorization');
  const token = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
  const info = token === undefined ? undefined : state.tokens.get(token);
  if (info && info.expiresAt > state.now()) return info.userId;
  res.setHeader(
    'WWW-Authenticate',
    `Bearer authorization_uri=https://login.microsoftonline.com/${state.config.tenantId}/oauth2/authorize, resource_id=${state.baseUrl}`,
  );
  res.status(401).json({ error: { code: '', message: info ? 'Bearer token expired.' : 'Request is not authenticated (missing or invalid bearer token).' } });
  return undefined;
}

/**
 * What every Web API request passes before its resource runs: authentication, the URL length limit,
 * an injected fault, then service protection and the configured latency. Counts the request under
 * its endpoint when it finishes.
 */
function webApiGate(state: DataverseSimulatorState) {
  const { config } = state;
  return (req: Request, res: Response, next: NextFunction) => {
    if (!API_PREFIX.test(req.originalUrl)) {
      next('router');
      return;
    }
    res.setHeader('OData-Version', '4.0');
    let endpoint = `${req.method} ${apiPath(req).replace(new RegExp(GUID, 'g'), 'id')}`;
    res.on('finish', () => countCall(state, endpoint, res.statusCode));
    const userId = authenticate(state, req, res);
    if (userId === undefined) return;
    const run = () => {
      const refusal = admit(state, userId, res);
      if (refusal) {
        sendError(res, refusal);
        return;
      }
      res.on('close', () => state.inFlight.set(userId, (state.inFlight.get(userId) ?? 1) - 1));
      res.locals.userId = userId;
      res.locals.setEndpoint = (name: string) => {
        endpoint = `${req.method} ${name}`;
      };
      // a batch takes its time once its operations are known (see runBatch)
      const latency = isBatch(req) ? 0 : config.timing.latencyMs;
      if (latency > 0) setTimeout(next, latency);
      else next();
    };
    if (req.originalUrl.length > config.maxUrlLength) {
      res.status(414).json({ error: { code: '0x8006088e', message: `The request URL is longer than ${config.maxUrlLength} characters. Send long queries inside a $batch request.` } });
      return;
    }
    if (!answerInjectedFault(state, req, res, run)) run();
  };
}

/** Runs an admitted Web API request: a $batch, or one call through the resource router. */
function webApiHandler(state: DataverseSimulatorState) {
  return (req: Request, res: Response) => {
    const ctx: WriteContext = { userId: res.locals.userId as string, fullAccess: res.locals.userId !== state.config.syncUserId, remotePort: req.socket.remotePort };
    const setEndpoint = res.locals.setEndpoint as (n: string) => void;
    loseAnswerIfWritten(state, req, res);
    if (isBatch(req)) {
      setEndpoint('$batch');
      runBatch(state, req, res, ctx).catch((error: unknown) => {
        if (error instanceof SimHttpError) sendError(res, error);
        else sendError(res, new SimHttpError(500, '0x80040216', error instanceof Error ? error.message : String(error)));
      });
      return;
    }
    try {
      setEndpoint(handleApi(state, req, res, ctx));
    } catch (error) {
      if (error instanceof SimHttpError) sendError(res, error);
      else if (error instanceof ODataQueryError) sendError(res, new SimHttpError(400, error.code, error.message));
      else throw error;
    }
  };
}

function notFoundOrBroken(app: express.Express): void {
  app.use((req: Request, res: Response) => {
    res.status(404).json({ error: { code: '0x8006088a', message: `Resource not found for the segment '${req.path}'.` } });
  });
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = error as { type?: string; status?: number; message?: string };
    if (e.type === 'entity.parse.failed') {
      sendError(res, new SimHttpError(400, '0x80048d19', `Error identified in Payload provided by the user: the body is not valid JSON (${e.message ?? ''}).`));
      return;
    }
    if (e.type === 'entity.too.large') {
      sendError(res, new SimHttpError(413, '0x80048d19', 'Request entity too large.'));
      return;
    }
    res.status(500).json({ error: { code: '0x80040216', message: e.message ?? 'An unexpected error occurred.' } });
  });
}

export function createDataverseSimulatorApp(state: DataverseSimulatorState): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.post('/:tenant/oauth2/v2.0/token', express.urlencoded({ extended: false }), (req: Request, res: Response) => {
    res.on('finish', () => countCall(state, 'POST token', res.statusCode));
    issueToken(state, req, res);
  });
  // admin JSON API (demo mode)
  app.use('/__admin', express.json({ limit: '50mb' }), createAdminRouter(state));
  app.use(
    '/api/data',
    webApiGate(state),
    express.json({ limit: '16mb', type: ['application/json', 'application/*+json'] }),
    express.text({ limit: '64mb', type: 'multipart/mixed' }),
    webApiHandler(state),
  );
  notFoundOrBroken(app);
  return app;
}

export type DataverseSimulator = {
  /** environment URL (Web API under /api/data/v9.2/) */
  url: string;
  tokenUrl: string;
  tenantId: string;
  clientId: string;
  clientSecret: string;
  syncUserId: string;
  uiUserId: string;
  admin: DataverseSimulatorAdmin;
  close(): Promise<void>;
};

export async function startDataverseSimulator(options: DataverseSimulatorOptions = {}): Promise<DataverseSimulator> {
  const state = createDataverseSimulatorState(options);
  const app = createDataverseSimulatorApp(state);
  const host = options.host ?? '127.0.0.1';
  // Node refuses request lines over 16 KB by default; Dataverse takes URLs up to maxUrlLength
  const server = createServer({ maxHeaderSize: 2 * state.config.maxUrlLength + 16_384 }, app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  state.baseUrl = options.publicUrl?.replace(/\/+$/, '') ?? `http://${host}:${port}`;
  const admin = createAdmin(state);
  return {
    url: state.baseUrl,
    tokenUrl: `${state.baseUrl}/${state.config.tenantId}/oauth2/v2.0/token`,
    tenantId: state.config.tenantId,
    clientId: state.config.clientId,
    clientSecret: state.config.clientSecret,
    syncUserId: state.config.syncUserId,
    uiUserId: state.config.uiUserId,
    admin,
    async close() {
      await state.webhooks.flush();
      await new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}