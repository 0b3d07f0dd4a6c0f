import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import type { ObjectMeta } from './meta.ts';
import { DEFAULT_MODPROBE_DIR } from '../kernel/constants.ts';
import {
  KMM_API_VERSION,
  LocalObjectReferenceSchema,
  ObjectMetaSchema,
  StringEnum,
  StringMapSchema,
} from './meta.ts';

/**
 * The parts of KMM's `Module` (kmm.sigs.x-k8s.io/v1beta1) that preflight reads, typed (kmm-anchor.md 1.4).
 * Objects KMM has more fields on than we model keep them (`x-kubernetes-preserve-unknown-fields`), so a real KMM
 * Module applies unchanged to a cluster where our CRD stands in for KMM's.
 */

export const MODULE_KIND = 'Module';
export const MODULE_PLURAL = 'modules';
export const MODULE_SINGULAR = 'module';
export { DEFAULT_MODPROBE_DIR };

const preserveUnknown = { 'x-kubernetes-preserve-unknown-fields': true } as const;

export const RegistryTLSSchema = Type.Object(
  {
    insecure: Type.Optional(Type.Boolean({ description: 'Use plain HTTP to reach the registry.' })),
    insecureSkipTLSVerify: Type.Optional(
      Type.Boolean({ description: 'Do not verify the registry certificate.' }),
    ),
  },
  { description: 'How to reach the registry over TLS.' },
);
export type RegistryTLS = Static<typeof RegistryTLSSchema>;

export const BuildArgSchema = Type.Object({ name: Type.String({ minLength: 1 }), value: Type.String() });
export type BuildArg = Static<typeof BuildArgSchema>;

export const BuildSpecSchema = Type.Object(
  {
    dockerfileConfigMap: Type.Optional(
      Type.Object(
        { name: Type.String({ minLength: 1 }) },
        { description: 'ConfigMap holding the Dockerfile under the key `dockerfile`.' },
      ),
    ),
    buildArgs: Type.Optional(Type.Array(BuildArgSchema)),
    secrets: Type.Optional(Type.Array(LocalObjectReferenceSchema)),
    baseImageRegistryTLS: Type.Optional(RegistryTLSSchema),
    kanikoParams: Type.Optional(Type.Object({ tag: Type.Optional(Type.String()) })),
    selector: Type.Optional(StringMapSchema),
  },
  { description: 'How to build the kmod image in cluster when it does not exist.', ...preserveUnknown },
);
export type BuildSpec = Static<typeof BuildSpecSchema>;

export const SignSpecSchema = Type.Object(
  {
    unsignedImage: Type.Optional(Type.String({ description: 'Image holding the unsigned modules.' })),
    unsignedImageRegistryTLS: Type.Optional(RegistryTLSSchema),
    keySecret: Type.Optional(
      Type.Object(
        { name: Type.String({ minLength: 1 }) },
        { description: 'Secret with the private key (`key`).' },
      ),
    ),
    certSecret: Type.Optional(
      Type.Object(
        { name: Type.String({ minLength: 1 }) },
        { description: 'Secret with the certificate (`cert`).' },
      ),
    ),
    filesToSign: Type.Optional(Type.Array(Type.String())),
  },
  { description: 'How to sign the kernel modules for Secure Boot.', ...preserveUnknown },
);
export type SignSpec = Static<typeof SignSpecSchema>;

export const ModprobeArgsSchema = Type.Object({
  load: Type.Array(Type.String(), { minItems: 1 }),
  unload: Type.Array(Type.String(), { minItems: 1 }),
});
export type ModprobeArgs = Static<typeof ModprobeArgsSchema>;

export const ModprobeSpecSchema = Type.Object(
  {
    moduleName: Type.Optional(Type.String({ description: 'The kernel module to load (modprobe name).' })),
    dirName: Type.Optional(
      Type.String({
        default: DEFAULT_MODPROBE_DIR,
        description: 'Root of the modules tree in the image, passed as `modprobe -d` (default /opt).',
      }),
    ),
    parameters: Type.Optional(Type.Array(Type.String())),
    args: Type.Optional(ModprobeArgsSchema),
    rawArgs: Type.Optional(ModprobeArgsSchema),
    firmwarePath: Type.Optional(Type.String()),
    modulesLoadingOrder: Type.Optional(Type.Array(Type.String())),
  },
  { description: 'How the worker runs modprobe.', ...preserveUnknown },
);
export type ModprobeSpec = Static<typeof ModprobeSpecSchema>;

export const ImagePullPolicyValues = ['Always', 'IfNotPresent', 'Never'] as const;
export type ImagePullPolicy = (typeof ImagePullPolicyValues)[number];

export const KernelMappingSchema = Type.Object(
  {
    literal: Type.Optional(Type.String({ description: 'Matches a kernel exactly.' })),
    regexp: Type.Optional(
      Type.String({
        description: 'Go RE2 regular expression, unanchored: write ^...$ to match the whole kernel.',
      }),
    ),
    containerImage: Type.Optional(
      Type.String({ description: 'Overrides the container-level containerImage.' }),
    ),
    build: Type.Optional(BuildSpecSchema),
    sign: Type.Optional(SignSpecSchema),
    registryTLS: Type.Optional(RegistryTLSSchema),
    inTreeModulesToRemove: Type.Optional(Type.Array(Type.String())),
    inTreeModuleToRemove: Type.Optional(
      Type.String({ description: 'Deprecated: use inTreeModulesToRemove.' }),
    ),
  },
  { ...preserveUnknown },
);
export type KernelMapping = Static<typeof KernelMappingSchema>;

export const ModuleLoaderContainerSchema = Type.Object(
  {
    modprobe: ModprobeSpecSchema,
    kernelMappings: Type.Array(KernelMappingSchema, { minItems: 1 }),
    containerImage: Type.Optional(Type.String()),
    build: Type.Optional(BuildSpecSchema),
    sign: Type.Optional(SignSpecSchema),
    registryTLS: Type.Optional(RegistryTLSSchema),
    imagePullPolicy: Type.Optional(StringEnum(ImagePullPolicyValues)),
    version: Type.Optional(Type.String()),
    inTreeModulesToRemove: Type.Optional(Type.Array(Type.String())),
    inTreeModuleToRemove: Type.Optional(
      Type.String({ description: 'Deprecated: use inTreeModulesToRemove.' }),
    ),
  },
  { ...preserveUnknown },
);
export type ModuleLoaderContainer = Static<typeof ModuleLoaderContainerSchema>;

export const ModuleLoaderSchema = Type.Object(
  {
    container: ModuleLoaderContainerSchema,
    serviceAccountName: Type.Optional(Type.String()),
  },
  { ...preserveUnknown },
);
export type ModuleLoader = Static<typeof ModuleLoaderSchema>;

export const ModuleSpecSchema = Type.Object(
  {
    selector: StringMapSchema,
    imageRepoSecret: Type.Optional(LocalObjectReferenceSchema),
    moduleLoader: Type.Optional(ModuleLoaderSchema),
  },
  { description: 'The parts of a KMM Module spec preflight reads.', ...preserveUnknown },
);
export type ModuleSpec = Static<typeof ModuleSpecSchema>;

export const ModuleSchema = Type.Object({
  apiVersion: Type.Literal(KMM_API_VERSION),
  kind: Type.Literal(MODULE_KIND),
  metadata: ObjectMetaSchema,
  spec: ModuleSpecSchema,
  status: Type.Optional(Type.Object({}, { ...preserveUnknown })),
});
/** A Module as read from the API server: namespaced, so `metadata.namespace` is always set. */
export type Module = Omit<Static<typeof ModuleSchema>, 'metadata'> & {
  metadata: ObjectMeta & { namespace: string };
};
