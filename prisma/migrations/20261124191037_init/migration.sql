-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateEnum
CREATE TYPE "DynamicsEntity" AS ENUM ('LEAD', 'CONTACT');

-- CreateEnum
CREATE TYPE "LinkStatus" AS ENUM ('ACTIVE', 'FILTERED', 'DELETED_IN_DYNAMICS', 'DELETED_IN_MARKETO');

-- CreateEnum
CREATE TYPE "ChangeSource" AS ENUM ('MARKETO', 'DYNAMICS', 'OPERATOR');

-- CreateEnum
CREATE TYPE "ChangeOrigin" AS ENUM ('WEBHOOK', 'SWEEP', 'FLOW_ACTION', 'OPERATOR');

-- CreateEnum
CREATE TYPE "ChangeEventStatus" AS ENUM ('PENDING', 'PROCESSING', 'DONE', 'FAILED', 'DEAD');

-- CreateEnum
CREATE TYPE "ActivityType" AS ENUM ('LINKED', 'CREATED_IN_DYNAMICS', 'CREATED_IN_MARKETO', 'UPDATED_IN_DYNAMICS', 'UPDATED_IN_MARKETO', 'COLLISION_RESOLVED', 'VALIDATION_REJECTED', 'FIELD_SKIPPED', 'SYNC_FILTERED', 'DELETED_IN_DYNAMICS', 'DELETED_IN_MARKETO', 'LINK_MOVED', 'SYNC_FAILED', 'EVENT_DEAD');

-- CreateEnum
CREATE TYPE "SyncDirection" AS ENUM ('BOTH', 'MARKETO_TO_DYNAMICS', 'DYNAMICS_TO_MARKETO');

-- CreateEnum
CREATE TYPE "SyncSide" AS ENUM ('MARKETO', 'DYNAMICS');

-- CreateEnum
CREATE TYPE "SyncRunStatus" AS ENUM ('RUNNING', 'SUCCEEDED', 'FAILED', 'STOPPED');

-- CreateTable
CREATE TABLE "sync_link" (
    "id" UUID NOT NULL,
    "marketoId" INTEGER NOT NULL,
    "dynamicsEntity" "DynamicsEntity" NOT NULL,
    "dynamicsId" UUID NOT NULL,
    "status" "LinkStatus" NOT NULL DEFAULT 'ACTIVE',
    "snapshot" JSONB NOT NULL DEFAULT '{}',
    "fieldOrigins" JSONB NOT NULL DEFAULT '{}',
    "rejectedValues" JSONB NOT NULL DEFAULT '{}',
    "marketoVersion" TEXT,
    "dynamicsVersion" TEXT,
    "dynamicsEtag" TEXT,
    "lastSyncedAt" TIMESTAMPTZ(3),
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "sync_link_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "change_event" (
    "id" UUID NOT NULL,
    "source" "ChangeSource" NOT NULL,
    "origin" "ChangeOrigin" NOT NULL,
    "operation" TEXT NOT NULL,
    "marketoId" INTEGER,
    "dynamicsEntity" "DynamicsEntity",
    "dynamicsId" UUID,
    "linkId" UUID,
    "payload" JSONB NOT NULL DEFAULT '{}',
    "dedupeKey" TEXT NOT NULL,
    "status" "ChangeEventStatus" NOT NULL DEFAULT 'PENDING',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "nextAttemptAt" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "leaseOwner" TEXT,
    "lastError" TEXT,
    "receivedAt" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completedAt" TIMESTAMPTZ(3),
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "change_event_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "activity" (
    "id" BIGSERIAL NOT NULL,
    "type" "ActivityType" NOT NULL,
    "linkId" UUID,
    "marketoId" INTEGER,
    "dynamicsEntity" "DynamicsEntity",
    "dynamicsId" UUID,
    "fields" JSONB NOT NULL DEFAULT '[]',
    "message" TEXT,
    "changeEventId" UUID,
    "occurredAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "activity_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "field_mapping" (
    "id" UUID NOT NULL,
    "entity" "DynamicsEntity" NOT NULL,
    "canonicalField" TEXT NOT NULL,
    "marketoField" TEXT NOT NULL,
    "dynamicsAttribute" TEXT NOT NULL,
    "direction" "SyncDirection" NOT NULL DEFAULT 'BOTH',
    "collisionWinner" "SyncSide",
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "valueMap" JSONB,
    "access" JSONB,
    "accessCheckedAt" TIMESTAMPTZ(3),
    "backfillRequestedAt" TIMESTAMPTZ(3),
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "field_mapping_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "sync_cursor" (
    "system" "SyncSide" NOT NULL,
    "scope" TEXT NOT NULL,
    "token" TEXT,
    "watermark" TIMESTAMPTZ(3),
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "sync_cursor_pkey" PRIMARY KEY ("system","scope")
);

-- CreateTable
CREATE TABLE "sync_run" (
    "id" UUID NOT NULL,
    "trigger" TEXT NOT NULL,
    "status" "SyncRunStatus" NOT NULL DEFAULT 'RUNNING',
    "owner" TEXT NOT NULL,
    "startedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finishedAt" TIMESTAMPTZ(3),
    "counts" JSONB NOT NULL DEFAULT '{}',
    "notes" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "error" TEXT,

    CONSTRAINT "sync_run_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "scheduler_lease" (
    "key" TEXT NOT NULL,
    "owner" TEXT NOT NULL,
    "acquiredAt" TIMESTAMPTZ(3) NOT NULL,
    "expiresAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "scheduler_lease_pkey" PRIMARY KEY ("key")
);

-- CreateTable
CREATE TABLE "service_setting" (
    "key" TEXT NOT NULL,
    "value" TEXT NOT NULL,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "service_setting_pkey" PRIMARY KEY ("key")
);

-- CreateIndex
CREATE UNIQUE INDEX "sync_link_marketoId_key" ON "sync_link"("marketoId");

-- CreateIndex
CREATE INDEX "sync_link_status_updatedAt_idx" ON "sync_link"("status", "updatedAt");

-- CreateIndex
CREATE UNIQUE INDEX "sync_link_dynamicsEntity_dynamicsId_key" ON "sync_link"("dynamicsEntity", "dynamicsId");

-- CreateIndex
CREATE UNIQUE INDEX "change_event_dedupeKey_key" ON "change_event"("dedupeKey");

-- CreateIndex
CREATE INDEX "change_event_status_nextAttemptAt_idx" ON "change_event"("status", "nextAttemptAt");

-- CreateIndex
CREATE INDEX "change_event_marketoId_idx" ON "change_event"("marketoId");

-- CreateIndex
CREATE INDEX "change_event_dynamicsId_idx" ON "change_event"("dynamicsId");

-- CreateIndex
CREATE INDEX "change_event_receivedAt_idx" ON "change_event"("receivedAt");

-- CreateIndex
CREATE INDEX "activity_marketoId_id_idx" ON "activity"("marketoId", "id" DESC);

-- CreateIndex
CREATE INDEX "activity_dynamicsId_id_idx" ON "activity"("dynamicsId", "id" DESC);

-- CreateIndex
CREATE INDEX "activity_type_id_idx" ON "activity"("type", "id" DESC);

-- CreateIndex
CREATE INDEX "activity_occurredAt_idx" ON "activity"("occurredAt");

-- CreateIndex
CREATE UNIQUE INDEX "field_mapping_entity_canonicalField_key" ON "field_mapping"("entity", "canonicalField");

-- CreateIndex
CREATE UNIQUE INDEX "field_mapping_entity_dynamicsAttribute_key" ON "field_mapping"("entity", "dynamicsAttribute");

-- CreateIndex
CREATE INDEX "sync_run_startedAt_idx" ON "sync_run"("startedAt" DESC);

-- AddForeignKey
ALTER TABLE "change_event" ADD CONSTRAINT "change_event_linkId_fkey" FOREIGN KEY ("linkId") REFERENCES "sync_link"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "activity" ADD CONSTRAINT "activity_linkId_fkey" FOREIGN KEY ("linkId") REFERENCES "sync_link"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "activity" ADD CONSTRAINT "activity_changeEventId_fkey" FOREIGN KEY ("changeEventId") REFERENCES "change_event"("id") ON DELETE SET NULL ON UPDATE CASCADE;
