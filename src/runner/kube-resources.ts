import type { Logger } from 'pino';
import { KMM_GROUP, KMM_VERSION } from '../api/meta.ts';
import { MODULE_PLURAL } from '../api/module.ts';
import {
  PREFLIGHT_KIND,
  PREFLIGHT_PLURAL,
  type PreflightValidationOCP,
  type PreflightValidationOCPStatus,
} from '../api/preflight.ts';
import { ContentType, isNotFound, type KubeClient } from '../platform/kube/client.ts';
import { resourcePath, type ResourceDescriptor } from '../platform/kube/informer.ts';
import type { EventSink, PreflightResources } from './reconciler.ts';
import { errorMessage } from '../platform/errors.ts';

export const PREFLIGHT_RESOURCE: ResourceDescriptor = {
  group: KMM_GROUP,
  version: KMM_VERSION,
  plural: PREFLIGHT_PLURAL,
  namespaced: false,
};

export const MODULE_RESOURCE: ResourceDescriptor = {
  group: KMM_GROUP,
  version: KMM_VERSION,
  plural: MODULE_PLURAL,
  namespaced: true,
};

/** PreflightValidationOCP reads and /status writes through the API server. */
export function kubePreflightResources(client: KubeClient): PreflightResources {
  return {
    async get(name) {
      try {
        return await client.request<PreflightValidationOCP>(
          'GET',
          resourcePath(PREFLIGHT_RESOURCE, { name }),
        );
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    replaceStatus(resource, status: PreflightValidationOCPStatus) {
      // PUT on /status with the resourceVersion we read: the API server refuses it (409) if anything wrote in
      // between, and ignores everything but the status. managedFields are left out (the server keeps its own):
      // they only make a large request larger.
      const { managedFields: _managedFields, ...metadata } = resource.metadata as typeof resource.metadata & {
        managedFields?: unknown;
      };
      return client.request<PreflightValidationOCP>(
        'PUT',
        resourcePath(PREFLIGHT_RESOURCE, { name: resource.metadata.name, subresource: 'status' }),
        { body: { ...resource, metadata, status }, contentType: ContentType.json },
      );
    },
  };
}

/**
 * core/v1 Events on the resource (cluster-scoped, so they live in `namespace`), as `kubectl describe pfvo` shows
 * them. Best effort: a failure is logged at debug and forgotten.
 */
export function kubeEventSink(
  client: KubeClient,
  namespace: string,
  component: string,
  logger: Logger,
): EventSink {
  return {
    emit(resource, type, reason, message) {
      const now = new Date().toISOString();
      const body = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { generateName: `${resource.metadata.name}.`, namespace },
        involvedObject: {
          apiVersion: `${KMM_GROUP}/${KMM_VERSION}`,
          kind: PREFLIGHT_KIND,
          name: resource.metadata.name,
          uid: resource.metadata.uid,
          resourceVersion: resource.metadata.resourceVersion,
        },
        type,
        reason,
        message: message.length > 1024 ? `${message.slice(0, 1020)} ...` : message,
        source: { component },
        reportingComponent: component,
        reportingInstance: component,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      };
      client.request('POST', `/api/v1/namespaces/${namespace}/events`, { body }).catch((err: unknown) => {
        logger.debug({ reason, err: errorMessage(err) }, 'could not record event');
      });
    },
  };
}
