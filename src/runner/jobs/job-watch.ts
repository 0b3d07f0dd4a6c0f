import { KMM_API_VERSION } from '../../api/meta.ts';
import { PREFLIGHT_KIND } from '../../api/preflight.ts';
import { JobAnnotation, JobLabel, MANAGED_BY } from '../../buildsign/identity.ts';
import type { Job } from '../../buildsign/kube-types.ts';
import type { ResourceDescriptor } from '../../platform/kube/informer.ts';

/**
 * What the runner needs to watch its own Build/Sign Jobs: the resource, a selector that matches only Jobs this
 * project made, and the PreflightValidationOCP a Job event should requeue.
 */

export const JOB_RESOURCE: ResourceDescriptor = {
  group: 'batch',
  version: 'v1',
  plural: 'jobs',
  namespaced: true,
};

/** Matches the Jobs src/buildsign creates, and nothing else. */
export const JOB_LABEL_SELECTOR = `${JobLabel.managedBy}=${MANAGED_BY}`;

/** The name of the PreflightValidationOCP controlling `job`, or undefined for a Job that is not one of ours. */
export function owningResource(job: Pick<Job, 'metadata'>): string | undefined {
  return job.metadata.ownerReferences?.find(
    (ref) => ref.controller === true && ref.kind === PREFLIGHT_KIND && ref.apiVersion === KMM_API_VERSION,
  )?.name;
}

/** The Module a Job builds or signs for (its `<namespace>/<name>` annotation), or undefined when it has none. */
export function moduleOfJob(job: Pick<Job, 'metadata'>): { namespace: string; name: string } | undefined {
  const value = job.metadata.annotations?.[JobAnnotation.module];
  const slash = value?.indexOf('/') ?? -1;
  if (value === undefined || slash <= 0 || slash === value.length - 1) return undefined;
  return { namespace: value.slice(0, slash), name: value.slice(slash + 1) };
}
