// What every dataset builder receives and returns (the registry runs them, write-folder stores them).
import type { DatasetFolderWriter, DatasetSource } from './write-folder';

export interface BuildOptions {
  /** Final folder (built as OUT.tmp-PID, renamed at the end). */
  out: string;
  /** Debian packages are downloaded and unpacked here (see debian.ts). */
  cacheDir: string;
  /** fashion-mnist: which IDX pair to read (default train). */
  split?: 'train' | 'test';
  /** Keep at most this many images per class. */
  limit?: number;
  /** fashion-mnist: read the four IDX files from this folder instead of the Debian package. */
  idxDir?: string;
  /** Images rendered at once (sharp runs them on libuv's thread pool). Default 4. */
  concurrency?: number;
  /** Progress lines (default: none). */
  log?: (msg: string) => void;
  /** Recorded in dataset.json as the way to rebuild the folder. */
  command?: string;
}

/** What a builder tells the writer about the images it added. */
export interface BuildMeta {
  description: string;
  sources: DatasetSource[];
  /** ATTRIBUTION.md, markdown. */
  attribution: string;
  /** Colour transparent pixels were flattened onto ('white'), or null when the source has no alpha. */
  background: string | null;
  notes: string[];
}

export type Builder = (writer: DatasetFolderWriter, o: BuildOptions) => Promise<BuildMeta>;
