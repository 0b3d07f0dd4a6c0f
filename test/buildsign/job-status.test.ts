import { expect } from 'chai';
import { MAX_DETAIL_LENGTH, clipDetail, observeJob } from '../../src/buildsign/job-status.ts';
import type { Job, Pod } from '../../src/buildsign/kube-types.ts';
import { jobObject } from './job-object.ts';

function job(conditions: NonNullable<Job['status']>['conditions'] = []): Job {
  return jobObject({ name: 'kmod-a-pfv-build-0123456789', namespace: 'team-a', uid: 'u1' }, 1, {
    conditions,
  });
}

function pod(name: string, created: string, status: Pod['status']): Pod {
  return {
    metadata: { name, namespace: 'team-a', creationTimestamp: created },
    ...(status === undefined ? {} : { status }),
  };
}

const DIGEST = `sha256:${'c'.repeat(64)}`;
const complete = [{ type: 'Complete', status: 'True' }];
const failed = [
  {
    type: 'Failed',
    status: 'True',
    reason: 'BackoffLimitExceeded',
    message: 'Job has reached the specified backoff limit',
  },
];

describe('buildsign Job status', () => {
  it('a Job without a pod yet is running', () => {
    expect(observeJob(job(), [])).to.deep.equal({ phase: 'running', detail: 'no pod yet' });
  });

  it('a running Job says what its pod is stuck on, but not ordinary container creation', () => {
    const pulling = pod('p1', '2026-01-01T00:00:00Z', {
      phase: 'Pending',
      containerStatuses: [
        {
          name: 'kaniko',
          state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "gcr.io/x"' } },
        },
      ],
    });
    expect(observeJob(job(), [pulling]).detail).to.equal(
      'pod p1 waiting: ImagePullBackOff: Back-off pulling image "gcr.io/x"',
    );
    const creating = pod('p1', '2026-01-01T00:00:00Z', {
      phase: 'Pending',
      containerStatuses: [{ name: 'kaniko', state: { waiting: { reason: 'ContainerCreating' } } }],
    });
    expect(observeJob(job(), [creating]).detail).to.equal('pod p1 pending');
    const unscheduled = pod('p1', '2026-01-01T00:00:00Z', {
      phase: 'Pending',
      conditions: [
        {
          type: 'PodScheduled',
          status: 'False',
          reason: 'Unschedulable',
          message: '0/3 nodes are available',
        },
      ],
    });
    expect(observeJob(job(), [unscheduled]).detail).to.equal(
      'pod p1 not scheduled: Unschedulable: 0/3 nodes are available',
    );
  });

  it('a completed Job succeeded, with the digest Kaniko wrote to the termination log', () => {
    const done = pod('p1', '2026-01-01T00:00:00Z', {
      phase: 'Succeeded',
      containerStatuses: [
        {
          name: 'kaniko',
          state: { terminated: { exitCode: 0, reason: 'Completed', message: `${DIGEST}\n` } },
        },
      ],
    });
    expect(observeJob(job(complete), [done])).to.deep.equal({ phase: 'succeeded', digest: DIGEST });
    const noDigest = pod('p1', '2026-01-01T00:00:00Z', { phase: 'Succeeded' });
    expect(observeJob(job(complete), [noDigest])).to.deep.equal({ phase: 'succeeded' });
  });

  it("a failed Job gives the Job's reason and the newest failed pod's termination message", () => {
    const older = pod('p1', '2026-01-01T00:00:00Z', {
      phase: 'Failed',
      containerStatuses: [
        { name: 'kaniko', state: { terminated: { exitCode: 1, message: 'first attempt' } } },
      ],
    });
    const newer = pod('p2', '2026-01-01T00:01:00Z', {
      phase: 'Failed',
      containerStatuses: [
        {
          name: 'kaniko',
          state: {
            terminated: {
              exitCode: 1,
              reason: 'Error',
              message: 'error building image: make: *** [all] Error 2\n',
            },
          },
        },
      ],
    });
    expect(observeJob(job(failed), [older, newer])).to.deep.equal({
      phase: 'failed',
      detail:
        'BackoffLimitExceeded: Job has reached the specified backoff limit; pod p2: container kaniko exited with code 1 (Error): error building image: make: *** [all] Error 2',
    });
  });

  it("falls back to the pod's own reason, then asks for the log tail", () => {
    const evicted = pod('p1', '2026-01-01T00:00:00Z', {
      phase: 'Failed',
      reason: 'Evicted',
      message: 'The node was low on memory.',
    });
    expect(observeJob(job(failed), [evicted]).detail).to.match(
      /pod p1: Evicted: The node was low on memory\.$/,
    );
    const silent = pod('p1', '2026-01-01T00:00:00Z', {
      phase: 'Failed',
      containerStatuses: [{ name: 'kaniko', state: { terminated: { exitCode: 137 } } }],
    });
    expect(observeJob(job(failed), [silent])).to.deep.equal({
      phase: 'failed',
      detail:
        'BackoffLimitExceeded: Job has reached the specified backoff limit; pod p1: container kaniko exited with code 137',
      logsFrom: { pod: 'p1', container: 'kaniko' },
    });
  });

  it('a deadline is reported even when no pod is left', () => {
    const deadline = [
      {
        type: 'Failed',
        status: 'True',
        reason: 'DeadlineExceeded',
        message: 'Job was active longer than specified deadline',
      },
    ];
    expect(observeJob(job(deadline), [])).to.deep.equal({
      phase: 'failed',
      detail: 'DeadlineExceeded: Job was active longer than specified deadline',
    });
  });

  it('ignores conditions that are not True', () => {
    expect(observeJob(job([{ type: 'Failed', status: 'False' }]), []).phase).to.equal('running');
  });

  it('clips long details to their end, where the error is', () => {
    const clipped = clipDetail(`${'x'.repeat(5000)}THE ERROR`);
    expect(clipped.length).to.equal(MAX_DETAIL_LENGTH);
    expect(clipped.startsWith('…')).to.equal(true);
    expect(clipped.endsWith('THE ERROR')).to.equal(true);
  });
});
