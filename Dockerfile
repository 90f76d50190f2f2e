# syntax=docker/dockerfile:1
# Multi-stage build: compile TypeScript with dev dependencies, then run the
# compiled output with production dependencies only, as a non-root user.
# test/container-steps.test.ts parses this file and repeats its COPY, ENV and
# RUN steps without Docker, so keep to the instructions it understands.

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# The browser SDK, served to the demo page from /sdk/; it type-imports src/wire.
COPY client ./client
RUN npm run build && npm run build:client

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/client/dist ./client/dist
COPY public ./public
USER node
# 3000 serves the API, push, /healthz, /readyz and /docs; /metrics too unless METRICS_PORT moves it to its own port.
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The relay handles SIGTERM itself: it tells clients to reconnect and exits within SHUTDOWN_TIMEOUT_MS.
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js"]
