// Debian packages as data sources, without installing them: `apt-get download` fetches the .deb
// and `dpkg-deb -x` unpacks it into a cache folder (CACHE/<package>_<version>/, a file tree
// rooted like /). A package that is already installed on the system is read in place instead,
// and a cached one is reused without any network access.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** ~/.cache/difftune/deb, or $DIFFTUNE_CACHE/deb. */
export function defaultDebCache(): string {
  const base = process.env.DIFFTUNE_CACHE || path.join(os.homedir(), '.cache', 'difftune');
  return path.join(base, 'deb');
}

export interface DebianPackage {
  name: string;
  version: string;
  /** Folder the package's paths are relative to: '/' when installed, else its unpacked copy. */
  root: string;
  installed: boolean;
}

export interface DebianOptions {
  cacheDir: string;
  /** Allow `apt-get download` when the package is neither installed nor cached (default true). */
  download?: boolean;
  log?: (msg: string) => void;
}

/** Marker written into an unpacked tree before it is renamed into place: its presence means complete. */
const MARKER = '.difftune-deb.json';

/** The installed version of a package, or null if it is not installed (or dpkg is missing). */
export function installedVersion(name: string): string | null {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}\t${Version}', name], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  const [status, version] = r.stdout.split('\t');
  return status === 'install ok installed' && version ? version : null;
}

/** The newest unpacked copy of a package in the cache, or null. */
export function cachedPackage(name: string, cacheDir: string): DebianPackage | null {
  let entries: string[];
  try {
    entries = fs.readdirSync(cacheDir);
  } catch {
    return null;
  }
  let best: { pkg: DebianPackage; mtime: number } | null = null;
  for (const e of entries) {
    if (!e.startsWith(`${name}_`)) continue;
    const root = path.join(cacheDir, e);
    try {
      const marker = JSON.parse(fs.readFileSync(path.join(root, MARKER), 'utf8')) as { package: string; version: string };
      if (marker.package !== name) continue;
      const mtime = fs.statSync(path.join(root, MARKER)).mtimeMs;
      if (!best || mtime > best.mtime) best = { pkg: { name, version: marker.version, root, installed: false }, mtime };
    } catch {
      continue; // not a finished unpack
    }
  }
  return best?.pkg ?? null;
}

function run(cmd: string, args: string[], cwd: string): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) {
    const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(missing ? `${cmd} not found: Debian packages can only be fetched on a Debian/Ubuntu system with apt and dpkg` : `${cmd}: ${r.error.message}`);
  }
  return { ok: r.status === 0, out: `${r.stderr ?? ''}${r.stdout ?? ''}`.trim() };
}

/**
 * Finds a Debian package's files: installed on the system, else unpacked in the cache, else
 * downloaded with `apt-get download` and unpacked there. Errors say how to fix them.
 */
export function debianPackage(name: string, o: DebianOptions): DebianPackage {
  if (!/^[a-z0-9][a-z0-9+.-]+$/.test(name)) throw new Error(`not a Debian package name: ${JSON.stringify(name)}`);
  const installed = installedVersion(name);
  if (installed) return { name, version: installed, root: '/', installed: true };
  const cached = cachedPackage(name, o.cacheDir);
  if (cached) return cached;
  if (o.download === false) {
    throw new Error(`Debian package ${name} is neither installed nor unpacked in ${o.cacheDir}`);
  }
  fs.mkdirSync(o.cacheDir, { recursive: true });
  const work = fs.mkdtempSync(path.join(o.cacheDir, `.download-${name}-`));
  try {
    o.log?.(`apt-get download ${name} (into ${o.cacheDir})`);
    const dl = run('apt-get', ['download', name], work);
    const deb = fs.readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!dl.ok || !deb) {
      throw new Error(
        `apt-get download ${name} failed:\n${dl.out.split('\n').filter((l) => !/unsandboxed as root/.test(l)).join('\n')}\n` +
          `The package lists are probably missing or stale: run 'sudo apt-get update' and try again.`,
      );
    }
    const debFile = path.join(work, deb);
    const fields = run('dpkg-deb', ['-f', debFile, 'Package', 'Version'], work);
    const pkgName = /^Package:\s*(\S+)/m.exec(fields.out)?.[1];
    const version = /^Version:\s*(\S+)/m.exec(fields.out)?.[1];
    if (!fields.ok || pkgName !== name || !version) throw new Error(`${deb}: cannot read its Package/Version fields (${fields.out})`);
    const tree = path.join(work, 'root');
    const x = run('dpkg-deb', ['-x', debFile, tree], work);
    if (!x.ok) throw new Error(`dpkg-deb -x ${deb} failed: ${x.out}`);
    fs.writeFileSync(path.join(tree, MARKER), JSON.stringify({ package: name, version }) + '\n');
    const root = path.join(o.cacheDir, `${name}_${version.replace(/[^A-Za-z0-9.+~-]/g, '_')}`);
    fs.rmSync(root, { recursive: true, force: true });
    fs.renameSync(tree, root);
    return { name, version, root, installed: false };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The package's Debian copyright file, if it ships one (some only link to another package's doc folder). */
export function copyrightFile(pkg: DebianPackage): string | undefined {
  const file = path.join(pkg.root, 'usr/share/doc', pkg.name, 'copyright');
  try {
    return fs.statSync(file).isFile() ? file : undefined;
  } catch {
    return undefined;
  }
}

/** A path inside the package, checked to exist (the error names the package and version). */
export function packagePath(pkg: DebianPackage, rel: string): string {
  const p = path.join(pkg.root, rel);
  if (!fs.existsSync(p)) throw new Error(`${pkg.name} ${pkg.version} (${pkg.root}) has no ${rel}`);
  return p;
}
