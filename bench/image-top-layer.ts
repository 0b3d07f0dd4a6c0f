import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { buildKernelModule } from '../src/fixtures/kmod.ts';
import { buildLayer } from '../src/image/oci-layout/tar-layer.ts';
import { writeImage } from '../src/image/oci-layout/writer.ts';
import { RegistryClient } from '../src/image/registry/client.ts';
import { verifyModuleImage } from '../src/image/stage/verify.ts';
import { pushLayout, startRegistry } from '../test/support/registry.ts';

/**
 * Issue 3's first benchmark: a module image whose .ko is in the top layer above a lower layer of 48 MiB (random,
 * so gzip cannot shrink it), on a local Distribution registry; the module has 256 KiB of random code. The Image stage versus the baseline of copying the
 * whole image with skopeo and listing its layers, both measured here, 3 runs each (median).
 * Targets: bytes read <= manifest + config + top layer; at least 5x faster.
 */
const run = promisify(execFile);
const KERNEL = '5.14.0-284.25.1.el9_2.x86_64';
const DIR = `opt/lib/modules/${KERNEL}`;
const RUNS = 3;

const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;

const work = await mkdtemp(join(tmpdir(), 'kmm-bench-top-layer-'));
const registry = await startRegistry('http');
try {
  const layout = join(work, 'layout');
  const lowerFiles = Array.from({ length: 4 }, (_, i) => ({
    type: 'file' as const,
    name: `usr/share/payload/blob-${i}.bin`,
    content: randomBytes(12 * 1024 * 1024),
  }));
  const lower = await buildLayer(lowerFiles);
  const top = await buildLayer([
    {
      type: 'file',
      name: `${DIR}/kmm_ci_a.ko`,
      content: await buildKernelModule({ name: 'kmm_ci_a', kernel: KERNEL, text: randomBytes(256 * 1024) }),
    },
    { type: 'file', name: `${DIR}/modules.dep`, content: 'kmm_ci_a.ko:\n' },
  ]);
  const manifest = await writeImage(layout, { tag: 'v1', layers: [lower, top] });
  await pushLayout(`oci:${layout}:v1`, 'bench/kmod:v1', registry);
  const reference = `${registry.host}/bench/kmod:v1`;
  const configSize = JSON.parse(
    await readFile(join(layout, 'blobs', ...manifestPath(manifest.digest)), 'utf8'),
  ) as {
    config: { size: number };
  };
  const budget = manifest.size + configSize.config.size + top.data.length;

  const ours: { ms: number; bytes: number; verified: boolean }[] = [];
  for (let i = 0; i < RUNS; i++) {
    const client = new RegistryClient({ plainHttpRegistries: [registry.host] });
    const started = performance.now();
    const verdict = await verifyModuleImage(
      { source: client },
      { reference, kernel: KERNEL, modprobe: { moduleName: 'kmm_ci_a' }, tls: { insecure: true } },
    );
    const ms = performance.now() - started;
    ours.push({ ms, bytes: client.stats()[registry.host]?.bytesReceived ?? NaN, verified: verdict.verified });
    await client.close();
  }

  const baseline: { ms: number; bytes: number }[] = [];
  for (let i = 0; i < RUNS; i++) {
    const target = join(work, `skopeo-${i}`);
    const started = performance.now();
    await run('skopeo', [
      'copy',
      '--quiet',
      '--src-tls-verify=false',
      `docker://${reference}`,
      `dir:${target}`,
    ]);
    const copied = JSON.parse(await readFile(join(target, 'manifest.json'), 'utf8')) as {
      layers: { digest: string }[];
    };
    for (const layer of copied.layers) {
      await run('tar', ['-tzf', join(target, layer.digest.replace(/^sha256:/, ''))], { maxBuffer: 64 << 20 });
    }
    const ms = performance.now() - started;
    let bytes = 0;
    for (const name of await readdir(target)) bytes += (await stat(join(target, name))).size;
    baseline.push({ ms, bytes });
    await rm(target, { recursive: true, force: true });
  }

  const ourMs = median(ours.map((r) => r.ms));
  const ourBytes = median(ours.map((r) => r.bytes));
  const baseMs = median(baseline.map((r) => r.ms));
  const baseBytes = median(baseline.map((r) => r.bytes));
  console.log(
    `image: lower layer ${mib(lower.data.length)}, top layer ${kib(top.data.length)}, manifest ${manifest.size} B`,
  );
  console.log(`budget (manifest + config + top layer): ${budget} B`);
  console.log(
    `image stage: ${ourMs.toFixed(1)} ms, ${ourBytes} B read, verified=${ours.every((r) => r.verified)}`,
  );
  console.log(`skopeo copy + list layers (baseline): ${baseMs.toFixed(1)} ms, ${mib(baseBytes)} on disk`);
  console.log(
    `ratio: ${(baseMs / ourMs).toFixed(1)}x faster (target >= 5x); bytes ${(baseBytes / ourBytes).toFixed(0)}x fewer`,
  );
  console.log(`bytes within budget: ${ourBytes <= budget ? 'yes' : 'NO'} (${ourBytes} <= ${budget})`);
  if (!ours.every((r) => r.verified)) process.exitCode = 1;
} finally {
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}

function manifestPath(digest: string): string[] {
  const [algorithm, hex] = digest.split(':') as [string, string];
  return [algorithm, hex];
}
