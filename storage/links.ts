// Links: the small files that say a repository has something, holding its digest: a tag's (which manifest
// it names) and a layer's (the repository may serve that blob). Since 12-03 each is one file
// (`_manifests/tags/TAG`, `_layers/sha256/HEX`); older versions kept each in a folder of its own (`…/link`),
// and making that folder was three quarters of a tag PUT's filesystem time on an ext4 disk without a
// journal (strace: mkdir 1.3 ms a call, the file 15 us). Links written before stay where they are, and are
// read, re-pointed and deleted there: nothing is migrated, so no link is ever missing between two steps.
import { UNFLUSHED, type FileInfo, type StorageDriver } from './driver/index.ts';

/** Where a link lives: its file, and the file in a folder of that name where older versions kept it. */
export interface LinkPlace {
  readonly file: string;
  readonly inFolder: string;
}

/** The digest a link holds, or undefined when there is none. */
export async function readLink(driver: StorageDriver, place: LinkPlace): Promise<string | undefined> {
  // A folder reads as no content, so a link of the older shape falls through to its folder's file.
  const content = (await driver.getContent(place.file)) ?? (await driver.getContent(place.inFolder));
  return content?.toString();
}

/**
 * Whether the link exists, of either shape, in one call: the older shape's folder counts (it is removed
 * whole, never left without its file).
 */
export async function linkExists(driver: StorageDriver, place: LinkPlace): Promise<boolean> {
  return (await driver.stat(place.file)) !== undefined;
}

/** The link's file: its modification time is when it was last written. */
export async function statLink(driver: StorageDriver, place: LinkPlace): Promise<FileInfo | undefined> {
  const info = await driver.stat(place.file);
  if (info && !info.isDirectory) return info;
  return driver.stat(place.inFolder);
}

/**
 * Writes a link atomically (replaced, never absent). A link of the older shape is re-pointed in its
 * folder: on a filesystem a file cannot replace a folder, and removing the folder first would leave a
 * moment with no link. On S3 the new key is written and wins over the older one when read.
 */
export async function writeLink(driver: StorageDriver, place: LinkPlace, digest: string): Promise<void> {
  try {
    await driver.putContent(place.file, digest, UNFLUSHED);
  } catch (err) {
    if (!(await driver.stat(place.file))?.isDirectory) throw err;
    await driver.putContent(place.inFolder, digest, UNFLUSHED);
  }
}

/** Removes a link of either shape (on S3 both, where a re-pointed older link left its folder's key). */
export async function deleteLink(driver: StorageDriver, place: LinkPlace): Promise<boolean> {
  // Deleting the path removes a file, or a folder with everything in it, or (S3) the key and the keys under it.
  return driver.delete(place.file);
}
