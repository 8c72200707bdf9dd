# syntax=docker/dockerfile:1
# Node 24: the Active LTS since October 2025 (maintained until April 2028); package.json "engines" lists
# every supported line (20.19+, 22.12+, 24), and .ci/run runs the suite on 22 and 24 besides this machine's 20.
# Build stage: install everything, generate the Prisma client, compile TypeScript.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY prisma ./prisma
COPY prisma.config.ts ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# the build also compiles the benchmark's full-reconciliation child (it measures the compiled service)
COPY bench/full-reconcile.child.ts ./bench/
RUN npm run build

# Runtime stage: production dependencies only, compiled code, migrations; runs as non-root.
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the client is generated in the build stage and copied with dist/
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY prisma ./prisma
# the operator console's browser modules and stylesheet, served as they are (no build step)
COPY src/console/public ./src/console/public
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/src/main.js"]
