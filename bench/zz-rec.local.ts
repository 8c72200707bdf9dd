import { runRecoveryBench } from './recovery.bench.ts';
const pg = process.argv[2];
console.log(JSON.stringify(await runRecoveryBench({ changes: 200, databaseUrl: pg })));
