// Facts about operating systems, architectures and processes, shared by the web catalog, the runtime
// client and storage.
export {
  parseWindowsVersion,
  STABLE_ABI_BUILD,
  WINDOWS_BUILDS,
  windowsCompatibility,
  windowsHostsFor,
  windowsBaseImage,
  windowsName,
  WindowsVersionError,
  type WindowsBaseImage,
  type WindowsIsolation,
  type WindowsVerdict,
  type WindowsVersion,
} from './windows.ts';
export { processLives } from './process.ts';
