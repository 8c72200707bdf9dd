// The Marketo REST simulator: an Express app of the identity endpoint, the REST gate in front of one
// route table per resource, and the admin API.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { createAdmin, createAdminRouter, type MarketoSimulatorAdmin } from './marketo.admin.ts';
import { handleIdentity } from './marketo.identity.ts';
import { handleRest } from './marketo.rest.ts';
import { createMarketoSim, type MarketoSim } from './marketo.state.ts';
import type { MarketoSimulatorOptions, Route } from './marketo.types.ts';
import { activityRoutes } from './api/activities.ts';
import { leadRoutes } from './api/leads.ts';
import { listRoutes } from './api/lists.ts';
import { isObject } from './api/params.ts';
import { statsRoutes } from './api/stats.ts';

/** Every REST resource; a new one is a module exporting its `Route` table, added here. */
function restRoutes(sim: MarketoSim): Route[] {
  return [...listRoutes(sim), ...leadRoutes(sim), ...activityRoutes(sim), ...statsRoutes(sim)];
}

export function createMarketoSimulatorApp(options: MarketoSimulatorOptions = {}) {
  const sim = createMarketoSim(options);
  const routes = restRoutes(sim);
  const admin = createAdmin(sim);
  const app = express();
  app.disable('x-powered-by');
  app.all('/identity/oauth/token', (req: Request, res: Response) => handleIdentity(sim, req, res));
  app.use('/rest', express.raw({ type: () => true, limit: '1mb' }), (req: Request, res: Response, next: NextFunction) => {
    handleRest(sim, routes, req, res).catch(next);
  });
  if (options.adminPrefix !== false) app.use(options.adminPrefix ?? '/__admin', createAdminRouter(admin));
  app.use((error: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    const status = isObject(error) && typeof error['status'] === 'number' ? error['status'] : 500;
    res.status(status).type('text/html').send(`<html><body><h1>${status}</h1></body></html>`);
  });

  return { app, admin };
}

export type StartedMarketoSimulator = {
  url: string;
  clientId: string;
  clientSecret: string;
  admin: MarketoSimulatorAdmin;
  close(): Promise<void>;
};

export async function startMarketoSimulator(options: MarketoSimulatorOptions & { port?: number; host?: string } = {}): Promise<StartedMarketoSimulator> {
  const { app, admin } = createMarketoSimulatorApp(options);
  const host = options.host ?? '127.0.0.1';
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(options.port ?? 0, host, (error?: Error) => (error ? reject(error) : resolve(s)));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    clientId: admin.clientId,
    clientSecret: admin.clientSecret,
    admin,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
