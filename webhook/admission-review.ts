import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { CodedError } from '../src/platform/errors.ts';

/**
 * admission.k8s.io AdmissionReview: the envelope the API server POSTs to a webhook and expects back. Only the
 * fields the webhook relies on are checked; the rest are carried through untouched.
 */

export const AdmissionReviewApiVersions = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;
export type AdmissionReviewApiVersion = (typeof AdmissionReviewApiVersions)[number];

export const AdmissionOperations = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'] as const;
export type AdmissionOperation = (typeof AdmissionOperations)[number];

// An object or null: DELETE sends `object: null`, CREATE sends no `oldObject`.
const KubeObjectOrNull = Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]);

const AdmissionRequestSchema = Type.Object({
  uid: Type.String({ minLength: 1 }),
  kind: Type.Object({ group: Type.String(), version: Type.String(), kind: Type.String() }),
  resource: Type.Object({ group: Type.String(), version: Type.String(), resource: Type.String() }),
  subResource: Type.Optional(Type.String()),
  name: Type.Optional(Type.String()),
  namespace: Type.Optional(Type.String()),
  operation: Type.Union(AdmissionOperations.map((op) => Type.Literal(op))),
  object: Type.Optional(KubeObjectOrNull),
  oldObject: Type.Optional(KubeObjectOrNull),
  dryRun: Type.Optional(Type.Boolean()),
});
export type AdmissionRequest = Static<typeof AdmissionRequestSchema>;

const AdmissionReviewRequestSchema = Type.Object({
  apiVersion: Type.Union(AdmissionReviewApiVersions.map((v) => Type.Literal(v))),
  kind: Type.Literal('AdmissionReview'),
  request: AdmissionRequestSchema,
});
export type AdmissionReviewRequest = Static<typeof AdmissionReviewRequestSchema>;

const reviewChecker = TypeCompiler.Compile(AdmissionReviewRequestSchema);

/** A metav1.Status, shown to the user when a request is denied. */
export interface AdmissionStatus {
  readonly code: number;
  readonly reason: string;
  readonly message: string;
}

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly status?: AdmissionStatus;
  readonly warnings?: readonly string[];
}

export interface AdmissionReviewResponse {
  readonly apiVersion: AdmissionReviewApiVersion;
  readonly kind: 'AdmissionReview';
  readonly response: AdmissionResponse;
}

/** A body that is not an AdmissionReview request; answered 400 with this message. */
export class MalformedAdmissionReviewError extends CodedError<'ERR_MALFORMED_ADMISSION_REVIEW'> {
  constructor(message: string) {
    super('ERR_MALFORMED_ADMISSION_REVIEW', message);
  }
}

/** Checks a parsed JSON body is an AdmissionReview request; throws MalformedAdmissionReviewError naming the fields. */
export function parseAdmissionReview(body: unknown): AdmissionReviewRequest {
  if (reviewChecker.Check(body)) return body;
  throw new MalformedAdmissionReviewError(
    `not an AdmissionReview request (admission.k8s.io/v1): ${describeProblems(body).join('; ')}`,
  );
}

const MAX_REPORTED_PROBLEMS = 5;

function describeProblems(body: unknown): string[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return ['body: must be a JSON object'];
  // The envelope's identity first: a wrong apiVersion or kind explains everything else that follows.
  const { apiVersion, kind } = body as { apiVersion?: unknown; kind?: unknown };
  if (!AdmissionReviewApiVersions.includes(apiVersion as AdmissionReviewApiVersion)) {
    return [
      `apiVersion: must be ${AdmissionReviewApiVersions.join(' or ')}, got ${JSON.stringify(apiVersion) ?? 'nothing'}`,
    ];
  }
  if (kind !== 'AdmissionReview')
    return [`kind: must be AdmissionReview, got ${JSON.stringify(kind) ?? 'nothing'}`];
  const problems = new Map<string, string>();
  for (const error of reviewChecker.Errors(body)) {
    const path = error.path === '' ? 'body' : error.path.slice(1).replaceAll('/', '.');
    if (!problems.has(path)) {
      problems.set(path, error.message === 'Expected required property' ? 'is required' : error.message);
    }
    if (problems.size === MAX_REPORTED_PROBLEMS) break;
  }
  return [...problems].map(([path, message]) => `${path}: ${message}`);
}

/** What the rules decided about one request. */
export interface AdmissionVerdict {
  readonly allowed: boolean;
  readonly status?: AdmissionStatus;
  readonly warnings: readonly string[];
}

export function toAdmissionReviewResponse(
  review: AdmissionReviewRequest,
  verdict: AdmissionVerdict,
): AdmissionReviewResponse {
  const response: AdmissionResponse = {
    uid: review.request.uid,
    allowed: verdict.allowed,
    ...(verdict.status === undefined ? {} : { status: verdict.status }),
    ...(verdict.warnings.length === 0 ? {} : { warnings: verdict.warnings }),
  };
  return { apiVersion: review.apiVersion, kind: 'AdmissionReview', response };
}
