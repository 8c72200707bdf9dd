-- Each event is written three times (stored, claimed, completed), and a write that changes its
-- status adds an entry to every index whose condition the new row meets. These two partial indexes
-- replace full ones, so each holds only the rows its readers look for. (Partial indexes are beyond
-- Prisma's schema, so they live here only.)

-- A claim takes the earliest due events in order (nextAttemptAt, receivedAt) among those it may
-- claim (PENDING, FAILED, and PROCESSING whose lease expired). On ("status", "nextAttemptAt") it
-- had to read and sort every due event of the three statuses to keep 30: 15 ms with 11,000
-- waiting, once per claim through a whole burst. This index hands them over in claim order, so a
-- claim reads about as many entries as it takes, and done or dead events are not in it.
-- CLAIMABLE_STATUSES in src/inbox/inbox.ts names the same statuses, and a test checks that they match.
CREATE INDEX "change_event_claim_idx" ON "change_event" ("nextAttemptAt", "receivedAt")
  WHERE "status" IN ('PENDING', 'FAILED', 'PROCESSING');
DROP INDEX IF EXISTS "change_event_status_nextAttemptAt_idx";

-- Retention deletes done events by age. Only done events need the entry, at their completion, not
-- also when they are stored and claimed. The expired-lease check at each claim reads the PROCESSING
-- events of change_event_open_idx ("status", "receivedAt") instead: a replica's in-flight events.
CREATE INDEX "change_event_done_at_idx" ON "change_event" ("completedAt") WHERE "status" = 'DONE';
DROP INDEX IF EXISTS "change_event_status_completedAt_idx";
