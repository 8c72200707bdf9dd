// The shape of a resource's route table (see router.ts).
import type { Request, Response } from 'express';
import type { DataverseStore } from '../dataverse.store.ts';
import type { SimHttpError, WriteContext } from '../dataverse.types.ts';
import type { DataverseSimulatorState } from '../dataverse.state.ts';

/** One Web API call as a route's handler sees it. */
export type ApiCall = {
  state: DataverseSimulatorState;
  store: DataverseStore;
  req: Request;
  res: Response;
  ctx: WriteContext;
  /** the route's pattern matched against `path` */
  match: RegExpExecArray;
  /** below /api/data/v9.x/, decoded */
  path: string;
  /** the Web API root URL, ending in /api/data/v9.2/ */
  base: string;
};

export type ApiHandler = (call: ApiCall) => void;

export type ApiMethod = 'GET' | 'POST' | 'PATCH' | 'DELETE';

/** A resource's entry in the router: the handler answers; a refusal throws a SimHttpError. */
export type ApiRoute = {
  pattern: RegExp;
  /** the name the stats count a call under once it succeeded (a refused call keeps its path) */
  endpoint: (call: ApiCall) => string;
} & (
  | {
      methods: Partial<Record<ApiMethod, ApiHandler>>;
      /** the answer to a verb `methods` lacks */
      refuse: (call: ApiCall) => SimHttpError;
    }
  | {
      /** answers whatever the verb */
      anyMethod: ApiHandler;
    }
);

export function handlerFor(route: ApiRoute, call: ApiCall): ApiHandler {
  if ('anyMethod' in route) return route.anyMethod;
  const method = call.req.method;
  const handler = Object.hasOwn(route.methods, method) ? route.methods[method as ApiMethod] : undefined;
  if (!handler) throw route.refuse(call);
  return handler;
}
