import type { Module } from '../../src/api/module.ts';
import type { PreflightValidationOCP } from '../../src/api/preflight.ts';
import type { ReviewBody } from './harness.ts';

/** Builders for the cache contents and review bodies the webhook tests use. */

export const KERNEL_427 = '5.14.0-427.13.1.el9_4.x86_64';
export const RELEASE_DIGEST =
  'quay.io/openshift-release-dev/ocp-release@sha256:22e149142517dfccb47be828f012659b1ccf71d26620e6f62468c264a7ce7863';

export interface PreflightShape {
  readonly releaseImage?: string;
  readonly useRTKernel?: boolean;
  readonly pushBuiltImage?: boolean;
  /** Set: KernelResolved True with this targetKernel. */
  readonly kernel?: string;
  readonly complete?: boolean;
  readonly created?: string;
  readonly deleting?: boolean;
}

export function preflight(name: string, shape: PreflightShape = {}): PreflightValidationOCP {
  const time = '2026-11-23T09:00:00Z';
  const conditions = [];
  if (shape.kernel !== undefined) {
    conditions.push({
      type: 'KernelResolved',
      status: 'True' as const,
      reason: 'Resolved',
      message: '',
      lastTransitionTime: time,
    });
  }
  if (shape.complete !== undefined) {
    conditions.push({
      type: 'Complete',
      status: shape.complete ? ('True' as const) : ('False' as const),
      reason: shape.complete ? 'AllVerified' : 'InProgress',
      message: '',
      lastTransitionTime: time,
    });
  }
  return {
    apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
    kind: 'PreflightValidationOCP',
    metadata: {
      name,
      creationTimestamp: shape.created ?? time,
      ...(shape.deleting === true ? { deletionTimestamp: '2026-11-23T10:00:00Z' } : {}),
    },
    spec: {
      releaseImage: shape.releaseImage ?? RELEASE_DIGEST,
      ...(shape.useRTKernel === undefined ? {} : { useRTKernel: shape.useRTKernel }),
      ...(shape.pushBuiltImage === undefined ? {} : { pushBuiltImage: shape.pushBuiltImage }),
    },
    status: {
      ...(shape.kernel === undefined ? {} : { kernelVersion: shape.kernel, targetKernel: shape.kernel }),
      conditions,
    },
  };
}

export function module(namespace: string, name: string, container: Record<string, unknown>): Module {
  return {
    apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
    kind: 'Module',
    metadata: { name, namespace },
    spec: {
      selector: { 'node-role.kubernetes.io/worker': '' },
      moduleLoader: {
        container: { modprobe: { moduleName: name.replaceAll('-', '_') }, ...container } as never,
      },
    },
  };
}

/** A review body for `object` (and `oldObject`) of the given resource and operation. */
export function review(
  resource: 'modules' | 'preflightvalidationsocp',
  operation: 'CREATE' | 'UPDATE' | 'DELETE',
  object: unknown,
  oldObject?: unknown,
  uid = `uid-${Math.random().toString(16).slice(2)}`,
): ReviewBody {
  const kind = resource === 'modules' ? 'Module' : 'PreflightValidationOCP';
  const meta = ((object ?? oldObject) as { metadata?: { name?: string; namespace?: string } }).metadata ?? {};
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: 'kmm.sigs.x-k8s.io', version: 'v1beta1', kind },
      resource: { group: 'kmm.sigs.x-k8s.io', version: 'v1beta1', resource },
      name: meta.name,
      ...(meta.namespace === undefined ? {} : { namespace: meta.namespace }),
      operation,
      userInfo: { username: 'admin' },
      object: object ?? null,
      oldObject: oldObject ?? null,
      dryRun: false,
    },
  };
}
