import type { Job } from '../../src/buildsign/kube-types.ts';

/** A Build/Sign Job object as the API server returns it, with an empty Pod template: tests vary only these parts. */
export function jobObject(metadata: Job['metadata'], backoffLimit: number, status?: Job['status']): Job {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata,
    spec: {
      completions: 1,
      parallelism: 1,
      backoffLimit,
      activeDeadlineSeconds: 3600,
      template: {
        metadata: { labels: {} },
        spec: {
          restartPolicy: 'Never',
          containers: [],
          volumes: [],
          automountServiceAccountToken: false,
          enableServiceLinks: false,
        },
      },
    },
    ...(status === undefined ? {} : { status }),
  };
}
