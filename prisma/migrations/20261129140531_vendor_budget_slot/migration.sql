-- CreateTable
CREATE TABLE "vendor_budget_slot" (
    "vendor" TEXT NOT NULL,
    "slot_start" BIGINT NOT NULL,
    "used" INTEGER NOT NULL,

    CONSTRAINT "vendor_budget_slot_pkey" PRIMARY KEY ("vendor","slot_start")
);
