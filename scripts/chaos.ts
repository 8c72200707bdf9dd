import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { campaignPassed, runCampaign, summarise } from '../src/chaos/campaign.ts';

// npm run chaos -- --seed 7 [--rounds 8] [--pairs 6] [--edits 14] [--kills 2] [--replicas 3] [--no-races]
// PostgreSQL when CHAOS_DATABASE_URL or TEST_DATABASE_URL is set (a fresh database per run, --replicas
// service processes on it, default 3), else PGlite in a temp DATA_DIR (one process by construction).
// Prints how often each of issue 24's faults fired. Exits 1 on any intent violation, loss, duplicate or problem.

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: String(Date.now() % 100_000) },
    rounds: { type: 'string', default: '8' },
    pairs: { type: 'string', default: '6' },
    edits: { type: 'string', default: '14' },
    kills: { type: 'string', default: '2' },
    replicas: { type: 'string', default: '3' },
    'no-races': { type: 'boolean', default: false },
  },
});

const figures = await runCampaign({
  seed: Number(values.seed),
  rounds: Number(values.rounds),
  pairsPerKind: Number(values.pairs),
  editsPerRound: Number(values.edits),
  kills: Number(values.kills),
  races: !values['no-races'],
  replicas: Number(values.replicas),
  databaseUrl: process.env.CHAOS_DATABASE_URL ?? process.env.TEST_DATABASE_URL,
  baseEnv: process.env,
  projectRoot: fileURLToPath(new URL('..', import.meta.url)),
});

console.log('');
for (const line of summarise(figures)) console.log(line);
const passed = campaignPassed(figures);
console.log(passed ? 'CHAOS PASSED: every edit on both sides, superseded, or the recorded loser of a genuine collision' : 'CHAOS FAILED');
process.exit(passed ? 0 : 1);
