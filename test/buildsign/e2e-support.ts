import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildKernelModule, type ModuleSigningKey } from '../../src/fixtures/kmod.ts';
import { buildLayer } from '../../src/image/oci-layout/tar-layer.ts';
import { writeImage } from '../../src/image/oci-layout/writer.ts';
import { ContentType, type KubeClient } from '../../src/platform/kube/client.ts';
import type { KubeJobStore } from '../../src/runner/jobs/kube-job-store.ts';
import { pushLayout, type TestRegistry } from '../support/registry.ts';
import { waitFor } from '../runner/e2e-support.ts';

/**
 * What the Build/Sign e2e suites play, since the loopback cluster has neither a kubelet nor a Kaniko that could
 * run: the kubelet reporting a Job's Pod as ended (through pods/status, with a termination message), and Kaniko
 * pushing the image it built or signed to the registry.
 */

/** Ends the (first) Pod of the Job, as the kubelet would after running the Kaniko container from `image`. */
export async function finishJobPod(
  client: KubeClient,
  store: KubeJobStore,
  image: string,
  namespace: string,
  jobName: string,
  phase: 'Succeeded' | 'Failed',
  message: string,
): Promise<void> {
  const job = await store.getJob(namespace, jobName);
  if (job === undefined) throw new Error(`no Job ${namespace}/${jobName}`);
  const pod = await waitFor(`a Pod of Job ${jobName}`, async () => (await store.listJobPods(job))[0]);
  await client.request('PATCH', `/api/v1/namespaces/${namespace}/pods/${pod.metadata.name}/status`, {
    contentType: ContentType.mergePatch,
    body: {
      status: {
        phase,
        containerStatuses: [
          {
            name: 'kaniko',
            ready: false,
            restartCount: 0,
            image,
            imageID: '',
            state: {
              terminated: {
                exitCode: phase === 'Succeeded' ? 0 : 1,
                reason: phase === 'Succeeded' ? 'Completed' : 'Error',
                message,
              },
            },
          },
        ],
      },
    },
  });
}

/**
 * Pushes `<registry>/<repository>:<tag>` with `/opt/lib/modules/<kernel>/extra/<module>.ko` (and its modules.dep),
 * built for `builtFor` (default the kernel) and signed when a key is given, as a Build or Sign Job would have.
 */
export async function pushBuiltModuleImage(
  registry: TestRegistry,
  repository: string,
  tag: string,
  content: { moduleName: string; kernel: string; builtFor?: string; signWith?: ModuleSigningKey },
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bs-kmod-'));
  try {
    const ko = await buildKernelModule({
      name: content.moduleName,
      kernel: content.builtFor ?? content.kernel,
      ...(content.signWith === undefined ? {} : { signWith: content.signWith }),
    });
    const layer = await buildLayer([
      { type: 'file', name: `opt/lib/modules/${content.kernel}/extra/${content.moduleName}.ko`, content: ko },
      {
        type: 'file',
        name: `opt/lib/modules/${content.kernel}/modules.dep`,
        content: `extra/${content.moduleName}.ko:\n`,
      },
    ]);
    await writeImage(dir, { layers: [layer], tag: 'image' });
    await pushLayout(`oci:${dir}:image`, `${repository}:${tag}`, registry);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
