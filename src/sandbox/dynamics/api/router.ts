// The Web API below /api/data/v9.x/: one route table per resource, tried in order. A new resource
// is a module exporting its routes, added to `routes` here.
import type { Request, Response } from 'express';
import type { WriteContext } from '../dataverse.types.ts';
import type { DataverseSimulatorState } from '../dataverse.state.ts';
import { apiBase, apiPath } from '../dataverse.wire.ts';
import { actionRoutes } from './actions.ts';
import { metadataRoutes } from './metadata.ts';
import { rowRoutes, unknownPath } from './rows.ts';
import { userRoutes } from './users.ts';
import { handlerFor, type ApiCall, type ApiRoute } from './route.ts';

const routes: readonly ApiRoute[] = [...userRoutes, ...metadataRoutes, ...actionRoutes, ...rowRoutes];

/**
 * Answers one Web API call (a single request or one operation of a $batch) and returns the endpoint
 * name its stats are counted under. A refusal throws a SimHttpError (or an ODataQueryError).
 */
export function handleApi(state: DataverseSimulatorState, req: Request, res: Response, ctx: WriteContext): string {
  const path = apiPath(req);
  for (const route of routes) {
    const match = route.pattern.exec(path);
    if (!match) continue;
    const call: ApiCall = { state, store: state.store, req, res, ctx, match, path, base: apiBase(state, req) };
    handlerFor(route, call)(call);
    return route.endpoint(call);
  }
  throw unknownPath(state.store, path);
}
