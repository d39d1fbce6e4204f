// The runtime client: pull images from any OCI registry into a local content-addressed store, and run
// them as containers on Linux (runc, crun, or unshare + chroot).
export { Client, type ClientOptions, type RunOptions } from './client.ts';
export { CredentialStore, type Credentials } from './credentials.ts';
export * from './errors.ts';
export { formatBytes } from './progress.ts';
export { formatReference, parseReference, type ImageReference } from './reference.ts';
export { parseAuthChallenges, RegistryClient, registryBaseUrl, type AuthChallenge } from './registry.ts';
export { RegistryPusher, type BlobPush } from './push.ts';
export { hostPlatform, parsePlatform, selectPlatform, type Platform } from './platform.ts';
export { containerProcess, runtimeSpec, writeBundle, type RunSettings } from './bundle.ts';
export { unpackLayers, type UnpackLimits, type UnpackReport } from './unpack.ts';
export type { ImageRecord } from './store.ts';
export type { RuntimeChoice } from './runtime.ts';
