-- The Update webhooks of the sync user's own writes to a record, kept on its Dynamics write
-- entries still in doubt: the only trace Dataverse gives of a write whose answer was lost

-- AlterTable
ALTER TABLE "activity" ADD COLUMN     "dynamicsEchoes" JSONB;
