import { createHash, randomUUID } from 'node:crypto';
import { JobStoreError } from '../../src/buildsign/errors.ts';
import type { Job, Pod } from '../../src/buildsign/kube-types.ts';
import type { BuildInputsReader, JobStore } from '../../src/buildsign/store.ts';

/**
 * JobStore and BuildInputsReader over maps, with the API server's rules that matter to the stage (names unique
 * per namespace, UIDs assigned on create, delete preconditioned on UID). Tests play the Job controller by setting
 * Job conditions and Pods. The real-cluster behaviour is covered by test/e2e/buildsign.test.ts.
 */
export class MemoryCluster implements JobStore, BuildInputsReader {
  readonly jobs = new Map<string, Job>();
  readonly pods = new Map<string, Pod[]>();
  readonly logs = new Map<string, string>();
  readonly configMaps = new Map<string, Record<string, string>>();
  readonly secrets = new Map<string, Record<string, string>>();
  readonly calls: string[] = [];

  getJob(namespace: string, name: string): Promise<Job | undefined> {
    return Promise.resolve(this.jobs.get(`${namespace}/${name}`));
  }

  listJobs(namespace: string, labels: Readonly<Record<string, string>>): Promise<Job[]> {
    return Promise.resolve(
      [...this.jobs.values()].filter(
        (job) =>
          job.metadata.namespace === namespace &&
          Object.entries(labels).every(([k, v]) => job.metadata.labels?.[k] === v),
      ),
    );
  }

  createJob(job: Job): Promise<Job> {
    const key = `${job.metadata.namespace}/${job.metadata.name}`;
    this.calls.push(`create ${job.metadata.name}`);
    if (this.jobs.has(key)) return Promise.reject(new JobStoreError('ALREADY_EXISTS', `${key} exists`));
    const created: Job = {
      ...job,
      metadata: { ...job.metadata, uid: randomUUID(), creationTimestamp: new Date().toISOString() },
    };
    this.jobs.set(key, created);
    return Promise.resolve(created);
  }

  deleteJob(namespace: string, name: string, uid: string): Promise<void> {
    const key = `${namespace}/${name}`;
    this.calls.push(`delete ${name}`);
    if (this.jobs.get(key)?.metadata.uid === uid) {
      this.jobs.delete(key);
      this.pods.delete(uid);
    }
    return Promise.resolve();
  }

  listJobPods(job: Job): Promise<Pod[]> {
    return Promise.resolve(this.pods.get(job.metadata.uid ?? '') ?? []);
  }

  podLogTail(namespace: string, pod: string): Promise<string | undefined> {
    return Promise.resolve(this.logs.get(`${namespace}/${pod}`));
  }

  configMapValue(namespace: string, name: string, key: string): Promise<string | undefined> {
    return Promise.resolve(this.configMaps.get(`${namespace}/${name}`)?.[key]);
  }

  secretDigest(namespace: string, name: string, keys?: readonly string[]): Promise<string | undefined> {
    const data = this.secrets.get(`${namespace}/${name}`);
    if (data === undefined) return Promise.resolve(undefined);
    const selected = keys ?? Object.keys(data).sort();
    if (selected.some((key) => data[key] === undefined)) return Promise.resolve(undefined);
    const hash = createHash('sha256');
    for (const key of selected) hash.update(`${key}\0${data[key]}\0`);
    return Promise.resolve(hash.digest('hex'));
  }

  /** Plays the Job controller and kubelet: the Job's single pod ends as given. */
  finish(
    namespace: string,
    name: string,
    outcome: { succeeded: true; message?: string } | { succeeded: false; message?: string; reason?: string },
  ): void {
    const job = this.jobs.get(`${namespace}/${name}`);
    if (job?.metadata.uid === undefined) throw new Error(`no Job ${namespace}/${name}`);
    const podName = `${name}-x1`;
    const exitCode = outcome.succeeded ? 0 : 1;
    this.pods.set(job.metadata.uid, [
      {
        metadata: { name: podName, namespace, creationTimestamp: new Date().toISOString() },
        status: {
          phase: outcome.succeeded ? 'Succeeded' : 'Failed',
          containerStatuses: [
            {
              name: 'kaniko',
              state: {
                terminated: {
                  exitCode,
                  ...(outcome.message === undefined ? {} : { message: outcome.message }),
                },
              },
            },
          ],
        },
      },
    ]);
    const condition = outcome.succeeded
      ? { type: 'Complete', status: 'True' }
      : { type: 'Failed', status: 'True', reason: outcome.reason ?? 'BackoffLimitExceeded' };
    this.jobs.set(`${namespace}/${name}`, { ...job, status: { conditions: [condition] } });
  }
}
