// Whether a process of this machine is alive: for records that name the process that wrote them (a
// server's presence marker, a container's runner), so that those of a process that died count for nothing.
export function processLives(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it lives, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
