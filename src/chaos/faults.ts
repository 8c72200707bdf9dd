import type { Rng } from './model.ts';
import { FRONT_ANSWER_HEADER } from './replicas.ts';
import type { World } from './world.ts';

// Fault injection: each round draws vendor faults (rate limits, 5xx, hangs, revoked tokens, network
// drops) and replays some Dataverse deliveries, which must be recognised as duplicates.

export interface FaultCounters {
  faultsInjected: number;
  webhooksReplayed: number;
  webhooksRefused: number;
  acceptedEventIds: Set<string>;
  problems: string[];
}

export function injectFaults(world: World, rng: Rng, counters: FaultCounters): string[] {
  const { mkto, dv } = world;
  const injected: string[] = [];
  const add = (label: string, apply: () => void) => {
    apply();
    injected.push(label);
    counters.faultsInjected++;
  };
  if (rng.chance(0.6)) add('Marketo 606 storm', () => mkto.injectFault({ type: 'code', code: '606', times: rng.int(3, 12) }));
  if (rng.chance(0.5)) add('Marketo 615 storm', () => mkto.injectFault({ type: 'code', code: '615', times: rng.int(2, 8) }));
  if (rng.chance(0.4)) add('Marketo 5xx burst', () => mkto.injectFault({ type: 'http', status: rng.pick([500, 502, 503]), times: rng.int(2, 6) }));
  if (rng.chance(0.3)) add('Marketo hangs past the client timeout', () => mkto.injectFault({ type: 'hang', times: rng.int(1, 2) }));
  if (rng.chance(0.4)) add('Marketo tokens revoked', () => mkto.revokeTokens());
  if (rng.chance(0.6)) add('Dataverse 429 storm with Retry-After', () => dv.injectFault({ kind: 'rate_limit', count: rng.int(2, 8), retryAfterSeconds: rng.int(1, 2) }));
  if (rng.chance(0.5)) add('Dataverse 5xx burst', () => dv.injectFault({ kind: 'server_error', count: rng.int(2, 6), status: rng.pick([500, 502, 503, 504] as const) }));
  if (rng.chance(0.3)) add('Dataverse slower than the client timeout', () => dv.injectFault({ kind: 'latency', count: rng.int(1, 2), ms: 2_500 }));
  if (rng.chance(0.3)) add('Dataverse network drop', () => dv.injectFault({ kind: 'network', count: rng.int(1, 3) }));
  if (rng.chance(0.4)) add('Dataverse access tokens expired', () => dv.expireAccessTokens());
  return injected;
}

/** Dataverse's own retry and a replay: the same delivery sent again must change nothing. */
export async function replayDeliveries(world: World, rng: Rng, since: number, counters: FaultCounters): Promise<void> {
  const deliveries = world.dv.webhookDeliveries().slice(since).filter((d) => d.status !== null && d.status >= 200 && d.status < 300);
  for (const delivery of deliveries) {
    if (!rng.chance(0.25)) continue;
    try {
      const response = await fetch(delivery.url, { method: 'POST', headers: delivery.headers, body: delivery.body, signal: AbortSignal.timeout(10_000) });
      if (response.headers.has(FRONT_ANSWER_HEADER)) {
        // no replica was there to answer (a kill or restart): refused, not the service's 5xx
        counters.webhooksRefused++;
        continue;
      }
      const json = (await response.json().catch(() => ({}))) as Record<string, unknown>;
      counters.webhooksReplayed++;
      if (response.status >= 500) counters.problems.push(`a replayed Dataverse delivery answered ${response.status}`);
      else if (typeof json['eventId'] === 'string') counters.acceptedEventIds.add(json['eventId']);
      if (json['status'] === 'queued') counters.problems.push(`a replayed Dataverse delivery was queued again instead of recognised as a duplicate (${delivery.entity} ${delivery.id})`);
    } catch {
      counters.webhooksRefused++;
    }
  }
}
