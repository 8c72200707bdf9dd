import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCampaign, summarise, type CampaignOptions } from '../../src/chaos/campaign.ts';
import { RACES } from '../../src/chaos/races.ts';
import { postgresUrl } from '../support/database.ts';

// The fault campaign of `npm run chaos`, shortened for CI: two rounds of edits on both simulators
// under injected faults, the races of issue 12 (edits right after a create on either side, during
// slow writes, after leases expired mid-retry, a plug-in rewriting the sync's write), one SIGKILL
// mid-batch, then one sweep. The intent oracle must find every edit on both sides, superseded, or
// the recorded loser of a genuine collision; nothing may be lost from the inbox or duplicated.

const ciCampaign = (databaseUrl: string | undefined): CampaignOptions => ({
  seed: 7,
  rounds: 2,
  pairsPerKind: 3,
  editsPerRound: 8,
  kills: 1,
  databaseUrl,
  projectRoot: fileURLToPath(new URL('../..', import.meta.url)),
  baseEnv: process.env,
  log: () => undefined,
});

const databases = [{ name: 'PGlite', url: undefined as string | undefined }, ...(postgresUrl() ? [{ name: 'PostgreSQL', url: postgresUrl() }] : [])];

// The campaigns run side by side: each has its own simulators, service process and database, and
// each spends most of its time waiting on leases, throttling and restarts.
describe.concurrent.each(databases)('the fault campaign with its intent oracle, shortened, on $name', ({ url }) => {
  it('keeps every edit through the races, the faults and a SIGKILL: on both sides, superseded, or a recorded genuine-collision loser', async () => {
    const figures = await runCampaign(ciCampaign(url));
    const summary = summarise(figures).slice(0, 60).join('\n');
    expect(figures.violations, summary).toEqual([]);
    expect(figures.problems, summary).toEqual([]);
    expect({ lost: figures.lost, duplicates: figures.duplicates, fakeCollisions: figures.collisionsFake }, summary).toEqual({ lost: 0, duplicates: 0, fakeCollisions: 0 });
    // the campaign did what it claims: every race ran, and the oracle judged real work
    for (const race of Object.values(RACES)) expect(figures.races[race] ?? 0, `${race}\n${summary}`).toBeGreaterThan(0);
    expect(figures.kills, summary).toBe(1);
    expect(figures.verdicts['both-sides'], summary).toBeGreaterThan(20);
  }, 600_000);
});
