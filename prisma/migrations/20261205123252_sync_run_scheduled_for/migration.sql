-- A scheduled sweep records the cron tick it ran for, so that one run per tick across replicas
-- is a fact in the table, not an inference from start times.

-- AlterTable
ALTER TABLE "sync_run" ADD COLUMN     "scheduledFor" TIMESTAMPTZ(3);
