// The transfer room's one failure: a layout that is not what it says (a digest, a size, a missing file),
// or a reference that names nothing. The command prints its message alone and exits 2.
export class TransferError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransferError';
  }
}
