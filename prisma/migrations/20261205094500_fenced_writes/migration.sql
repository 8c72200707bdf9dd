-- Fenced writes (DESIGN "Production is several replicas"). A journaled write entry keeps the link
-- revision its plan was made from until its own commit clears it. Entries that still carry it
-- after the link moved on are the writes that may land late, which the next plan recognises.
ALTER TYPE "ActivityType" ADD VALUE 'STALE_WRITE_UNDONE';
ALTER TABLE "activity" ADD COLUMN "plannedRevision" INTEGER;
-- Only the few in-doubt entries are in it: a plan looks them up by link.
CREATE INDEX "activity_in_doubt_idx" ON "activity" ("linkId") WHERE "plannedRevision" IS NOT NULL;
