import type { BuildSignConfig } from './config.ts';
import { BuildSignError, JobStoreError } from './errors.ts';
import { JobAnnotation, isControlledBy, jobSelector, type JobOwner, type ModuleRef } from './identity.ts';
import { clipDetail, observeJob } from './job-status.ts';
import { buildJob, signJob, type JobSpecification, type SecretDigests } from './jobs.ts';
import type { Job } from './kube-types.ts';
import {
  needsBuildOrSign,
  planBuild,
  planSign,
  type BuildPlan,
  type BuildSignRequest,
  type SignPlan,
} from './plan.ts';
import type { BuildInputsReader, JobStore } from './store.ts';

/**
 * The Build and Sign stages over several reconciles. Each call looks at the cluster and moves one step: it
 * starts the Job the module needs, adopts the one already there (after a restart, or one another reconcile
 * created), replaces a Job whose inputs changed, and reads a finished Job's verdict. Build's success leads straight
 * into Sign when a sign section applies. Nothing is kept in memory between calls, so any replica can make the
 * next one.
 */

export type BuildSignStageName = 'Build' | 'Sign';
export type BuildSignState = 'running' | 'succeeded' | 'failed';

export interface BuildSignProgress {
  readonly stage: BuildSignStageName;
  readonly state: BuildSignState;
  /** For the status entry: names the Job, says what it waits for, why it failed, or whether it pushed. */
  readonly reason: string;
  readonly job?: { readonly namespace: string; readonly name: string };
  /** Succeeded and pushed the image. */
  readonly pushed: boolean;
  /**
   * For `failed`: true when no Job was made because the Module's spec or the resource must change first (build
   * plus sign without push, no files to sign...). False for a failed Job (a build can fail for passing reasons, a
   * registry or mirror down, so the engine's periodic retry may rerun it) and for a missing ConfigMap or Secret
   * (it may appear without any edit of the Module).
   */
  readonly definite: boolean;
  /**
   * Set when a pushed build or sign succeeded: the engine must run the Image stage again on `image` (and may pin
   * `digest`, which Kaniko reported) before calling the module verified; `signed` says the modules there must
   * carry a signature.
   */
  readonly verify?: { readonly image: string; readonly digest?: string; readonly signed: boolean };
}

export interface BuildSignStageDependencies {
  readonly jobs: JobStore;
  readonly inputs: BuildInputsReader;
  readonly config: BuildSignConfig;
}

const STAGE_NAME: Record<JobSpecification['stage'], BuildSignStageName> = { build: 'Build', sign: 'Sign' };

function refused(stage: BuildSignStageName, error: BuildSignError): BuildSignProgress {
  return {
    stage,
    state: 'failed',
    reason: `cannot ${stage === 'Build' ? 'build' : 'sign'}: ${error.message}`,
    pushed: false,
    definite: error.definite,
  };
}

export class BuildSignStage {
  readonly #jobs: JobStore;
  readonly #inputs: BuildInputsReader;
  readonly #config: BuildSignConfig;

  constructor(dependencies: BuildSignStageDependencies) {
    this.#jobs = dependencies.jobs;
    this.#inputs = dependencies.inputs;
    this.#config = dependencies.config;
  }

  /**
   * One step of Build then Sign for a module whose image failed the Image stage. Call it again whenever the
   * module's Jobs change (the runner watches them) until `state` is not `running`. Rejects only on errors reaching
   * the API server, which the caller retries with backoff.
   */
  async observeOrStart(request: BuildSignRequest): Promise<BuildSignProgress> {
    if (!needsBuildOrSign(request.target)) {
      throw new Error(
        'observeOrStart: no build or sign section applies for this kernel (check needsBuildOrSign)',
      );
    }
    // Both Jobs are specified before either runs, so anything that would stop Sign is reported before Build starts.
    let build: JobSpecification | undefined;
    let sign: JobSpecification | undefined;
    let stage: BuildSignStageName = 'Build';
    try {
      const buildPlan = request.target.build === undefined ? undefined : planBuild(request, this.#config);
      if (buildPlan !== undefined) build = await this.#buildSpecification(request, buildPlan);
      stage = 'Sign';
      if (request.target.sign !== undefined) {
        sign = await this.#signSpecification(request, planSign(request, this.#config, buildPlan));
      }
    } catch (error) {
      if (error instanceof BuildSignError) return refused(stage, error);
      throw error;
    }
    if (build !== undefined) {
      const built = await this.#step(request, build);
      if (built.state !== 'succeeded' || sign === undefined) return built;
    }
    if (sign === undefined) throw new Error('unreachable: neither build nor sign was specified');
    return this.#step(request, sign);
  }

  async #buildSpecification(request: BuildSignRequest, plan: BuildPlan): Promise<JobSpecification> {
    const { namespace } = request.module;
    const dockerfile = await this.#inputs.configMapValue(namespace, plan.dockerfileConfigMap, 'dockerfile');
    if (dockerfile === undefined || dockerfile.trim() === '') {
      throw new BuildSignError(
        'DOCKERFILE_NOT_FOUND',
        `ConfigMap ${namespace}/${plan.dockerfileConfigMap} (build.dockerfileConfigMap) is missing or has no key \`dockerfile\``,
      );
    }
    const digests: Record<string, string> = { ...(await this.#repoSecretDigest(request)) };
    for (const secret of plan.secrets) {
      digests[`secret/${secret}`] = await this.#requireSecret(namespace, secret, undefined, 'build.secrets');
    }
    return buildJob(request, plan, dockerfile, digests, this.#config);
  }

  async #signSpecification(request: BuildSignRequest, plan: SignPlan): Promise<JobSpecification> {
    const { namespace } = request.module;
    const digests: SecretDigests = {
      ...(await this.#repoSecretDigest(request)),
      key: await this.#requireSecret(namespace, plan.keySecret, 'key', 'sign.keySecret'),
      cert: await this.#requireSecret(namespace, plan.certSecret, 'cert', 'sign.certSecret'),
    };
    return signJob(request, plan, digests, this.#config);
  }

  async #repoSecretDigest(request: BuildSignRequest): Promise<SecretDigests> {
    const name = request.target.imageRepoSecret?.name;
    if (name === undefined) return {};
    return {
      imageRepoSecret: await this.#requireSecret(
        request.module.namespace,
        name,
        '.dockerconfigjson',
        'imageRepoSecret',
      ),
    };
  }

  async #requireSecret(
    namespace: string,
    name: string,
    key: string | undefined,
    field: string,
  ): Promise<string> {
    const digest = await this.#inputs.secretDigest(namespace, name, key === undefined ? undefined : [key]);
    if (digest === undefined) {
      throw new BuildSignError(
        'SECRET_NOT_FOUND',
        `Secret ${namespace}/${name} (${field}) is missing${key === undefined ? '' : ` or has no key \`${key}\``}`,
      );
    }
    return digest;
  }

  /** Drives one Job: adopt, replace, start or read it. */
  async #step(request: BuildSignRequest, spec: JobSpecification): Promise<BuildSignProgress> {
    const existing = await this.#jobs.getJob(spec.namespace, spec.name);
    if (existing === undefined) return this.#start(request, spec);
    if (!isControlledBy(existing.metadata.ownerReferences, request.owner)) {
      return refused(
        STAGE_NAME[spec.stage],
        new BuildSignError(
          'JOB_NAME_TAKEN',
          `Job ${spec.namespace}/${spec.name} exists but is not controlled by ${request.owner.kind} ${request.owner.name}; delete it`,
        ),
      );
    }
    if (existing.metadata.deletionTimestamp !== undefined) {
      return this.#running(spec, 'waiting for the previous Job of this name to be deleted');
    }
    const progress = await this.#read(existing, spec);
    if (progress.state === 'failed' && request.rerunFailed === true) {
      await this.#delete(existing);
      return this.#start(request, spec);
    }
    return progress;
  }

  async #start(request: BuildSignRequest, spec: JobSpecification): Promise<BuildSignProgress> {
    // Jobs of this module and stage with other inputs are stale: the Module, a Secret or the Dockerfile changed.
    const stale = (await this.#ownedJobs(request.owner, request.module, spec.stage)).filter(
      (job) => job.metadata.name !== spec.name,
    );
    await Promise.all(stale.map((job) => this.#delete(job)));
    try {
      await this.#jobs.createJob(spec.job);
    } catch (error) {
      if (!(error instanceof JobStoreError && error.code === 'ALREADY_EXISTS')) throw error;
      // Created meanwhile by another reconcile, or the failed Job being rerun is still being deleted.
      return this.#running(spec, 'created concurrently; observing it');
    }
    return this.#running(
      spec,
      stale.length === 0 ? 'started' : `started, replacing ${stale.map((j) => j.metadata.name).join(', ')}`,
    );
  }

  async #read(job: Job, spec: JobSpecification): Promise<BuildSignProgress> {
    const observation = observeJob(job, await this.#jobs.listJobPods(job));
    const stage = STAGE_NAME[spec.stage];
    const jobRef = { namespace: spec.namespace, name: spec.name };
    const what = `${spec.stage} Job ${spec.namespace}/${spec.name}`;
    switch (observation.phase) {
      case 'running':
        return this.#running(spec, observation.detail ?? 'running');
      case 'failed': {
        let detail = observation.detail;
        if (observation.logsFrom !== undefined) {
          const tail = await this.#jobs.podLogTail(
            spec.namespace,
            observation.logsFrom.pod,
            observation.logsFrom.container,
          );
          if (tail !== undefined && tail.trim() !== '')
            detail = clipDetail(`${detail === undefined ? '' : `${detail}; `}log: ${tail}`);
        }
        return {
          stage,
          state: 'failed',
          reason: `${what} failed: ${detail ?? 'no reason given'}`,
          job: jobRef,
          pushed: false,
          definite: false,
        };
      }
      case 'succeeded':
        if (!spec.push) {
          return {
            stage,
            state: 'succeeded',
            reason: `${what} succeeded; the image was not pushed (pushBuiltImage is false), so it was not checked`,
            job: jobRef,
            pushed: false,
            definite: false,
          };
        }
        return {
          stage,
          state: 'succeeded',
          reason: `${what} succeeded and pushed ${spec.image}${observation.digest === undefined ? '' : `@${observation.digest}`}`,
          job: jobRef,
          pushed: true,
          definite: false,
          verify: {
            image: spec.image,
            ...(observation.digest === undefined ? {} : { digest: observation.digest }),
            signed: spec.stage === 'sign',
          },
        };
    }
  }

  #running(spec: JobSpecification, detail: string): BuildSignProgress {
    return {
      stage: STAGE_NAME[spec.stage],
      state: 'running',
      reason: `${spec.stage} Job ${spec.namespace}/${spec.name} running: ${detail}`,
      job: { namespace: spec.namespace, name: spec.name },
      pushed: false,
      definite: false,
    };
  }

  async #ownedJobs(owner: JobOwner, module: ModuleRef, stage?: JobSpecification['stage']): Promise<Job[]> {
    const jobs = await this.#jobs.listJobs(module.namespace, jobSelector(owner, module, stage));
    const moduleKey = `${module.namespace}/${module.name}`;
    return jobs.filter(
      (job) =>
        job.metadata.annotations?.[JobAnnotation.module] === moduleKey &&
        isControlledBy(job.metadata.ownerReferences, owner),
    );
  }

  async #delete(job: Job): Promise<void> {
    if (job.metadata.uid === undefined)
      throw new Error(`Job ${job.metadata.namespace}/${job.metadata.name} has no uid`);
    await this.#jobs.deleteJob(job.metadata.namespace, job.metadata.name, job.metadata.uid);
  }
}
