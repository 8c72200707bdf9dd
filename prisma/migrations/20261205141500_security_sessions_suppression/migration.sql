-- CreateEnum
CREATE TYPE "SuppressedKind" AS ENUM ('EMAIL', 'MARKETO_ID', 'DYNAMICS_ID');

-- AlterEnum
ALTER TYPE "ApiTokenScope" ADD VALUE 'ADMIN';

-- AlterTable
ALTER TABLE "api_token" ADD COLUMN     "expiresAt" TIMESTAMPTZ(3);

-- CreateTable
CREATE TABLE "console_session" (
    "secretHash" TEXT NOT NULL,
    "tokenId" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expiresAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "console_session_pkey" PRIMARY KEY ("secretHash")
);

-- CreateTable
CREATE TABLE "rate_window" (
    "key" TEXT NOT NULL,
    "windowStart" TIMESTAMPTZ(3) NOT NULL,
    "count" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "rate_window_pkey" PRIMARY KEY ("key","windowStart")
);

-- CreateTable
CREATE TABLE "suppression" (
    "hash" TEXT NOT NULL,
    "kind" "SuppressedKind" NOT NULL,
    "erasureId" UUID NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "suppression_pkey" PRIMARY KEY ("hash")
);

-- CreateIndex
CREATE INDEX "console_session_tokenId_idx" ON "console_session"("tokenId");

-- CreateIndex
CREATE INDEX "console_session_expiresAt_idx" ON "console_session"("expiresAt");

-- CreateIndex
CREATE INDEX "rate_window_windowStart_idx" ON "rate_window"("windowStart");

-- CreateIndex
CREATE INDEX "suppression_erasureId_idx" ON "suppression"("erasureId");

-- Console sessions are rows now (console_session): the signing key stored in plain text beside
-- the token hashes signed nothing any more, and a copy of it in a backup must not outlive it
DELETE FROM "service_setting" WHERE "key" = 'console.sessionSecret';
