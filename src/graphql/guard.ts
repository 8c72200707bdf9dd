import { defaultFieldResolver, type GraphQLFieldResolver, type GraphQLSchema } from 'graphql';
import { createGraphQLError } from 'graphql-yoga';
import { recordAudit, type AuditOutcome } from '../auth/audit.ts';
import { canAdminister, canOperate, type Caller } from '../auth/caller.ts';
import type { GraphQLContext } from './context.ts';

// The one place where mutations are authorised and audited: every field of the Mutation type is
// wrapped once the schema is built, so a mutation added later is guarded without doing anything.
// A `read` caller gets FORBIDDEN before the resolver runs, and so does an `operate` caller on the
// fields marked `scope: 'admin'` (tokens, erasure); every attempt (allowed or not) leaves an
// audit entry with the action, the token, the time and the outcome.

/** Per-field audit settings, set as `extensions: { audit: { ... } }` on a mutation field. */
export interface AuditPolicy {
  /** false: keep the arguments out of the entry (forgetPerson: they identify the person) */
  args?: boolean;
  /** what of the answer to keep (never a secret, never personal data) */
  result?: (answer: unknown) => Record<string, unknown>;
  /** "admin": token management and erasure; default "operate" */
  scope?: 'operate' | 'admin';
}

export function forbidden(action: string, needs: 'operate' | 'admin' = 'operate', has: Caller['scope'] = 'read') {
  return createGraphQLError(`${action} needs an ${needs} token; this token has the ${has} scope`, { extensions: { code: 'FORBIDDEN' } });
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** The outcome an answer reports: mutations answer `{ ok, error }`, a refusal is ok: false. */
function outcomeOf(answer: unknown): { outcome: AuditOutcome; error?: string } {
  const record = typeof answer === 'object' && answer !== null ? (answer as Record<string, unknown>) : {};
  if (record['ok'] === false) return { outcome: 'REFUSED', error: typeof record['error'] === 'string' ? record['error'] : 'refused' };
  return { outcome: 'OK' };
}

export function guardMutations(schema: GraphQLSchema): GraphQLSchema {
  const mutation = schema.getMutationType();
  if (!mutation) return schema;
  for (const field of Object.values(mutation.getFields())) {
    const resolve: GraphQLFieldResolver<unknown, GraphQLContext> = field.resolve ?? defaultFieldResolver;
    const policy = (field.extensions as { audit?: AuditPolicy } | undefined)?.audit ?? {};
    const action = field.name;
    field.resolve = async (root, args: Record<string, unknown>, ctx: GraphQLContext, info) => {
      const base = policy.args === false ? {} : { args };
      const audit = async (outcome: AuditOutcome, detail: Record<string, unknown>) => {
        try {
          await recordAudit(ctx.prisma, { action, actor: ctx.caller, outcome, detail: { ...base, ...detail } });
        } catch (error) {
          // the action already happened (or was refused): losing its entry must not change its answer
          ctx.deps.logger.error({ err: error, action, outcome }, 'could not write the audit entry');
        }
      };
      const needs = policy.scope ?? 'operate';
      if (!(needs === 'admin' ? canAdminister(ctx.caller) : canOperate(ctx.caller))) {
        await audit('FORBIDDEN', {});
        throw forbidden(action, needs, ctx.caller.scope);
      }
      let answer: unknown;
      try {
        answer = await resolve(root, args, ctx, info);
      } catch (error) {
        await audit('FAILED', { error: messageOf(error) });
        throw error;
      }
      const { outcome, error } = outcomeOf(answer);
      await audit(outcome, { ...(error ? { error } : {}), ...(policy.result ? { result: policy.result(answer) } : {}) });
      return answer;
    };
  }
  return schema;
}
