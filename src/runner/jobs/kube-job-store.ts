import { createHash } from 'node:crypto';
import { ApiException, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { JobStoreError } from '../../buildsign/errors.ts';
import type { Job, Pod } from '../../buildsign/kube-types.ts';
import type { BuildInputsReader, JobStore } from '../../buildsign/store.ts';
import { ContentType, KubeApiError, isNotFound, type KubeClient } from '../../platform/kube/client.ts';
import { errorMessage } from '../../platform/errors.ts';

/**
 * The Build/Sign stages' view of the cluster over the runner's KubeClient (plain JSON in and out, so the Jobs
 * src/buildsign writes go to the API server as they are). Pod logs are text, not JSON, so they come through
 * client-node's CoreV1Api on the same kubeconfig.
 *
 * Secret data is hashed here and only the digest leaves: no Secret byte reaches a log line, a status or a Job.
 */

/** Lines of a failed container's log kept when it left no termination message. */
export const LOG_TAIL_LINES = 20;
const LOG_TAIL_BYTES = 4096;

interface List<T> {
  readonly items: T[];
}

interface ConfigMapLike {
  readonly data?: Readonly<Record<string, string>>;
}

interface SecretLike {
  readonly data?: Readonly<Record<string, string>>;
}

function selector(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels)
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
}

const jobsPath = (namespace: string): string =>
  `/apis/batch/v1/namespaces/${encodeURIComponent(namespace)}/jobs`;
const corePath = (namespace: string, plural: string, name: string): string =>
  `/api/v1/namespaces/${encodeURIComponent(namespace)}/${plural}/${encodeURIComponent(name)}`;

async function orUndefined<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export class KubeJobStore implements JobStore, BuildInputsReader {
  readonly #client: KubeClient;
  readonly #core: CoreV1Api;
  readonly #logger: Logger;

  /** `logger` hears about pod logs it could not read (default: silent, for tests that drive the store). */
  constructor(client: KubeClient, kubeConfig: KubeConfig, logger: Logger = pino({ level: 'silent' })) {
    this.#client = client;
    this.#core = kubeConfig.makeApiClient(CoreV1Api);
    this.#logger = logger;
  }

  getJob(namespace: string, name: string): Promise<Job | undefined> {
    return orUndefined(
      this.#client.request<Job>('GET', `${jobsPath(namespace)}/${encodeURIComponent(name)}`),
    );
  }

  async listJobs(namespace: string, labels: Readonly<Record<string, string>>): Promise<Job[]> {
    const list = await this.#client.request<List<Job>>('GET', jobsPath(namespace), {
      query: { labelSelector: selector(labels) },
    });
    return list.items;
  }

  async createJob(job: Job): Promise<Job> {
    try {
      return await this.#client.request<Job>('POST', jobsPath(job.metadata.namespace), {
        body: job,
        contentType: ContentType.json,
      });
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 409) {
        throw new JobStoreError(
          'ALREADY_EXISTS',
          `Job ${job.metadata.namespace}/${job.metadata.name} exists`,
          {
            cause: err,
          },
        );
      }
      throw err;
    }
  }

  async deleteJob(namespace: string, name: string, uid: string): Promise<void> {
    try {
      await this.#client.request('DELETE', `${jobsPath(namespace)}/${encodeURIComponent(name)}`, {
        // Background: the Job goes at once and the garbage collector removes its Pods; the UID precondition keeps
        // a newer Job of the same name (created by another replica meanwhile) safe.
        body: {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          propagationPolicy: 'Background',
          preconditions: { uid },
        },
        contentType: ContentType.json,
      });
    } catch (err) {
      // Gone already, or the name now belongs to another Job (the UID precondition failed): nothing to delete.
      if (isNotFound(err) || (err instanceof KubeApiError && err.status === 409)) return;
      throw err;
    }
  }

  async listJobPods(job: Job): Promise<Pod[]> {
    if (job.metadata.uid === undefined) return [];
    const list = await this.#client.request<List<Pod>>(
      'GET',
      `/api/v1/namespaces/${encodeURIComponent(job.metadata.namespace)}/pods`,
      {
        query: { labelSelector: `controller-uid=${job.metadata.uid}` },
      },
    );
    return list.items;
  }

  async podLogTail(namespace: string, pod: string, container: string): Promise<string | undefined> {
    try {
      return await this.#core.readNamespacedPodLog({
        name: pod,
        namespace,
        container,
        tailLines: LOG_TAIL_LINES,
        limitBytes: LOG_TAIL_BYTES,
      });
    } catch (err) {
      // No kubelet to ask, the node is gone, or the pod was collected: the status says what it knows without it.
      // A refusal is different: the runner's RBAC lacks pods/log, which an administrator must see to fix.
      const code = err instanceof ApiException ? err.code : undefined;
      const fields = { namespace, pod, container, code };
      if (code === 401 || code === 403) {
        this.#logger.warn(
          fields,
          'reading a failed build/sign pod log was refused: grant the runner get on pods/log',
        );
      } else {
        this.#logger.debug({ ...fields, err: errorMessage(err) }, 'pod log unavailable');
      }
      return undefined;
    }
  }

  async configMapValue(namespace: string, name: string, key: string): Promise<string | undefined> {
    const configMap = await orUndefined(
      this.#client.request<ConfigMapLike>('GET', corePath(namespace, 'configmaps', name)),
    );
    return configMap?.data?.[key];
  }

  async secretDigest(namespace: string, name: string, keys?: readonly string[]): Promise<string | undefined> {
    const secret = await orUndefined(
      this.#client.request<SecretLike>('GET', corePath(namespace, 'secrets', name)),
    );
    if (secret === undefined) return undefined;
    const data = secret.data ?? {};
    const selected = keys ?? Object.keys(data).sort();
    const hash = createHash('sha256');
    for (const key of selected) {
      const value = data[key];
      if (value === undefined) return undefined;
      hash.update(`${key}\0${value}\0`);
    }
    return hash.digest('hex');
  }
}
