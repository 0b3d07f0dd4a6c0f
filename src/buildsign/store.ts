import type { Job, Pod } from './kube-types.ts';

/**
 * How the Build and Sign stages reach the cluster. The runner implements both with @kubernetes/client-node
 * (src/runner/jobs/); tests implement them in memory or against the real API server.
 */
export interface JobStore {
  /** The Job, or undefined when there is none of that name. */
  getJob(namespace: string, name: string): Promise<Job | undefined>;
  /** Jobs in `namespace` carrying all of `labels`. */
  listJobs(namespace: string, labels: Readonly<Record<string, string>>): Promise<Job[]>;
  /** Creates the Job; rejects with JobStoreError ALREADY_EXISTS when a Job of that name exists. */
  createJob(job: Job): Promise<Job>;
  /**
   * Deletes the Job of that name and UID (a precondition, so a newer Job of the same name is never removed) with
   * its Pods; resolves when it was gone already.
   */
  deleteJob(namespace: string, name: string, uid: string): Promise<void>;
  /** The Job's Pods (by its controller-uid label), in any order. */
  listJobPods(job: Job): Promise<Pod[]>;
  /** The last lines of a container's log, or undefined when there is no log to read (no kubelet, pod gone). */
  podLogTail(namespace: string, pod: string, container: string): Promise<string | undefined>;
}

/**
 * What the Jobs read from the Module's namespace before they exist: the Dockerfile, and a digest of the Secrets
 * they mount, so a Job is replaced when one of them changes and refused when one is missing. Secret bytes stay
 * inside the implementation; only their digest comes out.
 */
export interface BuildInputsReader {
  /** The ConfigMap's data value, or undefined when the ConfigMap or the key does not exist. */
  configMapValue(namespace: string, name: string, key: string): Promise<string | undefined>;
  /**
   * SHA-256 (hex) over the Secret's data for `keys` (all keys when omitted), or undefined when the Secret or one of
   * `keys` does not exist.
   */
  secretDigest(namespace: string, name: string, keys?: readonly string[]): Promise<string | undefined>;
}
