-- CreateEnum
CREATE TYPE "ActivityState" AS ENUM ('PENDING', 'FINAL', 'SUPERSEDED');

-- AlterTable
ALTER TABLE "activity" ADD COLUMN     "state" "ActivityState" NOT NULL DEFAULT 'FINAL';

-- AlterTable
ALTER TABLE "sync_link" ADD COLUMN     "revision" INTEGER NOT NULL DEFAULT 0;

-- CreateIndex
CREATE INDEX "activity_linkId_state_idx" ON "activity"("linkId", "state");
