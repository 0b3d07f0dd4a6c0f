import { resolve } from 'node:path';

import { ContentType, type KubeClient } from '../../src/platform/kube/client.ts';
import type { KubeJobStore } from '../../src/runner/jobs/kube-job-store.ts';
import type { TestCluster } from '../support/cluster.ts';
import { waitFor } from '../support/wait.ts';

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

const CRD_DIR = resolve(import.meta.dirname, '../../manifests/crds');

/** Applies the project's CRDs and waits until the API server serves PreflightValidationOCP. */
export async function installCrds(cluster: TestCluster): Promise<void> {
  await cluster.kubectl(['apply', '-f', CRD_DIR]);
  await waitFor('the PreflightValidationOCP CRD', async () =>
    (await cluster.kubectl(['get', 'pfvo', '-o', 'name']).catch(() => undefined)) === undefined
      ? undefined
      : true,
  );
}

/**
 * Creates `namespace` with what the suites' Build/Sign specs name: the Dockerfile ConfigMap `kmod-dockerfile`, the
 * signing Secrets `signing-key` and `signing-cert`, and the `extra` v1 objects a suite needs besides.
 */
export async function createBuildSignNamespace(
  cluster: TestCluster,
  namespace: string,
  extra: readonly object[] = [],
): Promise<void> {
  await cluster.kubectl(['create', 'namespace', namespace]);
  const objects = [
    {
      kind: 'ConfigMap',
      metadata: { name: 'kmod-dockerfile' },
      data: { dockerfile: 'FROM base:1\nRUN make\n' },
    },
    ...extra,
    { kind: 'Secret', metadata: { name: 'signing-key' }, stringData: { key: 'PRIVATE KEY' } },
    { kind: 'Secret', metadata: { name: 'signing-cert' }, stringData: { cert: 'CERTIFICATE' } },
  ];
  for (const object of objects) {
    await cluster.kubectl(
      ['apply', '-n', namespace, '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', ...object }),
    );
  }
}
