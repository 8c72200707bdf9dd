import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCampaign } from '../../src/chaos/campaign.ts';
import { postgresUrl } from '../support/database.ts';

// The fault campaign of `npm run chaos`, shortened for CI: three rounds of edits on both simulators
// under injected faults, one SIGKILL mid-batch with webhooks failing while the service is down,
// then one sweep. Nothing may be lost, duplicated or resolved against the collision rule.

describe('the fault campaign, shortened', () => {
  it('loses nothing, duplicates nothing and keeps the collision rule through faults and a SIGKILL', async () => {
    const figures = await runCampaign({
      seed: 7,
      rounds: 3,
      pairsPerKind: 3,
      editsPerRound: 8,
      kills: 1,
      databaseUrl: postgresUrl(),
      projectRoot: fileURLToPath(new URL('../..', import.meta.url)),
      baseEnv: process.env,
      log: () => undefined,
    });
    const summary = JSON.stringify({ ...figures, problems: figures.problems.slice(0, 20) }, null, 2);
    expect(figures.problems, summary).toEqual([]);
    expect(figures.kills, summary).toBe(1);
    expect(figures.edits, summary).toBeGreaterThan(20);
    expect(figures.pairsChecked, summary).toBeGreaterThan(5);
    expect({ lost: figures.lost, mismatches: figures.mismatches, duplicates: figures.duplicates, collisionViolations: figures.collisionViolations }, summary).toEqual({
      lost: 0,
      mismatches: 0,
      duplicates: 0,
      collisionViolations: 0,
    });
  }, 120_000);
});
