import type { Module } from '../api/module.ts';
import type { PreflightValidationOCPStatus } from '../api/preflight.ts';
import { formatFieldIssue } from '../api/structure.ts';
import type { Platform } from '../image/source.ts';
import type { ModuleLoaderData } from '../kernel/resolve.ts';
import { validateModule as validateModuleSpec } from '../kernel/validate.ts';
import { validateModule, type PreflightDeps } from '../preflight/engine.ts';
import { StageOutcomes, type StageOutcome } from '../preflight/outcome.ts';
import {
  computeStatus,
  moduleKey,
  type KernelState,
  type ModuleIdentity,
  type ModuleResult,
} from '../preflight/status.ts';
import type { ManifestDocument } from './manifests.ts';

/**
 * The offline check: the runner's engine and status computation over Modules read from files (or listed from a
 * cluster), with no resource to write to. Its result is the status a PreflightValidationOCP would show.
 */

export interface CheckRequest {
  readonly documents: readonly ManifestDocument[];
  readonly kernel: KernelState;
  readonly pushBuiltImage: boolean;
  readonly platform: Platform;
  /** Modules validated at once; a slow image never holds up the others beyond this bound. */
  readonly concurrency: number;
  /** For manifests without metadata.namespace, as `kubectl apply` would place them. */
  readonly defaultNamespace: string;
}

export interface CheckProgress {
  readonly done: number;
  readonly total: number;
  /** The Modules being checked right now, in the order they started. */
  readonly inFlight: readonly InFlightModule[];
}

export interface InFlightModule {
  /** `namespace/name`. */
  readonly module: string;
  /** The image being checked for it, once its kernel mapping has picked one. */
  readonly image?: string;
}

export interface CheckDeps {
  readonly preflight: PreflightDeps<ModuleLoaderData>;
  readonly now: () => Date;
  readonly onProgress?: (progress: CheckProgress) => void;
}

export interface CheckResult {
  readonly status: PreflightValidationOCPStatus;
  /** Notes for the user: duplicated Modules, for instance. */
  readonly notes: readonly string[];
}

const RESOURCE_GENERATION = 1;

export async function runCheck(deps: CheckDeps, request: CheckRequest): Promise<CheckResult> {
  const notes: string[] = [];
  const candidates = new Map<string, { identity: ModuleIdentity; document: ManifestDocument }>();
  for (const document of request.documents) {
    const identity = identify(document, request.defaultNamespace);
    const key = moduleKey(identity);
    const earlier = candidates.get(key);
    if (earlier !== undefined) {
      notes.push(
        `${document.source}: Module ${key} is also defined in ${earlier.document.source}; the later one is used`,
      );
    }
    candidates.set(key, { identity, document });
  }
  const entries = [...candidates.values()];
  const kernel = request.kernel;
  const results: ModuleResult[] = [];
  if (kernel.state === 'resolved') {
    const progress = new ProgressTracker(entries.length, deps.onProgress);
    const tracked = { ...deps, preflight: progress.watching(deps.preflight) };
    const outcomes = await mapBounded(entries, request.concurrency, async ({ identity, document }) => {
      const key = moduleKey(identity);
      progress.started(key);
      try {
        return await validateOne(tracked, request, kernel.targetKernel, identity, document.object);
      } finally {
        progress.finished(key);
      }
    });
    entries.forEach(({ identity }, index) => {
      const outcome = outcomes[index];
      if (outcome === undefined) return;
      results.push({
        namespace: identity.namespace,
        name: identity.name,
        moduleGeneration: identity.generation,
        resourceGeneration: RESOURCE_GENERATION,
        targetKernel: kernel.targetKernel,
        outcome,
      });
    });
  }
  const decision = computeStatus(
    { generation: RESOURCE_GENERATION, kernel, mode: 'once' },
    entries.map((e) => e.identity),
    undefined,
    results,
    deps.now(),
  );
  return { status: decision.status, notes };
}

async function validateOne(
  deps: CheckDeps,
  request: CheckRequest,
  kernel: string,
  identity: ModuleIdentity,
  object: Record<string, unknown>,
): Promise<StageOutcome> {
  const withNamespace = {
    ...object,
    metadata: { ...(object['metadata'] as Record<string, unknown>), namespace: identity.namespace },
  };
  const issues = validateModuleSpec(withNamespace);
  if (issues.length > 0) {
    return StageOutcomes.finalFailure(`invalid Module: ${issues.map(formatFieldIssue).join('; ')}`);
  }
  return validateModule(deps.preflight, {
    module: withNamespace as unknown as Module,
    kernel,
    pushBuiltImage: request.pushBuiltImage,
    platform: request.platform,
    // The release's driver-toolkit lists the kernel's in-tree modules (dependencies a module image lacks).
    ...(request.kernel.state === 'resolved' && request.kernel.dtkImage !== undefined
      ? { driverToolkitImage: request.kernel.dtkImage }
      : {}),
  });
}

function identify(document: ManifestDocument, defaultNamespace: string): ModuleIdentity {
  const metadata = (document.object['metadata'] ?? {}) as {
    name?: unknown;
    namespace?: unknown;
    generation?: unknown;
  };
  return {
    namespace:
      typeof metadata.namespace === 'string' && metadata.namespace !== ''
        ? metadata.namespace
        : defaultNamespace,
    name:
      typeof metadata.name === 'string' && metadata.name !== ''
        ? metadata.name
        : `(unnamed in ${document.source})`,
    generation: typeof metadata.generation === 'number' ? metadata.generation : 1,
  };
}

/** Runs `work` over `items` with at most `limit` at once; results keep the input order. */
async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<(R | undefined)[]> {
  const results: (R | undefined)[] = new Array<R | undefined>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

/** Which Modules are being checked and with which image, reported on every change. */
class ProgressTracker {
  readonly #total: number;
  readonly #onProgress: ((progress: CheckProgress) => void) | undefined;
  readonly #inFlight = new Map<string, InFlightModule>();
  #done = 0;

  constructor(total: number, onProgress: ((progress: CheckProgress) => void) | undefined) {
    this.#total = total;
    this.#onProgress = onProgress;
  }

  started(key: string): void {
    this.#inFlight.set(key, { module: key });
    this.#report();
  }

  finished(key: string): void {
    this.#inFlight.delete(key);
    this.#done += 1;
    this.#report();
  }

  /** The same engine ports, with the Image stage telling which image it checks for which Module. */
  watching(preflight: PreflightDeps<ModuleLoaderData>): PreflightDeps<ModuleLoaderData> {
    return {
      ...preflight,
      image: {
        verify: (ctx, options) => {
          const key = moduleKey({ namespace: ctx.module.metadata.namespace, name: ctx.module.metadata.name });
          if (this.#inFlight.has(key)) {
            this.#inFlight.set(key, { module: key, image: options?.image ?? ctx.data.containerImage });
            this.#report();
          }
          return preflight.image.verify(ctx, options);
        },
      },
    };
  }

  #report(): void {
    this.#onProgress?.({ done: this.#done, total: this.#total, inFlight: [...this.#inFlight.values()] });
  }
}
