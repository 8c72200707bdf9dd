# syntax=docker/dockerfile:1
# Node 26: the Active LTS since October 2026 (pinned by exact version; package.json "engines" lists
# every supported line, and .ci/run runs the suite on each: docs/operating.md, "Supported runtimes").
# test/deploy/dockerfile.integration.test.ts assembles the runtime stage exactly as this file
# describes and runs it with docker-compose.yml's environment: it knows each instruction used here
# and fails on any other, so change both together.
# Build stage: install everything, generate the Prisma client, compile TypeScript.
FROM node:26.12.1-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY prisma ./prisma
COPY prisma.config.ts ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# the build also compiles the benchmark's full-reconciliation child (it measures the compiled service)
COPY bench/full-reconcile.child.ts ./bench/
# the operator CLIs (token, db:migrate, sweep) and the shared sandbox, compiled like the service
COPY scripts/token.ts scripts/db-migrate.ts scripts/sweep.ts scripts/batch-sync.ts scripts/sandbox.ts ./scripts/
RUN npm run build

# Runtime stage: production dependencies only (no tsx, no TypeScript), compiled code, migrations,
# the CLIs on PATH (`docker compose run --rm app token create ...`); runs as non-root.
FROM node:26.12.1-bookworm-slim AS runtime
ENV NODE_ENV=production
ENV PATH=/app/bin:$PATH
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the client is generated in the build stage and copied with dist/
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
# GraphiQL's self-contained bundle (a devDependency: its own dependency tree is already inside it),
# served by the service outside production
COPY --from=build /app/node_modules/@graphql-yoga/graphiql ./node_modules/@graphql-yoga/graphiql
COPY prisma ./prisma
# the operator console's browser modules and stylesheet, served as they are (no build step)
COPY src/console/public ./src/console/public
# token, db-migrate, sweep, batch-sync, sandbox: each runs its compiled script in dist/scripts with node
COPY bin ./bin
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/src/main.js"]
