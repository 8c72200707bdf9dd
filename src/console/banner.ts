import type { SandboxSeed } from '../sandbox/seed.ts';

// The block `npm start` prints once in sandbox mode. It leads a newcomer through the operator
// console (sign in, find a person, watch a change arrive); the curl commands only play the CRM
// user and the marketer in the simulators. Every command is copy-paste ready.

export interface BannerOptions {
  url: string;
  marketoUrl: string;
  dataverseUrl: string;
  marketoWebhookSecret: string;
  graphqlToken: string;
  seed: SandboxSeed;
}

export function consoleBanner(o: BannerOptions): string {
  const contact = o.seed.contacts.find((c) => c.marketoId !== null) ?? o.seed.contacts[0];
  const candidate = o.seed.marketoOnly[0];
  const rule = '-'.repeat(100);
  return [
    rule,
    'SANDBOX READY: simulated Marketo and Dynamics 365, seeded with',
    `  ${o.seed.contacts.length} Dynamics contacts and ${o.seed.leads.length} leads linked to Marketo persons by the initial sync,`,
    `  ${o.seed.marketoOnly.length} Marketo-only persons ready for "Sync Person to Microsoft".`,
    '',
    `  operator console        ${o.url}/   (sign in with the API token)`,
    `  GraphQL API token       ${o.graphqlToken}`,
    `  service                 ${o.url}   (GraphQL API at /graphql: docs/graphql-cookbook.md)`,
    `  Marketo webhook secret  ${o.marketoWebhookSecret}   (X-Webhook-Secret; generated for this run)`,
    `  Marketo simulator       ${o.marketoUrl}/__admin/leads`,
    `  Dataverse simulator     ${o.dataverseUrl}/__admin/records/contact`,
    '',
    'What to try:',
    `1. Open ${o.url}/ in a browser and sign in with the API token above.`,
    `2. "Find a person": type ${contact?.email ?? 'an email'} (${contact?.name ?? '?'}). Both records side by side,`,
    '   field by field: each value on both sides, the value they agreed on, who set it, when and through which event.',
    `3. Be the CRM user: edit ${contact?.name ?? 'the'} contact in the Dynamics simulator, then press Find again`,
    '   (the job title now says Dynamics set it, through a webhook; the Timeline view shows the write to Marketo):',
    `curl -sS -X PATCH ${o.dataverseUrl}/__admin/records/contact/${contact?.dynamicsId ?? '?'} -H 'content-type: application/json' -d '{"jobtitle": "Chief Operating Officer", "address1_city": "Rotterdam"}'`,
    '   The Marketo person, as the simulator holds it:',
    `curl -sS ${o.marketoUrl}/__admin/leads/${contact?.marketoId ?? 0}`,
    `4. Be the marketer: "Sync Person to Microsoft" for ${candidate?.name ?? '?'} (Marketo person ${candidate?.marketoId ?? '?'}), as the Marketo webhook calls it,`,
    `   then find ${candidate?.email ?? 'that person'} in the console and watch Work queue and Throughput:`,
    `curl -sS -X POST ${o.url}/webhooks/marketo/sync-person -H 'content-type: application/json' -H 'x-webhook-secret: ${o.marketoWebhookSecret}' -d '{"marketoId": ${candidate?.marketoId ?? 0}, "syncAs": "lead"}'`,
    '5. Sweeps: "Run a sweep now". Field mappings: change a field\'s collision winner, or disable and re-enable it.',
    '',
    'The whole story (collisions, a validation rejection): npm run demo. Guides: README.md ("Your first hour").',
    rule,
  ].join('\n') + '\n';
}
