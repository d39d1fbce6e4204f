# Berth registry image: build the bundle in one stage (npm run build: build.mjs), run it as a non-root user.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# Every room the server is built from (.dockerignore leaves out tests, benchmarks, data and builds).
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    BERTH_LISTEN=0.0.0.0:5000 \
    BERTH_DATA=/var/lib/berth
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
# A font for the text of the social cards sharp renders (the slim image has none).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/berth && chown node:node /var/lib/berth
USER node
EXPOSE 5000
VOLUME ["/var/lib/berth"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:5000/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# A smaller young generation: no slower here, and about 30 MiB less resident memory per process.
CMD ["node", "--max-semi-space-size=4", "dist/bin/berth.js", "serve"]
