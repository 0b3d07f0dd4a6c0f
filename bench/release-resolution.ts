import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { buildReleaseFixture } from '../src/fixtures/release.ts';
import { RegistryClient } from '../src/image/registry/client.ts';
import { ReleaseCache } from '../src/release/cache.ts';
import { resolveRelease } from '../src/release/resolve.ts';
import { pushLayout, startRegistry } from '../test/support/registry.ts';

/**
 * Issue 4's benchmark: resolve a release whose driver-toolkit image has a 48 MiB lower layer (random, so gzip cannot
 * shrink it), on a local Distribution registry. Bytes read and wall time, 3 runs (median), against the baseline of
 * the documented manual recipe measured here too: pull the release and the whole driver-toolkit image (skopeo copy,
 * as `podman run <dtk> cat /etc/driver-toolkit-release.json` would) and read the file from the layers.
 * Targets: bytes <= the release's last layer + the DTK's manifest, config and top layer; a second resolution of the
 * same digest reads nothing.
 */
const run = promisify(execFile);
const RUNS = 3;
const LOWER_LAYER_BYTES = 48 * 1024 * 1024;

const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(2)} MiB`;

const work = await mkdtemp(join(tmpdir(), 'kmm-bench-release-'));
const registry = await startRegistry('http');
try {
  const fixture = await buildReleaseFixture({
    dir: join(work, 'layout'),
    componentRepository: `${registry.host}/ocp/ocp-v4.0-art-dev`,
    dtkLowerLayerBytes: LOWER_LAYER_BYTES,
  });
  await pushLayout(fixture.releaseLayoutReference, `ocp/ocp-release:${fixture.releaseTag}`, registry);
  await pushLayout(fixture.driverToolkitLayoutReference, 'ocp/ocp-v4.0-art-dev:dtk', registry);
  const releaseByTag = `${registry.host}/ocp/ocp-release:${fixture.releaseTag}`;
  const releaseByDigest = `${registry.host}/ocp/ocp-release@${fixture.releaseDigest}`;
  const sizes = fixture.architectures[0]!.sizes;
  const budget =
    sizes.releaseLastLayer +
    sizes.driverToolkitManifest +
    sizes.driverToolkitConfig +
    sizes.driverToolkitTopLayer;
  // Not in the target, but no reader can avoid them: the release manifest (it names the last layer) and the
  // release config (the registry client reads a single-arch image's config to confirm its platform).
  const releaseManifest = await readFile(
    join(fixture.dir, 'blobs', 'sha256', fixture.releaseDigest.slice(7)),
  );
  const releaseConfigSize = (JSON.parse(releaseManifest.toString('utf8')) as { config: { size: number } })
    .config.size;
  const releaseOverhead = releaseManifest.length + releaseConfigSize;
  const pull = { tls: { insecure: true } };
  const requests: string[] = [];
  const newClient = (): RegistryClient =>
    new RegistryClient({
      plainHttpRegistries: [registry.host],
      onRequest: (event) =>
        requests.push(
          `${event.method} ${event.path.replace(/sha256:([0-9a-f]{12})[0-9a-f]+/, 'sha256:$1…')}`,
        ),
    });

  const ours: { ms: number; bytes: number; requests: number; kernel: string }[] = [];
  for (let i = 0; i < RUNS; i++) {
    requests.length = 0;
    const client = newClient();
    const started = performance.now();
    const resolved = await resolveRelease({ source: client }, { releaseImage: releaseByTag, ...pull });
    const ms = performance.now() - started;
    const stats = client.stats()[registry.host];
    ours.push({
      ms,
      bytes: stats?.bytesReceived ?? NaN,
      requests: stats?.requests ?? NaN,
      kernel: resolved.kernelVersion,
    });
    await client.close();
  }

  const firstRunRequests = [...requests];
  // Second resolutions through one cache: by digest (nothing at all), by tag (the tag's manifest only).
  const client = newClient();
  const cache = new ReleaseCache();
  await resolveRelease({ source: client, cache }, { releaseImage: releaseByDigest, ...pull });
  const first = { ...client.stats()[registry.host]! };
  let started = performance.now();
  await resolveRelease({ source: client, cache }, { releaseImage: releaseByDigest, ...pull });
  const digestAgainMs = performance.now() - started;
  const afterDigest = { ...client.stats()[registry.host]! };
  started = performance.now();
  await resolveRelease({ source: client, cache }, { releaseImage: releaseByTag, ...pull });
  const tagAgainMs = performance.now() - started;
  const afterTag = { ...client.stats()[registry.host]! };
  await client.close();

  const baseline: { ms: number; bytes: number }[] = [];
  for (let i = 0; i < RUNS; i++) {
    const target = join(work, `skopeo-${i}`);
    await mkdir(target);
    started = performance.now();
    let bytes = 0;
    for (const [name, image] of [
      ['release', releaseByTag],
      ['dtk', fixture.driverToolkitReference],
    ] as const) {
      const dir = join(target, name);
      await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${image}`, `dir:${dir}`]);
      for (const file of await readdir(dir)) bytes += (await stat(join(dir, file))).size;
    }
    // The file is in the DTK's top layer; the manual recipe still pulled every layer before reading it.
    const dtkFiles = await readdir(join(target, 'dtk'));
    for (const file of dtkFiles.filter((f) => /^[0-9a-f]{64}$/.test(f))) {
      await run('tar', ['-tzf', join(target, 'dtk', file)], { maxBuffer: 64 << 20 }).catch(() => undefined);
    }
    baseline.push({ ms: performance.now() - started, bytes });
    await rm(target, { recursive: true, force: true });
  }

  const ourMs = median(ours.map((r) => r.ms));
  const ourBytes = median(ours.map((r) => r.bytes));
  const baseMs = median(baseline.map((r) => r.ms));
  const baseBytes = median(baseline.map((r) => r.bytes));
  console.log(
    `release ${fixture.releaseTag}: last layer ${sizes.releaseLastLayer} B; driver-toolkit ${mib(sizes.driverToolkitTotal)} ` +
      `(manifest ${sizes.driverToolkitManifest} B, config ${sizes.driverToolkitConfig} B, top layer ${sizes.driverToolkitTopLayer} B)`,
  );
  console.log(`budget (release last layer + DTK manifest + config + top layer): ${budget} B`);
  console.log(
    `resolveRelease: ${ourMs.toFixed(1)} ms, ${ourBytes} B read in ${median(ours.map((r) => r.requests))} requests, ` +
      `kernel ${ours[0]?.kernel}`,
  );
  for (const request of firstRunRequests) console.log(`  ${request}`);
  console.log(
    `  within budget: ${ourBytes <= budget ? 'yes' : 'no'} (${ourBytes} vs ${budget} B); within budget + the release's ` +
      `manifest and config (${releaseManifest.length} + ${releaseConfigSize} B): ` +
      `${ourBytes <= budget + releaseOverhead ? 'yes' : 'NO'} (${ourBytes} <= ${budget + releaseOverhead})`,
  );
  console.log(
    `second resolution, same digest: ${afterDigest.requests - first.requests} requests, ` +
      `${afterDigest.bytesReceived - first.bytesReceived} B, ${digestAgainMs.toFixed(2)} ms`,
  );
  console.log(
    `second resolution, same tag: ${afterTag.requests - afterDigest.requests} requests, ` +
      `${afterTag.bytesReceived - afterDigest.bytesReceived} B, ${tagAgainMs.toFixed(1)} ms`,
  );
  console.log(
    `baseline (skopeo copy release + whole DTK, list layers): ${baseMs.toFixed(1)} ms, ${mib(baseBytes)}`,
  );
  console.log(
    `ratio: ${(baseMs / ourMs).toFixed(1)}x faster, ${(baseBytes / ourBytes).toFixed(0)}x fewer bytes`,
  );
  if (ourBytes > budget + releaseOverhead || afterDigest.requests !== first.requests) process.exitCode = 1;
} finally {
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}
