-- CreateTable
CREATE TABLE "record_lock" (
    "key" TEXT NOT NULL,
    "owner" TEXT NOT NULL,
    "expiresAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "record_lock_pkey" PRIMARY KEY ("key")
);
