// A tag's link: the file that says which manifest a tag names. Since 12-03 it is one file per tag
// (`_manifests/tags/TAG`); older versions kept it in a folder of its own (`_manifests/tags/TAG/link`), and
// making that folder was three quarters of a tag PUT's filesystem time on an ext4 disk without a journal
// (strace: mkdir 1.3 ms a call, the file 15 us). Tags written before stay where they are, and are read,
// re-pointed and deleted there: nothing is migrated, so no tag is ever missing between two steps.
import { UNFLUSHED, type FileInfo, type StorageDriver } from './driver/index.ts';
import { layout } from './layout.ts';

/** The digest a tag names, or undefined when there is no such tag. */
export async function readTagLink(driver: StorageDriver, name: string, tag: string): Promise<string | undefined> {
  // A folder reads as no content, so a tag of the older shape falls through to its folder's link.
  const content = (await driver.getContent(layout.tag(name, tag))) ?? (await driver.getContent(layout.tagInFolder(name, tag)));
  return content?.toString();
}

/** The tag's link file: its modification time is when the tag was last pushed. */
export async function statTagLink(driver: StorageDriver, name: string, tag: string): Promise<FileInfo | undefined> {
  const info = await driver.stat(layout.tag(name, tag));
  if (info && !info.isDirectory) return info;
  return driver.stat(layout.tagInFolder(name, tag));
}

/**
 * Points a tag at a digest, atomically (the link is replaced, never absent). A tag of the older shape is
 * re-pointed in its folder: on a filesystem a file cannot replace a folder, and removing the folder first
 * would leave a moment with no tag. On S3 the new key is written and wins over the older one when read.
 */
export async function writeTagLink(driver: StorageDriver, name: string, tag: string, digest: string): Promise<void> {
  try {
    await driver.putContent(layout.tag(name, tag), digest, UNFLUSHED);
  } catch (err) {
    if (!(await driver.stat(layout.tag(name, tag)))?.isDirectory) throw err;
    await driver.putContent(layout.tagInFolder(name, tag), digest, UNFLUSHED);
  }
}

/** Removes a tag's link of either shape (on S3 both, where a re-pointed older tag left its folder's key). */
export async function deleteTagLink(driver: StorageDriver, name: string, tag: string): Promise<boolean> {
  // Deleting the path removes a file, or a folder with everything in it, or (S3) the key and the keys under it.
  return driver.delete(layout.tag(name, tag));
}
