# syntax=docker/dockerfile:1
#
# LLMChat: one image, the server with its web app. With no configuration it
# starts like `npm start`: embedded PGlite under /data, in-process state and
# the simulated upstream behind the `demo` agent. Give it DATABASE_URL,
# REDIS_URL, JWT_SECRET and SECRETS_KEY (or their *_FILE forms) for production.
#
#   docker build -t llmchat . && docker run -p 3000:3000 -v llmchat-data:/data llmchat
#   buildah bud --format docker -t llmchat . && podman run -p 3000:3000 llmchat
#
# The base is an argument so a mirror or a hardened Node 24 image can stand in
# (tools/src/image/image.test.ts builds on one made from Debian packages).
ARG BASE_IMAGE=node:24-bookworm-slim

# ---- build: every dependency, the TypeScript and web builds ----
FROM ${BASE_IMAGE} AS build
WORKDIR /src
ENV npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
# Manifests first: the dependency layer is reused while only sources change.
COPY package.json package-lock.json .npmrc ./
COPY tools/package.json tools/
COPY server/package.json server/
COPY web/package.json web/
RUN --mount=type=cache,target=/root/.npm npm ci
COPY tsconfig.base.json ./
COPY tools/ tools/
COPY server/ server/
COPY web/ web/
RUN npm run build \
 && find tools/dist server/dist -name '*.map' -delete

# ---- deps: production dependencies of the server and of what it imports from tools ----
# Without the root's optionalDependencies (node-linux-*: the pinned Node binary
# for development) nor the web app's packages (its build is static files).
FROM ${BASE_IMAGE} AS deps
WORKDIR /app
ENV npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
COPY package.json package-lock.json .npmrc ./
COPY tools/package.json tools/
COPY server/package.json server/
COPY web/package.json web/
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --workspace server --workspace tools \
 && find node_modules -name '*.map' -type f -delete

# ---- the image ----
FROM ${BASE_IMAGE}
# A fixed numeric user, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --gid 10001 llmchat \
 && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin llmchat \
 && mkdir -p /data && chown 10001:10001 /data && chmod 0700 /data
WORKDIR /app
COPY --from=deps /app/node_modules node_modules
COPY --from=build /src/package.json ./
COPY --from=build /src/tools/package.json tools/
COPY --from=build /src/tools/dist tools/dist
COPY --from=build /src/server/package.json server/
COPY --from=build /src/server/dist server/dist
# The password policy's list of common passwords, read at start.
COPY --from=build /src/server/data server/data
COPY --from=build /src/web/dist web/dist
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/data
# Embedded mode keeps its PGlite database, generated secrets and the first
# admin's password here; with DATABASE_URL and both secrets set it stays empty.
VOLUME ["/data"]
EXPOSE 3000
USER 10001:10001
# Liveness only: readiness (/health/ready) belongs to the balancer, and a
# draining instance must not be restarted for being unready. No curl in slim
# images: Node's fetch does it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Node is PID 1 and main.ts handles SIGTERM and SIGINT itself: /health/ready
# turns 503, running answers get DRAIN_TIMEOUT_MS, the rest are handed over.
# Give the runtime a stop timeout above DRAIN_TIMEOUT_MS + 15 s (docker stop -t 40).
STOPSIGNAL SIGTERM
CMD ["node", "server/dist/main.js"]
