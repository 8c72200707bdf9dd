-- CreateEnum
CREATE TYPE "ApiTokenScope" AS ENUM ('READ', 'OPERATE');

-- CreateEnum
CREATE TYPE "AuditOutcome" AS ENUM ('OK', 'REFUSED', 'FORBIDDEN', 'FAILED');

-- CreateTable
CREATE TABLE "api_token" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "scope" "ApiTokenScope" NOT NULL,
    "secretHash" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lastUsedAt" TIMESTAMPTZ(3),
    "revokedAt" TIMESTAMPTZ(3),

    CONSTRAINT "api_token_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_entry" (
    "id" UUID NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "action" TEXT NOT NULL,
    "tokenId" UUID,
    "tokenName" TEXT NOT NULL,
    "outcome" "AuditOutcome" NOT NULL,
    "detail" JSONB NOT NULL DEFAULT '{}',

    CONSTRAINT "audit_entry_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "api_token_secretHash_key" ON "api_token"("secretHash");

-- CreateIndex
CREATE INDEX "api_token_revokedAt_idx" ON "api_token"("revokedAt");

-- CreateIndex
CREATE INDEX "audit_entry_at_idx" ON "audit_entry"("at" DESC);

-- CreateIndex
CREATE INDEX "activity_changeEventId_idx" ON "activity"("changeEventId");

-- CreateIndex
CREATE INDEX "change_event_status_completedAt_idx" ON "change_event"("status", "completedAt");

-- CreateIndex
CREATE INDEX "sync_run_finishedAt_idx" ON "sync_run"("finishedAt");

-- The API token kept in clear by earlier versions (service_setting graphql.apiToken) becomes an
-- operate token stored as its SHA-256 digest only, and the clear copy is deleted.
INSERT INTO "api_token" ("id", "name", "scope", "secretHash")
SELECT gen_random_uuid(), 'migrated', 'OPERATE', encode(sha256(convert_to("value", 'UTF8')), 'hex')
  FROM "service_setting" WHERE "key" = 'graphql.apiToken'
ON CONFLICT ("secretHash") DO NOTHING;
DELETE FROM "service_setting" WHERE "key" = 'graphql.apiToken';
