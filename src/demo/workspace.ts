import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';

import { buildKernelModule } from '../fixtures/kmod.ts';
import { ART_REPOSITORY, buildReleaseFixture } from '../fixtures/release.ts';
import { buildLayer, type TarEntrySpec } from '../image/oci-layout/tar-layer.ts';
import { writeImage } from '../image/oci-layout/writer.ts';

/**
 * The quick start's world, built for real: an OpenShift release payload and its driver-toolkit image, a handful
 * of kernel-module images and the Module manifests that point at them, all as OCI image layouts on disk. Nothing
 * the demo prints is canned: `kmm-preflight check` reads these files like any others.
 */

export interface DemoWorkspace {
  readonly dir: string;
  /** The kernel of the demo release (from its driver-toolkit). */
  readonly kernel: string;
  readonly releaseImage: string;
  /** `SOURCE=MIRROR`: the payload names its images at quay.io; the demo serves them from a layout. */
  readonly mirror: string;
  readonly modulesDir: string;
  /** The arguments of `kmm-preflight check` for this workspace. */
  readonly checkArgs: readonly string[];
}

const NAMESPACE = 'kmm-demo';
const DIR_NAME = '/opt';

export async function buildDemoWorkspace(dir: string): Promise<DemoWorkspace> {
  const payloadDir = join(dir, 'release');
  const imagesDir = join(dir, 'images');
  const modulesDir = join(dir, 'modules');
  await mkdir(modulesDir, { recursive: true });

  const release = await buildReleaseFixture({ dir: payloadDir, version: '4.19.0' });
  const kernel = release.architectures[0]?.driverToolkit.kernelVersion;
  if (kernel === undefined) throw new Error('demo: the release fixture has no architecture');
  const olderKernel = '5.14.0-362.8.1.el9_3.x86_64';
  const imageRef = (tag: string): string => `oci:${imagesDir}:${tag}`;

  // 1. Built for the new kernel, with depmod's index, using an in-tree module (the driver-toolkit's Module.symvers
  //    lists mlx5_core): verified.
  await writeModuleImage(
    imagesDir,
    `ice-fw-${kernel}`,
    await moduleTree(kernel, 'ice_fw', kernel, true, ['mlx5_core']),
  );
  // 2. Placed under the new kernel's directory but compiled against the old kernel's headers: vermagic says so. It
  //    also needs a helper module that is neither in the image nor in the kernel.
  await writeModuleImage(
    imagesDir,
    `nvme-tcp-ext-${kernel}`,
    await moduleTree(kernel, 'nvme_tcp_ext', olderKernel, true, ['nvme-core', 'nvme_tcp_offload']),
  );
  // 3. An image that was never rebuilt: it only has the old kernel's directory.
  await writeModuleImage(
    imagesDir,
    'legacy-raid-v2',
    await moduleTree(olderKernel, 'legacy_raid', olderKernel, true),
  );
  // 4. No image for the new kernel at all (the tag does not exist); 5. the same, but the Module can build it.

  const modules = [
    module('ice-fw', 'ice_fw', [
      { regexp: '^.+$', containerImage: imageRef('ice-fw-${KERNEL_FULL_VERSION}') },
    ]),
    module('nvme-tcp-ext', 'nvme_tcp_ext', [
      { regexp: '^.+\\.el9.*$', containerImage: imageRef('nvme-tcp-ext-${KERNEL_FULL_VERSION}') },
    ]),
    module('legacy-raid', 'legacy_raid', [
      { regexp: '^5\\.14\\.', containerImage: imageRef('legacy-raid-v2') },
    ]),
    module('acme-nic', 'acme_nic', [
      { regexp: '^.+$', containerImage: imageRef('acme-nic-${KERNEL_FULL_VERSION}') },
    ]),
    module('vendor-gpu', 'vendor_gpu', [
      {
        regexp: '^.+$',
        containerImage: imageRef('vendor-gpu-${KERNEL_FULL_VERSION}'),
        build: { dockerfileConfigMap: { name: 'vendor-gpu-dockerfile' } },
      },
    ]),
    module('old-only', 'old_only', [{ literal: olderKernel, containerImage: imageRef('old-only') }]),
  ];
  await writeFile(join(modulesDir, 'modules.yaml'), modules.map((m) => toYaml(m)).join('---\n'));
  // A GitOps directory holds more than Modules; the check skips the rest with a note.
  await writeFile(
    join(modulesDir, 'dockerfile-configmap.yaml'),
    toYaml({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'vendor-gpu-dockerfile', namespace: NAMESPACE },
      data: {
        dockerfile:
          'FROM registry.example.com/driver-toolkit\nRUN make && depmod -b /opt ${KERNEL_VERSION}\n',
      },
    }),
  );

  const releaseImage = release.releaseLayoutReference;
  const mirror = `${ART_REPOSITORY}=oci:${payloadDir}`;
  return {
    dir,
    kernel,
    releaseImage,
    mirror,
    modulesDir,
    checkArgs: ['check', '--release-image', releaseImage, '--mirror', mirror, '-f', modulesDir],
  };
}

/**
 * `<dirName>/lib/modules/<kernelDir>/extra/<name>.ko` built for `builtFor`, depending on `depends` (modules outside
 * the image), with modules.dep when `depmod`.
 */
async function moduleTree(
  kernelDir: string,
  name: string,
  builtFor: string,
  depmod: boolean,
  depends: readonly string[] = [],
): Promise<TarEntrySpec[]> {
  const root = `${DIR_NAME.slice(1)}/lib/modules/${kernelDir}`;
  const entries: TarEntrySpec[] = [
    { type: 'directory', name: `${root}/extra` },
    {
      type: 'file',
      name: `${root}/extra/${name}.ko`,
      content: await buildKernelModule({ name, kernel: builtFor, depends }),
    },
  ];
  if (depmod) entries.push({ type: 'file', name: `${root}/modules.dep`, content: `extra/${name}.ko:\n` });
  return entries;
}

async function writeModuleImage(dir: string, tag: string, moduleEntries: TarEntrySpec[]): Promise<void> {
  const base: TarEntrySpec[] = [
    { type: 'directory', name: 'usr/bin' },
    { type: 'file', name: 'usr/bin/cp', content: '#!/bin/sh\n', mode: 0o755 },
  ];
  await writeImage(dir, { tag, layers: [await buildLayer(base), await buildLayer(moduleEntries)] });
}

interface MappingSpec {
  readonly regexp?: string;
  readonly literal?: string;
  readonly containerImage: string;
  readonly build?: Record<string, unknown>;
}

function module(name: string, moduleName: string, kernelMappings: MappingSpec[]): Record<string, unknown> {
  return {
    apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
    kind: 'Module',
    metadata: { name, namespace: NAMESPACE },
    spec: {
      selector: { 'node-role.kubernetes.io/worker': 'true' },
      moduleLoader: { container: { modprobe: { moduleName }, kernelMappings } },
    },
  };
}
