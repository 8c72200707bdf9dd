import type { GraphQLContext } from './context.ts';

/**
 * Live reads spend Marketo's quota, which every integration of the instance shares: each one
 * counts against the caller's token (VENDOR_READS_PER_TOKEN_PER_MIN), so a read token paging
 * through fieldLineage cannot drain it. Past the limit the rows say so instead of reading.
 */
export async function vendorReadAllowed(ctx: GraphQLContext): Promise<{ ok: true } | { ok: false; message: string }> {
  const decision = ctx.deps.vendorReads ? await ctx.deps.vendorReads.take(`vendor-read:${ctx.caller.tokenId}`) : undefined;
  if (!decision || decision.allowed) return { ok: true };
  return { ok: false, message: `this token's live reads of Marketo and Dynamics are used up for now (VENDOR_READS_PER_TOKEN_PER_MIN); try again in ${decision.retryAfterSeconds} s` };
}
