# syntax=docker/dockerfile:1
# One image for the runner, the webhook and the CLI: its entrypoint is `kmm-preflight`, and the Deployments pass the
# subcommand (`runner`, `webhook`). Node 24 runs the TypeScript sources directly (type stripping, see
# bin/kmm-preflight.js), so there is no build stage: one stage installs the production dependencies, the final
# stage copies them next to the sources.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev leaves out the test and lint toolchain, and the `node` devDependency that pins Node 24 on developer
# machines (here the base image is Node 24). No production dependency needs an install script: native code such as
# @napi-rs/lzma arrives as prebuilt optional packages.
# Type declarations and source maps are read by compilers and debuggers, never by `node`: they are 40 of the tree's
# 94 MB (most of it @kubernetes/client-node's), so they stay in this stage.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force \
    && find node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete

FROM node:24-bookworm-slim AS runtime
LABEL org.opencontainers.image.title="kmm-preflight" \
      org.opencontainers.image.description="Pre-upgrade validation of KMM kernel modules against an OpenShift release" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
# The base image brings npm and corepack (with npx, yarn and pnpm shims); nothing runs them here, so they leave the
# runtime filesystem: less code for a scanner to flag and for an intruder to use. Their bytes stay in the base
# layers, so this does not make the image smaller.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
    && rm -rf /opt/yarn-* \
    && rm -f /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn \
        /usr/local/bin/yarnpkg /usr/local/bin/pnpm /usr/local/bin/pnpx
WORKDIR /app
# Everything stays owned by root and is only readable by the process: the app cannot rewrite its own code.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY webhook ./webhook
COPY certs ./certs
# The base image's `node` user, given by number so that the kubelet can enforce runAsNonRoot (OpenShift may run the
# container under another non-root UID, which works as well: nothing here needs to be writable).
USER 1000:1000
ENTRYPOINT ["node", "/app/bin/kmm-preflight.js"]
CMD ["--help"]
