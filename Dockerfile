# syntax=docker/dockerfile:1
# Prospector image: one image for the API (default CMD), the worker and the sandbox.
#   docker build -t prospector .
#   docker run prospector                                  # API on :3000
#   docker run prospector node dist/workers/main.js        # worker
#   docker run prospector node dist/sandbox/main.js        # provider sandbox (needs SANDBOX_HOST=0.0.0.0)

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS base
# package.json's "allowScripts" (which install scripts may run) is honoured by npm 11;
# the npm 10 that ships with Node 20 would ignore it and run every install script.
ARG NPM_VERSION=11.19.1
ENV npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false
RUN npm install --global "npm@${NPM_VERSION}" && npm cache clean --force
WORKDIR /app

# All dependencies, for compiling and bundling. Only the manifests are copied so
# this layer is reused until package.json or package-lock.json change.
FROM base AS deps
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci

# tsc -> dist/, then the prebuilt workflow bundle -> dist/workflow-bundle.js.
FROM deps AS build
COPY . .
RUN npm run build

FROM base AS runtime
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev
COPY --from=build /app/dist ./dist
# Each process applies pending migrations at start, from infra/migrations.
COPY infra/migrations ./infra/migrations
# DATA_DIR (default .data) must be writable by the unprivileged user (sandbox state).
RUN mkdir -p /app/.data && chown node:node /app/.data
USER node
EXPOSE 3000 9464 4010
CMD ["node", "dist/api/main.js"]
