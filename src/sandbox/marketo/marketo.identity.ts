// The identity endpoint (client credentials): Marketo hands out the same token until it expires,
// with its remaining lifetime (reference marketo §1).
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import type { MarketoSim } from './marketo.state.ts';

export function handleIdentity(sim: MarketoSim, req: Request, res: Response): void {
  sim.counters.identity++;
  const params = new URL(req.originalUrl, 'http://simulator.invalid').searchParams;
  if (params.get('grant_type') !== 'client_credentials') {
    res.status(400).json({ error: 'unsupported_grant_type', error_description: 'Unsupported grant type' });
    return;
  }
  if (params.get('client_id') !== sim.clientId || params.get('client_secret') !== sim.clientSecret) {
    res.status(401).json({ error: 'invalid_client', error_description: 'Bad client credentials' });
    return;
  }
  const at = sim.now();
  let existing = sim.currentToken === undefined ? undefined : sim.tokens.get(sim.currentToken);
  if (!existing || existing.expiresAt - at < 1000 || sim.currentToken === undefined) {
    sim.currentToken = `${randomUUID()}:sim`;
    existing = { expiresAt: at + sim.tokenTtlMs };
    sim.tokens.set(sim.currentToken, existing);
  }
  res.status(200).json({
    access_token: sim.currentToken,
    token_type: 'bearer',
    expires_in: Math.floor((existing.expiresAt - at) / 1000),
    scope: sim.apiUser,
  });
}
