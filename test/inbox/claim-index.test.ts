import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLAIMABLE_STATUSES } from '../../src/inbox/inbox.ts';
import { projectPaths } from '../../src/paths.ts';

// PostgreSQL reads a partial index only for a condition it can prove implies the index's own: if the
// transitions table let a claim take another status, the claim would quietly go back to sorting the
// whole backlog.
describe('the claim index', () => {
  it('holds exactly the statuses a claim takes', async () => {
    const sql = await readFile(join(projectPaths().migrationsDir, '20261130050000_inbox_partial_indexes', 'migration.sql'), 'utf8');
    const predicate = /CREATE INDEX "change_event_claim_idx"[^;]*WHERE "status" IN \(([^)]*)\)/.exec(sql)?.[1];
    expect(predicate?.split(',').map((s) => s.trim().replace(/'/g, '')).sort()).toEqual([...CLAIMABLE_STATUSES].sort());
  });
});
