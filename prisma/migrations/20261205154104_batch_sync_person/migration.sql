-- CreateEnum
CREATE TYPE "BatchSyncStatus" AS ENUM ('RUNNING', 'DONE', 'FAILED', 'CANCELLED');

-- CreateTable
CREATE TABLE "batch_sync" (
    "id" UUID NOT NULL,
    "listId" INTEGER NOT NULL,
    "dynamicsEntity" "DynamicsEntity" NOT NULL,
    "assignTo" TEXT,
    "status" "BatchSyncStatus" NOT NULL DEFAULT 'RUNNING',
    "cursor" TEXT,
    "pages" INTEGER NOT NULL DEFAULT 0,
    "persons" INTEGER NOT NULL DEFAULT 0,
    "created" INTEGER NOT NULL DEFAULT 0,
    "linked" INTEGER NOT NULL DEFAULT 0,
    "refused" INTEGER NOT NULL DEFAULT 0,
    "error" TEXT,
    "requestedBy" TEXT NOT NULL,
    "leaseOwner" TEXT,
    "leaseExpiresAt" TIMESTAMPTZ(3),
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,
    "finishedAt" TIMESTAMPTZ(3),

    CONSTRAINT "batch_sync_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "batch_sync_item" (
    "batchId" UUID NOT NULL,
    "marketoId" INTEGER NOT NULL,
    "outcome" TEXT NOT NULL,
    "dynamicsId" UUID,
    "message" TEXT,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "batch_sync_item_pkey" PRIMARY KEY ("batchId","marketoId")
);

-- CreateIndex
CREATE INDEX "batch_sync_status_createdAt_idx" ON "batch_sync"("status", "createdAt");

-- CreateIndex
CREATE INDEX "batch_sync_item_batchId_outcome_idx" ON "batch_sync_item"("batchId", "outcome");

-- AddForeignKey
ALTER TABLE "batch_sync_item" ADD CONSTRAINT "batch_sync_item_batchId_fkey" FOREIGN KEY ("batchId") REFERENCES "batch_sync"("id") ON DELETE CASCADE ON UPDATE CASCADE;
