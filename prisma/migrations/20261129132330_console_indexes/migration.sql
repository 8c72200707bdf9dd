-- CreateIndex
CREATE INDEX "activity_linkId_id_idx" ON "activity"("linkId", "id" DESC);

-- CreateIndex
CREATE INDEX "change_event_linkId_idx" ON "change_event"("linkId");


-- Find a person by email in the console: the snapshot's canonical email is lower-cased already.
-- (An expression index: Prisma's schema cannot express it, so it lives here only.)
CREATE INDEX "sync_link_snapshot_email_idx" ON "sync_link" (("snapshot"->>'email'));

-- The work queue's counts and oldest waiting age (WHERE status <> 'DONE') read only the open
-- events, not the millions of done ones. (A partial index: also beyond Prisma's schema.)
CREATE INDEX "change_event_open_idx" ON "change_event" ("status", "receivedAt") WHERE "status" <> 'DONE';

-- Throughput and latency over the last hours (and the last hour's count): the done events of the
-- window, read from the index alone (source, origin and receivedAt ride along).
CREATE INDEX "change_event_done_idx" ON "change_event" ("completedAt") INCLUDE ("source", "origin", "receivedAt") WHERE "status" = 'DONE';

-- CreateIndex
CREATE INDEX "sync_link_dynamicsEntity_id_idx" ON "sync_link"("dynamicsEntity", "id");
