import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import type { TarEntrySpec } from '../src/image/oci-layout/tar-layer.ts';
import { RegistryClient } from '../src/image/registry/client.ts';
import { ImageStageCache } from '../src/image/stage/cache.ts';
import { verifyModuleImage } from '../src/image/stage/verify.ts';

/**
 * Issue 3's second benchmark: 200 Modules over 20 images (10 module names per image, a 4 MiB base layer shared by
 * all), validated together with one cache, against the baseline of validating each Module on its own with no
 * cache (what KMM's preflight did). Registry requests, wall time, and peak RSS of the validating process (measured
 * in child processes that load only what validation needs, so building the images does not count; three runs,
 * as GC timing moves the peak by several MiB). Targets: each manifest and blob fetched at most once;
 * peak RSS under 150 MB.
 */
const run = promisify(execFile);
const KERNEL = '5.14.0-284.25.1.el9_2.x86_64';
const DIR = `opt/lib/modules/${KERNEL}`;
const IMAGES = 20;
const MODULES_PER_IMAGE = 10;

interface Measurement {
  ms: number;
  requests: number;
  manifestRequests: number;
  blobRequests: number;
  distinctBlobs: number;
  distinctManifests: number;
  verified: number;
  maxRssMiB: number;
  /** RSS right after the imports, before any work: Node plus loading the TypeScript sources. */
  startRssMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
}

const startRssMiB = process.resourceUsage().maxRSS / 1024;

async function measure(host: string, mode: 'together' | 'one-by-one'): Promise<Measurement> {
  const paths: string[] = [];
  const client = new RegistryClient({
    plainHttpRegistries: [host],
    onRequest: (event) => {
      if (event.attempt === 1) paths.push(event.path);
    },
  });
  const requests = Array.from({ length: IMAGES * MODULES_PER_IMAGE }, (_, i) => ({
    reference: `${host}/bench/kmod-${i % IMAGES}:v1`,
    kernel: KERNEL,
    modprobe: { moduleName: `driver_${Math.floor(i / IMAGES)}` },
    tls: { insecure: true },
  }));
  const started = performance.now();
  let verified = 0;
  if (mode === 'together') {
    const cache = new ImageStageCache();
    const verdicts = await Promise.all(requests.map((r) => verifyModuleImage({ source: client, cache }, r)));
    verified = verdicts.filter((v) => v.verified).length;
  } else {
    for (const r of requests) if ((await verifyModuleImage({ source: client }, r)).verified) verified++;
  }
  const ms = performance.now() - started;
  await client.close();
  const manifests = paths.filter((p) => p.includes('/manifests/'));
  const blobs = paths.filter((p) => p.includes('/blobs/'));
  return {
    ms,
    requests: paths.length,
    manifestRequests: manifests.length,
    blobRequests: blobs.length,
    distinctBlobs: new Set(blobs).size,
    distinctManifests: new Set(manifests).size,
    verified,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
    startRssMiB,
    heapUsedMiB: process.memoryUsage().heapUsed / 1024 / 1024,
    externalMiB: process.memoryUsage().external / 1024 / 1024,
  };
}

if (process.argv[2] === '--measure') {
  const result = await measure(
    process.argv[3] ?? '',
    process.argv[4] === 'one-by-one' ? 'one-by-one' : 'together',
  );
  process.stdout.write(JSON.stringify(result));
} else {
  // Only the parent builds and serves images: the measuring children never load these modules.
  const { buildKernelModule } = await import('../src/fixtures/kmod.ts');
  const { buildLayer } = await import('../src/image/oci-layout/tar-layer.ts');
  const { writeImage } = await import('../src/image/oci-layout/writer.ts');
  const { pushLayout, startRegistry } = await import('../test/support/registry.ts');
  const { runnerNodeOptions } = await import('./support/deployment.ts');
  const work = await mkdtemp(join(tmpdir(), 'kmm-bench-many-'));
  const registry = await startRegistry('http');
  try {
    const layout = join(work, 'layout');
    const base = await buildLayer([
      { type: 'file', name: 'usr/share/base.bin', content: randomBytes(4 * 1024 * 1024) },
    ]);
    for (let image = 0; image < IMAGES; image++) {
      const entries: TarEntrySpec[] = [];
      const dep: string[] = [];
      for (let m = 0; m < MODULES_PER_IMAGE; m++) {
        const name = `driver_${m}`;
        const content = await buildKernelModule({
          name,
          kernel: KERNEL,
          // Random code, so the modules compress like real ones; the version makes each image's modules distinct.
          text: randomBytes(64 * 1024),
          modinfo: [['version', `${image}`]],
        });
        entries.push({ type: 'file', name: `${DIR}/extra/${name}.ko`, content });
        dep.push(`extra/${name}.ko:`);
      }
      entries.push({ type: 'file', name: `${DIR}/modules.dep`, content: `${dep.join('\n')}\n` });
      await writeImage(layout, { tag: `image-${image}`, layers: [base, await buildLayer(entries)] });
      await pushLayout(`oci:${layout}:image-${image}`, `bench/kmod-${image}:v1`, registry);
    }
    const self = fileURLToPath(import.meta.url);
    const child = async (mode: string, nodeOptions = ''): Promise<Measurement> => {
      const { stdout } = await run(process.execPath, [self, '--measure', registry.host, mode], {
        maxBuffer: 1 << 20,
        env: { ...process.env, NODE_OPTIONS: nodeOptions },
      });
      return JSON.parse(stdout) as Measurement;
    };
    const medianOfThree = async (nodeOptions = ''): Promise<{ median: Measurement; runs: Measurement[] }> => {
      const runs = [];
      for (let i = 0; i < 3; i++) runs.push(await child('together', nodeOptions));
      return { median: [...runs].sort((a, b) => a.maxRssMiB - b.maxRssMiB)[1]!, runs };
    };
    const { median: together, runs } = await medianOfThree();
    // In a cluster the Image stage runs inside the runner, with the V8 flags of its Deployment.
    const runnerOptions = await runnerNodeOptions();
    const asDeployed = runnerOptions === '' ? undefined : await medianOfThree(runnerOptions);
    const oneByOne = await child('one-by-one');
    const show = (label: string, m: Measurement): void =>
      console.log(
        `${label}: ${m.ms.toFixed(0)} ms, ${m.requests} requests (${m.manifestRequests} manifest, ${m.blobRequests} blob; ` +
          `${m.distinctManifests} distinct manifests, ${m.distinctBlobs} distinct blobs), ${m.verified}/200 verified, ` +
          `peak RSS ${m.maxRssMiB.toFixed(0)} MiB (${m.startRssMiB.toFixed(0)} MiB before any work; at the end heap ` +
          `${m.heapUsedMiB.toFixed(0)} MiB, external ${m.externalMiB.toFixed(0)} MiB)`,
      );
    show('validated together (one cache), median of 3 by peak RSS', together);
    console.log(`peak RSS of the 3 runs: ${runs.map((r) => r.maxRssMiB.toFixed(0)).join(', ')} MiB`);
    show('one by one, no cache (baseline)', oneByOne);
    console.log(
      `ratio: ${(oneByOne.requests / together.requests).toFixed(1)}x fewer requests, ` +
        `${(oneByOne.ms / together.ms).toFixed(1)}x faster`,
    );
    const once =
      together.manifestRequests === together.distinctManifests &&
      together.blobRequests === together.distinctBlobs;
    console.log(`each manifest and blob fetched at most once: ${once ? 'yes' : 'NO'}`);
    const under150MB = (m: Measurement): string =>
      `${m.maxRssMiB * 1.048576 < 150 ? 'yes' : 'NO'} (${(m.maxRssMiB * 1.048576).toFixed(0)} MB)`;
    console.log(`peak RSS under 150 MB, Node's default flags: ${under150MB(together)}`);
    if (asDeployed !== undefined) {
      console.log(
        `peak RSS under 150 MB, with the runner Deployment's NODE_OPTIONS (${runnerOptions}): ` +
          `${under150MB(asDeployed.median)}; runs ${asDeployed.runs.map((r) => r.maxRssMiB.toFixed(0)).join(', ')} MiB`,
      );
    }
    if (together.verified !== 200) process.exitCode = 1;
  } finally {
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
}
