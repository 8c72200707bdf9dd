// The Entra ID v2 token endpoint, client credentials only: what the sync's Dataverse client signs
// in with. Errors carry AADSTS codes as Entra ID words them.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import type { DataverseSimulatorState } from './dataverse.state.ts';

function aadError(state: DataverseSimulatorState, res: Response, status: number, error: string, code: number, description: string): void {
  const traceId = randomUUID();
  const correlationId = randomUUID();
  const timestamp = new Date(state.now()).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  res.status(status).json({
    error,
    error_description: `AADSTS${code}: ${description} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
    error_codes: [code],
    timestamp,
    trace_id: traceId,
    correlation_id: correlationId,
    error_uri: `https://login.microsoftonline.com/error?code=${code}`,
  });
}

/** Why a token request is refused, as [status, error, AADSTS code, description]; undefined when it is good. */
function refusal(state: DataverseSimulatorState, req: Request, tenant: string, body: Record<string, string | undefined>): [number, string, number, string] | undefined {
  const { config } = state;
  if (tenant !== config.tenantId) {
    return [400, 'invalid_request', 90002, `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`];
  }
  if (!req.is('application/x-www-form-urlencoded')) return [400, 'invalid_request', 900144, "The request body must contain the following parameter: 'grant_type'."];
  if (body.grant_type !== 'client_credentials') return [400, 'unsupported_grant_type', 70003, `The app requested an unsupported grant type '${body.grant_type ?? ''}'.`];
  if (body.client_id !== config.clientId) {
    return [400, 'unauthorized_client', 700016, `Application with identifier '${body.client_id ?? ''}' was not found in the directory '${tenant}'.`];
  }
  if (body.client_secret !== config.clientSecret) {
    return [401, 'invalid_client', 7000215, 'Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.'];
  }
  const origin = state.baseUrl || `${req.protocol}://${req.get('host') ?? ''}`;
  if (body.scope !== `${origin}/.default`) {
    return [400, 'invalid_scope', 70011, `The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid: '${body.scope ?? ''}'. Expected '${origin}/.default'.`];
  }
  return undefined;
}

/** POST /{tenant}/oauth2/v2.0/token: mints a bearer token for the application user. */
export function issueToken(state: DataverseSimulatorState, req: Request, res: Response): void {
  const { config } = state;
  const body = (req.body ?? {}) as Record<string, string | undefined>;
  const refused = refusal(state, req, String(req.params.tenant), body);
  if (refused) {
    aadError(state, res, ...refused);
    return;
  }
  const nowMs = state.now();
  for (const [token, info] of state.tokens) if (info.expiresAt <= nowMs) state.tokens.delete(token);
  const accessToken = `eyJ0eXAiOiJKV1QiLCJzaW0iOnRydWV9.${randomBytes(32).toString('base64url')}`;
  state.tokens.set(accessToken, { userId: config.syncUserId, expiresAt: nowMs + config.tokenLifetimeSeconds * 1000 });
  res.status(200).json({
    token_type: 'Bearer',
    expires_in: config.tokenLifetimeSeconds,
    ext_expires_in: config.tokenLifetimeSeconds,
    access_token: accessToken,
  });
}
