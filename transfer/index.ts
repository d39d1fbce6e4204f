// Air-gapped transfer: images out of storage into an OCI image layout (a directory or a tar archive), and
// a layout (berth's, skopeo's, any tool's) into storage or into a registry over HTTP, every digest checked.
export { TransferError } from './errors.ts';
export { exportImages, type ExportReport } from './export.ts';
export { importLayout, type ImportTarget, type ImportReport, type ImportOptions, type BlobOutcome } from './import.ts';
export { openSink, openLayout, REF_NAME, type LayoutSink, type LayoutSource, type LayoutDescriptor } from './layout.ts';
export { registryTarget, storageTarget } from './targets.ts';
