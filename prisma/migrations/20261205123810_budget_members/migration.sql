-- DropTable
DROP TABLE "vendor_budget_slot";

-- CreateTable
CREATE TABLE "budget_member" (
    "budget" TEXT NOT NULL,
    "member" TEXT NOT NULL,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "state" JSONB NOT NULL,

    CONSTRAINT "budget_member_pkey" PRIMARY KEY ("budget","member")
);
