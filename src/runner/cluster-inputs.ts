import type { Logger } from 'pino';
import type { Module } from '../api/module.ts';
import {
  mirrorRulesFromImageContentSourcePolicies,
  mirrorRulesFromImageDigestMirrorSets,
  mirrorRulesFromImageTagMirrorSets,
  type MirrorRule,
} from '../image/mirrors.ts';
import { RegistryCredentials, type PullSecretLike } from '../image/registry/credentials.ts';
import type { ModuleLoaderData } from '../kernel/resolve.ts';
import { isNotFound, type KubeClient } from '../platform/kube/client.ts';
import { errorMessage } from '../platform/errors.ts';

/**
 * What the runner reads from the cluster besides the watched objects: pull secrets (the cluster's and each
 * Module's imageRepoSecret) and the mirror configuration. Secret contents stay in RegistryCredentials; only names
 * and counts are logged.
 */

const SECRET_TTL_MS = 60_000;

export class ClusterCredentials {
  readonly #client: KubeClient;
  readonly #logger: Logger;
  readonly #clusterSecret: { namespace: string; name: string } | undefined;
  readonly #secrets = new Map<string, { at: number; value: Promise<RegistryCredentials | undefined> }>();
  readonly #merged = new WeakMap<
    RegistryCredentials,
    { cluster: RegistryCredentials; credentials: RegistryCredentials }
  >();

  constructor(client: KubeClient, logger: Logger, clusterSecret?: { namespace: string; name: string }) {
    this.#client = client;
    this.#logger = logger;
    this.#clusterSecret = clusterSecret;
  }

  /**
   * The Module's imageRepoSecret first, then the cluster pull secret; either may be absent. The same object comes
   * back for the same secrets, so the Image stage's caches (keyed by credentials identity) are shared by every
   * Module that pulls with them.
   */
  async forModule(module: Module, data: ModuleLoaderData): Promise<RegistryCredentials> {
    const cluster = await this.cluster();
    if (data.imageRepoSecret === undefined) return cluster;
    const own = await this.#secret(module.metadata.namespace, data.imageRepoSecret.name);
    if (own === undefined) return cluster;
    const merged = this.#merged.get(own);
    if (merged?.cluster === cluster) return merged.credentials;
    const credentials = RegistryCredentials.merge(own, cluster);
    this.#merged.set(own, { cluster, credentials });
    return credentials;
  }

  /** The cluster pull secret's credentials (none when not configured or missing). */
  async cluster(): Promise<RegistryCredentials> {
    if (this.#clusterSecret === undefined) return RegistryCredentials.none;
    return (
      (await this.#secret(this.#clusterSecret.namespace, this.#clusterSecret.name)) ??
      RegistryCredentials.none
    );
  }

  /** Secrets are re-read after a minute, so a rotated or newly created one is picked up. */
  #secret(namespace: string, name: string): Promise<RegistryCredentials | undefined> {
    const key = `${namespace}/${name}`;
    const cached = this.#secrets.get(key);
    const now = Date.now();
    if (cached !== undefined && now - cached.at < SECRET_TTL_MS) return cached.value;
    const value = this.#client
      .request<PullSecretLike>('GET', `/api/v1/namespaces/${namespace}/secrets/${name}`)
      .then(
        (secret) => RegistryCredentials.fromSecret(secret),
        (err: unknown) => {
          if (isNotFound(err)) {
            this.#logger.debug({ secret: key }, 'pull secret not found; pulling without it');
          } else {
            this.#logger.warn(
              { secret: key, err: errorMessage(err) },
              'could not read pull secret; pulling without it',
            );
            this.#secrets.delete(key);
          }
          return undefined;
        },
      );
    this.#secrets.set(key, { at: now, value });
    return value;
  }
}

const MIRROR_APIS = [
  {
    path: '/apis/config.openshift.io/v1/imagedigestmirrorsets',
    convert: mirrorRulesFromImageDigestMirrorSets,
  },
  { path: '/apis/config.openshift.io/v1/imagetagmirrorsets', convert: mirrorRulesFromImageTagMirrorSets },
  {
    path: '/apis/operator.openshift.io/v1alpha1/imagecontentsourcepolicies',
    convert: mirrorRulesFromImageContentSourcePolicies,
  },
] as const;

/** Mirror rules from the cluster's IDMS, ITMS and ICSP objects; an API the cluster does not serve is skipped. */
export async function readClusterMirrorRules(client: KubeClient, logger: Logger): Promise<MirrorRule[]> {
  const rules: MirrorRule[] = [];
  for (const api of MIRROR_APIS) {
    try {
      const list = await client.request<{ items?: unknown[] }>('GET', api.path);
      const converted = api.convert(list.items ?? []);
      rules.push(...converted.rules);
      for (const problem of converted.problems)
        logger.warn({ api: api.path, problem }, 'mirror entry skipped');
    } catch (err) {
      if (!isNotFound(err)) {
        logger.warn({ api: api.path, err: errorMessage(err) }, 'mirrors not read');
      }
    }
  }
  return rules;
}
