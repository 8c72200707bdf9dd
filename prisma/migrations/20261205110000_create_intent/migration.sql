-- Creates are journaled before they are sent (issue 24): a crash between a vendor's create and
-- the link leaves an intent that the next holder of the source record finishes, instead of an
-- orphan record or a second one.

-- CreateEnum
CREATE TYPE "CreateDirection" AS ENUM ('TO_DYNAMICS', 'TO_MARKETO');

-- CreateEnum
CREATE TYPE "CreateIntentState" AS ENUM ('OPEN', 'DONE', 'FAILED');

-- CreateTable
CREATE TABLE "create_intent" (
    "id" UUID NOT NULL,
    "direction" "CreateDirection" NOT NULL,
    "state" "CreateIntentState" NOT NULL DEFAULT 'OPEN',
    "marketoId" INTEGER,
    "dynamicsEntity" "DynamicsEntity" NOT NULL,
    "dynamicsId" UUID NOT NULL,
    "email" TEXT,
    "source" JSONB NOT NULL,
    "sent" JSONB NOT NULL,
    "assignTo" TEXT,
    "changeEventId" UUID,
    "note" TEXT,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "settledAt" TIMESTAMPTZ(3),

    CONSTRAINT "create_intent_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "create_intent_dynamicsId_idx" ON "create_intent"("dynamicsId");

-- CreateIndex
CREATE INDEX "create_intent_marketoId_idx" ON "create_intent"("marketoId");

-- CreateIndex
CREATE INDEX "create_intent_state_createdAt_idx" ON "create_intent"("state", "createdAt");
