import { JobAnnotation, type JobOwner } from '../../src/buildsign/identity.ts';
import type { Job } from '../../src/buildsign/kube-types.ts';
import { jobObject } from '../buildsign/job-object.ts';

/** Build/Sign Jobs as the runner's informer cache holds them, for the clean-up tests. */

export const FIXTURE_OWNER: JobOwner = {
  apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
  kind: 'PreflightValidationOCP',
  name: 'pf',
  uid: 'u1',
};

export type FixtureJobState = 'running' | 'failed' | 'succeeded';

/** A Job `name` for `module` (`namespace/name`), controlled by FIXTURE_OWNER unless `ownerUid` says otherwise. */
export function fixtureJob(
  name: string,
  module: string,
  state: FixtureJobState,
  extra: { ownerUid?: string; deleting?: boolean; noModule?: boolean } = {},
): Job {
  const [namespace = 'ns'] = module.split('/');
  const condition = { running: undefined, failed: 'Failed', succeeded: 'Complete' }[state];
  return jobObject(
    {
      name,
      namespace,
      uid: `uid-${name}`,
      annotations: extra.noModule === true ? {} : { [JobAnnotation.module]: module },
      ownerReferences: [{ ...FIXTURE_OWNER, uid: extra.ownerUid ?? FIXTURE_OWNER.uid, controller: true }],
      ...(extra.deleting === true ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    0,
    condition === undefined ? undefined : { conditions: [{ type: condition, status: 'True' }] },
  );
}
