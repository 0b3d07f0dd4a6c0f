import type { ContainerStatus, Job, Pod } from './kube-types.ts';

/**
 * A Job's state in the terms the status needs: running (and what it is waiting for, when it is stuck), succeeded
 * (with the digest Kaniko wrote to the termination log) or failed (with the words that explain it). A failed Job is
 * never reported as progress, the defect of KMM's preflight ("Waiting for build verification" forever).
 */
export type JobPhase = 'running' | 'succeeded' | 'failed';

export interface JobObservation {
  readonly phase: JobPhase;
  /** Why it is stuck, or why it failed, when the Job or its Pods say. */
  readonly detail?: string;
  /** A failed Job without a termination message: whose log tail explains it. */
  readonly logsFrom?: { readonly pod: string; readonly container: string };
  /** `sha256:...` of the produced image, from a succeeded pod's termination message. */
  readonly digest?: string;
}

/** Longest detail kept in a status reason; a log tail keeps its end, where the error is. */
export const MAX_DETAIL_LENGTH = 2048;

const DIGEST = /^sha256:[a-f0-9]{64}$/;
/** Waiting reasons that are simply progress, not worth reporting. */
const ORDINARY_WAITING = new Set(['ContainerCreating', 'PodInitializing']);

export function clipDetail(text: string): string {
  const trimmed = text.trim();
  return trimmed.length <= MAX_DETAIL_LENGTH
    ? trimmed
    : `…${trimmed.slice(trimmed.length - MAX_DETAIL_LENGTH + 1)}`;
}

function condition(job: Job, type: string): { reason?: string; message?: string } | undefined {
  return job.status?.conditions?.find((c) => c.type === type && c.status === 'True');
}

/** Newest first; pods created in the same second fall back to name order, which is stable. */
function newestFirst(pods: readonly Pod[]): Pod[] {
  return [...pods].sort((a, b) => {
    const byTime = (b.metadata.creationTimestamp ?? '').localeCompare(a.metadata.creationTimestamp ?? '');
    return byTime !== 0 ? byTime : b.metadata.name.localeCompare(a.metadata.name);
  });
}

function describeTermination(status: ContainerStatus): string | undefined {
  const terminated = status.state?.terminated;
  if (terminated === undefined) return undefined;
  const message = terminated.message?.trim() ?? '';
  const head = `container ${status.name} exited with code ${terminated.exitCode}${terminated.reason === undefined ? '' : ` (${terminated.reason})`}`;
  return message === '' ? undefined : `${head}: ${message}`;
}

function failureOf(pod: Pod): Pick<JobObservation, 'detail' | 'logsFrom'> {
  const statuses = pod.status?.containerStatuses ?? [];
  const failed = statuses.filter((s) => (s.state?.terminated?.exitCode ?? 0) !== 0);
  for (const status of failed) {
    const described = describeTermination(status);
    if (described !== undefined) return { detail: `pod ${pod.metadata.name}: ${described}` };
  }
  const podMessage = [pod.status?.reason, pod.status?.message]
    .filter((s) => s !== undefined && s !== '')
    .join(': ');
  if (podMessage !== '') return { detail: `pod ${pod.metadata.name}: ${podMessage}` };
  const container = failed[0] ?? statuses[0];
  if (container !== undefined) {
    const code = container.state?.terminated?.exitCode;
    return {
      ...(code === undefined
        ? {}
        : { detail: `pod ${pod.metadata.name}: container ${container.name} exited with code ${code}` }),
      logsFrom: { pod: pod.metadata.name, container: container.name },
    };
  }
  return {};
}

function progressOf(pods: readonly Pod[]): string | undefined {
  const pod = pods[0];
  if (pod === undefined) return 'no pod yet';
  const unscheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
  if (unscheduled !== undefined) {
    return `pod ${pod.metadata.name} not scheduled${unscheduled.reason === undefined ? '' : `: ${unscheduled.reason}`}${unscheduled.message === undefined ? '' : `: ${unscheduled.message}`}`;
  }
  for (const status of pod.status?.containerStatuses ?? []) {
    const waiting = status.state?.waiting;
    if (waiting?.reason !== undefined && !ORDINARY_WAITING.has(waiting.reason)) {
      return `pod ${pod.metadata.name} waiting: ${waiting.reason}${waiting.message === undefined ? '' : `: ${waiting.message}`}`;
    }
  }
  const phase = pod.status?.phase;
  return phase === undefined ? undefined : `pod ${pod.metadata.name} ${phase.toLowerCase()}`;
}

/** Reads a Job and its Pods (as listed by the Job's controller-uid label). */
export function observeJob(job: Job, pods: readonly Pod[]): JobObservation {
  const ordered = newestFirst(pods);
  if (condition(job, 'Complete') !== undefined) {
    const message = ordered
      .filter((pod) => pod.status?.phase === 'Succeeded')
      .flatMap((pod) => pod.status?.containerStatuses ?? [])
      .map((status) => status.state?.terminated?.message?.trim() ?? '')
      .find((text) => DIGEST.test(text));
    return { phase: 'succeeded', ...(message === undefined ? {} : { digest: message }) };
  }
  const failedCondition = condition(job, 'Failed');
  if (failedCondition !== undefined) {
    const jobSays = [failedCondition.reason, failedCondition.message]
      .filter((s) => s !== undefined && s !== '')
      .join(': ');
    const failedPod = ordered.find((pod) => pod.status?.phase === 'Failed') ?? ordered[0];
    const fromPod = failedPod === undefined ? {} : failureOf(failedPod);
    const detail = [jobSays, fromPod.detail].filter((s) => s !== undefined && s !== '').join('; ');
    return {
      phase: 'failed',
      ...(detail === '' ? {} : { detail: clipDetail(detail) }),
      ...(fromPod.logsFrom === undefined ? {} : { logsFrom: fromPod.logsFrom }),
    };
  }
  const progress = progressOf(ordered);
  return { phase: 'running', ...(progress === undefined ? {} : { detail: clipDetail(progress) }) };
}
