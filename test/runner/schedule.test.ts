import { expect } from 'chai';
import type { ModuleVerificationStatus } from '../../src/api/preflight.ts';
import { UsageError } from '../../src/cli/io.ts';
import { StageOutcomes } from '../../src/preflight/outcome.ts';
import type { ModuleIdentity } from '../../src/preflight/status.ts';
import { parseDuration, runnerConfig } from '../../src/runner/config.ts';
import {
  afterJobEvent,
  afterOutcome,
  planValidations,
  rerunsFailedJob,
  type Attempt,
  type ValidationBasis,
} from '../../src/runner/schedule.ts';

const policy = {
  retryIntervalMs: 180_000,
  backoff: { baseMs: 1_000, maxMs: 60_000, jitter: 0 },
  waitingPollMs: 30_000,
};
const K = '5.14.0-284.el9.x86_64';
const basis = (moduleGeneration = 1, resourceGeneration = 1): ValidationBasis => ({
  resourceGeneration,
  moduleGeneration,
  targetKernel: K,
});
const mod = (name: string, generation = 1): ModuleIdentity => ({ namespace: 'ns', name, generation });
const entry = (
  name: string,
  status: 'True' | 'False',
  observedGeneration?: number,
): ModuleVerificationStatus => ({
  namespace: 'ns',
  name,
  verificationStatus: status,
  verificationStage: status === 'True' ? 'Done' : 'Image',
  lastTransitionTime: '2026-01-01T00:00:00Z',
  ...(observedGeneration === undefined ? {} : { observedGeneration }),
});

describe('runner: schedule', () => {
  it('afterOutcome: final never again, definite failures on the retry interval, transient with growing backoff', () => {
    expect(afterOutcome(StageOutcomes.verified('ok'), basis(), undefined, 0, policy).notBefore).to.equal(
      Infinity,
    );
    expect(
      afterOutcome(StageOutcomes.finalFailure('no mapping'), basis(), undefined, 0, policy).notBefore,
    ).to.equal(Infinity);
    expect(
      afterOutcome(StageOutcomes.failedAt('Image', 'x'), basis(), undefined, 5, policy).notBefore,
    ).to.equal(180_005);
    expect(
      afterOutcome(StageOutcomes.waiting('Build', 'x'), basis(), undefined, 0, policy).notBefore,
    ).to.equal(30_000);
    const first = afterOutcome(StageOutcomes.requeued('x', 'Image'), basis(), undefined, 0, policy);
    const second = afterOutcome(StageOutcomes.requeued('x', 'Image'), basis(), first, 0, policy);
    const third = afterOutcome(StageOutcomes.requeued('x', 'Image'), basis(), second, 0, policy);
    expect([first.notBefore, second.notBefore, third.notBefore]).to.deep.equal([1_000, 2_000, 4_000]);
    const otherGeneration = afterOutcome(StageOutcomes.requeued('x', 'Image'), basis(2), third, 0, policy);
    expect(otherGeneration.notBefore, 'a new generation starts the backoff over').to.equal(1_000);
  });

  it('planValidations: pending and due modules run; verified, in-flight and not-yet-due ones do not', () => {
    const modules = [mod('new'), mod('ok'), mod('failed'), mod('retry-due'), mod('busy'), mod('final')];
    const entries = [
      entry('new', 'False'),
      entry('ok', 'True', 1),
      entry('failed', 'False', 1),
      entry('retry-due', 'False', 1),
      entry('busy', 'False'),
      entry('final', 'False', 1),
    ];
    const schedule = new Map<string, Attempt>([
      ['ns/failed', { basis: basis(), notBefore: 5_000, failures: 0 }],
      ['ns/retry-due', { basis: basis(), notBefore: 1_000, failures: 0 }],
      ['ns/final', { basis: basis(), notBefore: Infinity, failures: 0 }],
    ]);
    const plan = planValidations(
      entries,
      modules,
      (m) => basis(m.generation),
      schedule,
      new Set(['ns/busy']),
      1_000,
    );
    expect(plan.due.map((m) => m.name)).to.deep.equal(['new', 'retry-due']);
    expect(plan.nextDueMs).to.equal(5_000);
  });

  it('planValidations: a changed Module (or resource, or kernel) voids its schedule; an unknown failure runs once', () => {
    const schedule = new Map<string, Attempt>([
      ['ns/a', { basis: basis(1), notBefore: Infinity, failures: 0 }],
    ]);
    const changed = planValidations(
      [entry('a', 'False')],
      [mod('a', 2)],
      (m) => basis(m.generation),
      schedule,
      new Set(),
      0,
    );
    expect(changed.due.map((m) => m.name)).to.deep.equal(['a']);
    const newResource = planValidations(
      [entry('a', 'False', 1)],
      [mod('a')],
      (m) => basis(m.generation, 2),
      schedule,
      new Set(),
      0,
    );
    expect(newResource.due).to.have.length(1);
    const afterRestart = planValidations(
      [entry('a', 'False', 1)],
      [mod('a')],
      (m) => basis(m.generation),
      new Map(),
      new Set(),
      0,
    );
    expect(afterRestart.due).to.have.length(1);
    const verified = planValidations(
      [entry('a', 'True', 1)],
      [mod('a')],
      (m) => basis(m.generation),
      new Map(),
      new Set(),
      0,
    );
    expect(verified.due).to.have.length(0);
    expect(verified).to.not.have.property('nextDueMs');
  });
});

describe('runner: reruns of failed Build/Sign Jobs', () => {
  it('only the scheduled retry after a failed Job reruns it, and only for the same basis', () => {
    const failedBuild = afterOutcome(
      StageOutcomes.failedAt('Build', 'Job failed'),
      basis(),
      undefined,
      0,
      policy,
    );
    expect(rerunsFailedJob(failedBuild, basis())).to.equal(true);
    expect(rerunsFailedJob(failedBuild, basis(2)), 'the Module changed: a fresh validation').to.equal(false);
    const failedSign = afterOutcome(
      StageOutcomes.failedAt('Sign', 'Job failed'),
      basis(),
      undefined,
      0,
      policy,
    );
    expect(rerunsFailedJob(failedSign, basis())).to.equal(true);
    const notOurs = [
      afterOutcome(StageOutcomes.failedAt('Image', 'absent'), basis(), undefined, 0, policy),
      afterOutcome(StageOutcomes.waiting('Build', 'Job running'), basis(), undefined, 0, policy),
      afterOutcome(StageOutcomes.refusedAt('Build', 'Secret missing'), basis(), undefined, 0, policy),
      afterOutcome(StageOutcomes.requeued('unreachable', 'Image'), basis(), undefined, 0, policy),
    ];
    for (const attempt of notOurs) expect(rerunsFailedJob(attempt, basis())).to.equal(false);
    expect(rerunsFailedJob(undefined, basis()), 'first validation').to.equal(false);
  });
});

describe('runner: Job events', () => {
  it('make a module waiting for its Job due at once, and nothing else', () => {
    const waiting = afterOutcome(
      StageOutcomes.waiting('Build', 'Job running'),
      basis(),
      undefined,
      1_000,
      policy,
    );
    expect(waiting.notBefore).to.equal(31_000);
    expect(afterJobEvent(waiting, 2_000).notBefore).to.equal(2_000);
    const failed = afterOutcome(
      StageOutcomes.failedAt('Build', 'Job failed'),
      basis(),
      undefined,
      1_000,
      policy,
    );
    expect(afterJobEvent(failed, 2_000), 'a failed Job waits for the retry interval').to.equal(failed);
    const final = afterOutcome(StageOutcomes.verified('ok'), basis(), undefined, 1_000, policy);
    expect(afterJobEvent(final, 2_000)).to.equal(final);
  });
});

describe('runner: configuration', () => {
  it('defaults, then environment, then flags', () => {
    const defaults = runnerConfig({}, {});
    expect(defaults).to.deep.include({
      concurrency: 16,
      retryIntervalMs: 180_000,
      namespaces: [],
      architecture: 'amd64',
      pullSecret: { namespace: 'openshift-config', name: 'pull-secret' },
      clusterMirrors: true,
      opsAddress: { host: '0.0.0.0', port: 8081 },
    });
    expect(defaults.leaderElection).to.include({
      enabled: false,
      leaseName: 'kmm-preflight-runner',
      leaseDurationSeconds: 15,
    });
    const env = {
      KMM_PREFLIGHT_CONCURRENCY: '4',
      KMM_PREFLIGHT_NAMESPACES: 'a, b',
      KMM_PREFLIGHT_LEADER_ELECT: 'true',
      KMM_PREFLIGHT_PULL_SECRET: '',
      KMM_PREFLIGHT_MIRRORS: 'quay.io=mirror:5000 registry.redhat.io=mirror:5000/rh',
      POD_NAMESPACE: 'kmm',
    };
    const fromEnv = runnerConfig({}, env);
    expect(fromEnv).to.deep.include({ concurrency: 4, namespaces: ['a', 'b'] });
    expect(fromEnv).to.not.have.property('pullSecret');
    expect(fromEnv.mirrors).to.have.length(2);
    expect(fromEnv.leaderElection).to.include({ enabled: true, namespace: 'kmm' });
    const fromFlags = runnerConfig({ concurrency: '8', leaderElect: false, opsAddress: '127.0.0.1:0' }, env);
    expect(fromFlags).to.deep.include({ concurrency: 8, opsAddress: { host: '127.0.0.1', port: 0 } });
    expect(fromFlags.leaderElection.enabled).to.equal(false);
  });

  it('Build/Sign Job settings: defaults, environment, flags; a bad one is a usage error naming its flag', () => {
    expect(runnerConfig({}, {}).buildSign).to.deep.equal({
      kanikoImage: 'gcr.io/kaniko-project/executor:v1.23.2',
      signFilePath: '/usr/src/kernels/${KERNEL_VERSION}/scripts/sign-file',
      backoffLimit: 1,
      activeDeadlineSeconds: 3600,
      ttlSecondsAfterFinished: 86400,
    });
    const env = {
      KMM_PREFLIGHT_KANIKO_IMAGE: 'mirror:5000/kaniko:v1',
      KMM_PREFLIGHT_JOB_BACKOFF_LIMIT: '3',
      KMM_PREFLIGHT_JOB_TTL_AFTER_FINISHED: 'never',
      KMM_PREFLIGHT_JOB_SERVICE_ACCOUNT: 'builder',
    };
    const fromEnv = runnerConfig({}, env).buildSign;
    expect(fromEnv).to.include({
      kanikoImage: 'mirror:5000/kaniko:v1',
      backoffLimit: 3,
      serviceAccountName: 'builder',
    });
    expect(fromEnv.ttlSecondsAfterFinished, 'never: kept until the resource goes').to.equal(undefined);
    const fromFlags = runnerConfig(
      {
        signerImage: 'reg/signer:1',
        signFilePath: '/opt/sign-file',
        jobActiveDeadline: '30m',
        jobTtlAfterFinished: '1h',
        jobBackoffLimit: '0',
      },
      env,
    ).buildSign;
    expect(fromFlags).to.include({
      signerImage: 'reg/signer:1',
      signFilePath: '/opt/sign-file',
      activeDeadlineSeconds: 1800,
      ttlSecondsAfterFinished: 3600,
      backoffLimit: 0,
      kanikoImage: 'mirror:5000/kaniko:v1',
    });
    const bad: [Parameters<typeof runnerConfig>[0], Record<string, string>, RegExp][] = [
      [
        { jobBackoffLimit: '11' },
        {},
        /^--job-backoff-limit \(KMM_PREFLIGHT_JOB_BACKOFF_LIMIT\): backoffLimit: must be an integer from 0 to 10/,
      ],
      [{}, { KMM_PREFLIGHT_JOB_BACKOFF_LIMIT: 'two' }, /--job-backoff-limit .*got NaN/],
      [{ jobActiveDeadline: '10s' }, {}, /^--job-active-deadline .*from 60 to/],
      [
        { jobActiveDeadline: 'soon' },
        {},
        /^--job-active-deadline \(KMM_PREFLIGHT_JOB_ACTIVE_DEADLINE\): 'soon' is not a duration/,
      ],
      [{ kanikoImage: 'has space' }, {}, /^--kaniko-image .*not an image reference/],
      [{ signFilePath: 'relative/sign-file' }, {}, /^--sign-file-path .*absolute path/],
      [{ jobServiceAccount: 'Not_Valid' }, {}, /^--job-service-account .*not a valid name/],
    ];
    for (const [flags, environment, message] of bad) {
      expect(() => runnerConfig(flags, environment), JSON.stringify(flags)).to.throw(UsageError, message);
    }
  });

  it('bad values are usage errors naming the flag and its variable', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ concurrency: '0' }, /--concurrency \(KMM_PREFLIGHT_CONCURRENCY\)/],
      [{ retryInterval: 'soon' }, /--retry-interval .*not a duration/],
      [{ namespaces: 'Bad_NS' }, /--namespaces/],
      [{ pullSecret: 'nosecret' }, /--pull-secret .*namespace\/name/],
      [{ opsAddress: 'host:x' }, /--ops-address/],
      [{ leaseDuration: '5s' }, /--retry-period < --renew-deadline < --lease-duration/],
      [{ logLevel: 'loud' }, /--log-level/],
    ];
    for (const [flags, message] of cases) {
      expect(() => runnerConfig(flags, {}), JSON.stringify(flags)).to.throw(UsageError, message);
    }
    expect(() => runnerConfig({}, { KMM_PREFLIGHT_LEADER_ELECT: 'maybe' })).to.throw(
      UsageError,
      /KMM_PREFLIGHT_LEADER_ELECT/,
    );
  });

  it('parses Go-style durations', () => {
    expect(parseDuration('1m30s', 'x')).to.equal(90_000);
    expect(parseDuration('500ms', 'x')).to.equal(500);
    expect(parseDuration('1.5s', 'x')).to.equal(1_500);
    expect(() => parseDuration('10', 'x')).to.throw(UsageError);
    expect(() => parseDuration('0s', 'x')).to.throw(UsageError);
  });
});
