// The daily API usage of the subscription (stats/usage): what the quota counted today.
import { DAY_MS, rollDay, type MarketoSim } from '../marketo.state.ts';
import type { Route } from '../marketo.types.ts';

export function statsRoutes(sim: MarketoSim): Route[] {
  return [
    {
      endpoint: 'stats.usage',
      pattern: /^\/rest\/v1\/stats\/usage\.json$/,
      methods: {
        GET: () => {
          rollDay(sim);
          const date = new Date(sim.dailyDay * DAY_MS).toISOString().slice(0, 10);
          return { result: [{ date, total: sim.dailyUsed, users: [{ userId: sim.apiUser, count: sim.dailyUsed }] }] };
        },
      },
    },
  ];
}
