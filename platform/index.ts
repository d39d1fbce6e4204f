// Facts about operating systems and architectures, shared by the web catalog and the runtime client.
export {
  parseWindowsVersion,
  STABLE_ABI_BUILD,
  WINDOWS_BUILDS,
  windowsCompatibility,
  windowsHostsFor,
  windowsName,
  WindowsVersionError,
  type WindowsIsolation,
  type WindowsVerdict,
  type WindowsVersion,
} from './windows.ts';
